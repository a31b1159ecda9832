"""πRL for LeRobot's XVLA: the flow-policy adapter, and ``PiRLXVLAPolicy`` that carries it.

The only XVLA-specific code of πRL. XVLA's transformer predicts the clean action x̂₀ in *model*
action space (``model.dim_action``, e.g. 20 for ``action_mode="auto"``); the env receives
``action_space.postprocess(x)``, which keeps a prefix of the model dims for every stock action
space (auto: the action feature's dim; ee6d: all 20 — its gripper sigmoid is a fixed bijection
whose Jacobian cancels in the PPO ratio), so that prefix's width is the real action dim.

Where this reaches into XVLA internals (all by import, nothing copied; each pinned in
``tests/policies/test_xvla_seam.py``): ``policy._build_model_inputs``, ``model._get_target_dtype``,
``model.forward_vlm``, ``model.transformer`` (called as a whole; per-action-token features are
read with a forward hook on ``transformer.norm``), ``transformer.blocks`` (each a module of one
tensor in, one out: activation checkpointing wraps them), ``model.action_space``,
``model.dim_action`` / ``dim_proprio``, the Florence config's ``vision_config.projection_dim`` —
and ``adopt_pi_rl``'s ``__class__`` swap onto a stock ``XVLAPolicy``.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.checkpoint
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy
from torch import Tensor, nn

from lerobot_pirl.flow_rl.algorithm import randn

from .pi_rl import PiRLMixin


@dataclass
class XVLAObservation:
    """VLM outputs and transformer inputs of a batch, computed once (``EncodedObservation``)."""

    enc: dict[str, Tensor]
    proprio: Tensor  # [B, P] in the model dtype, as XVLA feeds its transformer
    state: Tensor  # [B, P] float32, the value head's proprio input
    domain_id: Tensor

    @property
    def features(self) -> Tensor:
        return self.enc["vlm_features"]

    def repeat_rows(self, times: int) -> XVLAObservation:
        def rep(x: Tensor) -> Tensor:
            return x.repeat_interleave(times, dim=0)

        return XVLAObservation(
            {k: rep(v) for k, v in self.enc.items()}, rep(self.proprio), rep(self.state), rep(self.domain_id)
        )


@contextmanager
def _captured_output(module: nn.Module) -> Iterator[list[Tensor]]:
    """Collect ``module``'s forward outputs while the context is open."""
    outputs: list[Tensor] = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


