"""The πRL update over ``torch.distributed`` ranks: DDP for the gradients, a few small all-reduces for
what every rank must decide alike and for the metrics one process would log.

Every rank holds the whole rollout (rank 0 broadcasts it) and the same minibatch order (rank 0's
generator state is broadcast before each update). Each PPO minibatch of ``m`` decisions is split by
position: rank ``r`` takes rows ``r, r+N, r+2N, ...`` (``n_r`` of them). Every term of the πRL loss is
a mean over rows, so scaling rank r's loss by ``N·n_r/m`` makes DDP's gradient average exactly the
gradient of the whole minibatch's mean — equal shares give weight 1, and a short last minibatch
still gives the single-process gradient. A rank left without rows (a minibatch smaller than N)
runs one row with weight 0, so DDP's all-reduce still sees every rank.

Decided alike on every rank, from all-reduced values: the non-finite skip (any rank's loss or the
global gradient norm not finite) and the ``target_kl`` early stop (on the whole minibatch's
approx_kl). Metrics: the ``n_r/m``-weighted mean of each rank's (row-mean) metric, except
``ratio_max`` (the max over ranks) and ``explained_variance`` (recomputed from every rank's values,
gathered into minibatch order, with the single-process formula).

Re-scoring a recorded chain draws no random numbers (Flow-SDE's step k* and every noise are in the
record), so no generator needs aligning beyond the minibatch order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ...flow_rl import explained_variance

MAX_METRICS = ("ratio_max",)
"""pi_rl_loss metrics that are a max over rows (every other one is a mean over rows, except the
explained variance, which is recomputed)."""
EXPLAINED_VARIANCE = "explained_variance"


class _UpdateModule(nn.Module):
    """What DDP wraps: the policy and the recipe-owned heads as one module. The heads are not the
    policy's submodules (its checkpoint stays stock), so DDP over the policy alone would leave the
    value and noise heads' gradients unsynchronised."""

    def __init__(self, policy: nn.Module, heads: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.heads = heads

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        return self.policy.forward(batch, model="pi_rl")


class DataParallelUpdate:
    """This rank's side of a data-parallel πRL update (built once the process group exists)."""

    def __init__(self, policy: nn.Module, heads: nn.Module, control_group: Any = None) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "torch.distributed is not initialised: enable_data_parallel needs a process group"
            )
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.control = control_group
        device = next(policy.parameters()).device
        # find_unused_parameters: a frozen VLM has no gradients, and which heads train depends on the
        # noise method (as LeRobot's own Accelerate training sets it). No per-forward buffer
        # broadcast: the only buffers that change (the value input's running statistics) are updated
        # by every rank from the same rollout.
        self.module = DistributedDataParallel(
            _UpdateModule(policy, heads),
            device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None,
            find_unused_parameters=True,
            broadcast_buffers=False,
        )
        self._value: Tensor | None = None
        value_head = getattr(heads, "value_head", None)
        if value_head is None:
            raise TypeError("the πRL heads have no value_head to read the critic's values from")
        value_head.register_forward_hook(self._capture_value)

    def _capture_value(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self._value = output.detach().squeeze(-1)  # = PiRLOutputs.value (heads.value squeezes it)

    # ------------------------------------------------------------------ per update

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        holder = [obj]
        dist.broadcast_object_list(holder, src=0, group=self.control)
        return holder[0]

    def share(self, index: Tensor) -> tuple[Tensor, float, int]:
        """(rows, loss weight, row count) of this rank's share of minibatch ``index``."""
        rows = index[self.rank :: self.world_size]
        count = int(rows.numel())
        if count == 0:  # fewer rows than ranks: one row with no weight keeps DDP's all-reduce whole
            return index[:1], 0.0, 0
        return rows, self.world_size * count / index.numel(), count

    def forward(self, minibatch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float], Tensor]:
        """The DDP-wrapped πRL forward on this rank's rows: (loss, metrics, values)."""
        self._value = None
        loss, metrics = self.module(minibatch)
        assert self._value is not None, "the πRL forward did not run the value head"
        return loss, metrics, self._value

    def reduce(
        self,
        loss: Tensor,
        grad_norm: Tensor,
        metrics: dict[str, float],
        values: Tensor,
        count: int,
        returns: Tensor,
    ) -> tuple[bool, dict[str, float]]:
        """(finite on every rank, the whole minibatch's metrics) from this rank's share; ``returns``
        are the whole minibatch's, in minibatch order. Collective: every rank calls it."""
        size = int(returns.numel())
        fraction = count / size
        keys = sorted(metrics)
        mean_keys = [k for k in keys if k not in MAX_METRICS and k != EXPLAINED_VARIANCE]
        max_keys = [k for k in keys if k in MAX_METRICS]
        local_bad = count > 0 and not bool(torch.isfinite(loss))
        maxima = torch.tensor(
            [float(local_bad or not bool(torch.isfinite(grad_norm)))]
            + [metrics[k] if count > 0 else float("-inf") for k in max_keys],
            dtype=torch.float64,
        )
        means = torch.tensor(
            [fraction * metrics[k] if count > 0 else 0.0 for k in mean_keys], dtype=torch.float64
        )
        per_rank = -(-size // self.world_size)
        mine = torch.zeros(per_rank, dtype=torch.float32)
        mine[:count] = values[:count].float().cpu()
        gathered = [torch.zeros(per_rank, dtype=torch.float32) for _ in range(self.world_size)]
        dist.all_reduce(maxima, op=dist.ReduceOp.MAX, group=self.control)
        dist.all_reduce(means, op=dist.ReduceOp.SUM, group=self.control)
        dist.all_gather(gathered, mine, group=self.control)
        finite = not bool(maxima[0] > 0)
        result = {k: float(v) for k, v in zip(mean_keys, means.tolist(), strict=True)}
        result.update({k: float(v) for k, v in zip(max_keys, maxima[1:].tolist(), strict=True)})
        if EXPLAINED_VARIANCE in metrics:
            ordered = torch.empty(size, dtype=torch.float32)
            for rank, part in enumerate(gathered):
                rows = len(range(rank, size, self.world_size))
                ordered[rank :: self.world_size] = part[:rows]
            result[EXPLAINED_VARIANCE] = float(explained_variance(ordered, returns.float().cpu()))
        return finite, result