class XVLAFlowAdapter:
    """``FlowPolicyAdapter`` for a stock ``XVLAPolicy``."""

    policy_type = "xvla"

    def __init__(self, policy: XVLAPolicy) -> None:
        self.policy, self.model, config = policy, policy.model, policy.config
        self.chunk_size = config.chunk_size
        self.model_action_dim = self.model.dim_action
        self.state_dim = self.model.dim_proprio
        self.feature_dim = config.get_florence_config().vision_config.projection_dim
        self.token_dim = config.hidden_size
        self.default_num_steps = config.num_denoising_steps
        self.default_executed_steps = config.n_action_steps
        probe = torch.zeros(1, 1, self.model_action_dim)
        self.real_action_dim = int(self.model.action_space.postprocess(probe).shape[-1])
        self._vlm_parameters = list(self.model.vlm.parameters())  # checked per encode: list it once

    @classmethod
    def action_dims(cls, config: Any) -> tuple[int, int, int]:
        """From ``config`` alone: XVLA's action space built as its model builds it, whose
        ``postprocess`` prefix is the real action."""
        from lerobot.policies.xvla.action_hub import build_action_space

        mode = config.action_mode.lower()
        kwargs = (
            {"real_dim": config.action_feature.shape[-1], "max_dim": config.max_action_dim}
            if mode == "auto"
            else {}
        )
        action_space = build_action_space(mode, **kwargs)
        model_action_dim = int(action_space.dim_action)
        real_action_dim = int(action_space.postprocess(torch.zeros(1, 1, model_action_dim)).shape[-1])
        return int(config.chunk_size), model_action_dim, real_action_dim

    def vlm_parameters(self) -> list[nn.Parameter]:
        return self._vlm_parameters

    def _dtype(self) -> torch.dtype:
        return self.model._get_target_dtype()

    def encode(self, batch: dict[str, Tensor]) -> XVLAObservation:
        """Stock input preparation + VLM encoding; without autograd when no VLM weight trains."""
        inputs = self.policy._build_model_inputs(batch)
        dtype = self._dtype()
        vlm_trains = torch.is_grad_enabled() and any(p.requires_grad for p in self._vlm_parameters)
        with torch.set_grad_enabled(vlm_trains):
            enc = self.model.forward_vlm(
                inputs["input_ids"], inputs["image_input"].to(dtype=dtype), inputs["image_mask"]
            )
        proprio = inputs["proprio"]
        return XVLAObservation(enc, proprio.to(dtype=dtype), proprio.float(), inputs["domain_id"])

    def state(self, batch: dict[str, Tensor]) -> Tensor:
        return self.policy._build_model_inputs(batch)["proprio"].float()

    def _transformer(self, obs: XVLAObservation, x_t: Tensor, t: Tensor) -> Tensor:
        """One transformer pass: x̂₀ at (x_t, t [B]) in the model dtype, inputs through
        ``action_space.preprocess`` exactly as in stock ``generate_actions``."""
        dtype = self._dtype()
        proprio_m, x_t_m = self.model.action_space.preprocess(obs.proprio, x_t.to(dtype=dtype))
        return self.model.transformer(
            domain_id=obs.domain_id, action_with_noise=x_t_m, proprio=proprio_m, t=t.to(dtype), **obs.enc
        )

    def predict_clean_action(self, obs: XVLAObservation, x_t: Tensor, t: Tensor) -> Tensor:
        return self._transformer(obs, x_t, t).float()

    def predict_with_tokens(self, obs: XVLAObservation, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """x̂₀ plus the per-action-token features [B, H, hidden] (``transformer.norm``'s output)."""
        with _captured_output(self.model.transformer.norm) as captured:
            x0_hat = self._transformer(obs, x_t, t)
        return x0_hat.float(), captured[0]

    def native_chain(
        self,
        obs: XVLAObservation,
        num_steps: int,
        generator: torch.Generator | None = None,
        initial_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Stock XVLA's sampler, op for op: x_t = t·x1 + (1-t)·x̂₀ with the *fixed* initial x1
        (equals ``predict_action_chunk`` for the same RNG state when K = ``num_denoising_steps``)."""
        dtype = self._dtype()
        batch_size, device = obs.proprio.shape[0], obs.proprio.device
        shape = (batch_size, self.chunk_size, self.model_action_dim)
        x1 = (
            randn(shape, device, dtype, generator)
            if initial_noise is None
            else initial_noise.to(device, dtype)
        )
        action = torch.zeros_like(x1)
        chain = []
        for i in range(num_steps, 0, -1):
            t = torch.full((batch_size,), i / num_steps, device=device, dtype=dtype)
            x_t = x1 * t.view(-1, 1, 1) + action * (1 - t).view(-1, 1, 1)
            chain.append(x_t.float())
            action = self._transformer(obs, x_t, t)
        chain.append(action.float())
        return torch.stack(chain, dim=1), action

    def env_actions(self, model_actions: Tensor) -> Tensor:
        return self.model.action_space.postprocess(model_actions)

    def checkpoint_activations(self) -> None:
        """Recompute each transformer block's activations in backward (``torch.utils.checkpoint``,
        non-reentrant, RNG state preserved) instead of keeping them. Set on the block instances, so
        the modules, their ``state_dict`` keys and the stock class stay as they are; idempotent."""
        for block in self.model.transformer.blocks:
            block.forward = types.MethodType(_checkpointed_block_forward, block)


def _checkpointed_block_forward(block: nn.Module, *args: Any, **kwargs: Any) -> Any:
    forward = type(block).forward
    if not torch.is_grad_enabled():  # sampling and valuing keep nothing for backward anyway
        return forward(block, *args, **kwargs)
    return torch.utils.checkpoint.checkpoint(forward, block, *args, use_reentrant=False, **kwargs)


class PiRLXVLAPolicy(PiRLMixin, XVLAPolicy):
    """Stock ``XVLAPolicy`` plus the πRL contract; still ``name == "xvla"``, never registered."""

    flow_adapter_class = XVLAFlowAdapter
