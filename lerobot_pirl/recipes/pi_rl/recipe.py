"""The ``pi-rl`` recipe: πRL (PPO on Flow-Noise / Flow-SDE log-likelihoods) for LeRobot flow policies.

Any policy type with a flow-policy adapter (``flow_rl.adapter``; XVLA's is built in and registered
below, through the same hook a third party uses).

Read top to bottom, one update is: stack the rollout's observations, value them, GAE over each
trajectory (done-masking, bootstrap on truncation and at rollout boundaries; ``advantages``),
normalise the advantages, then ``update_epochs`` × minibatches of
``policy.forward(batch, model="pi_rl")`` with a clipped-gradient AdamW step (``_ppo_epochs``). The
rollout is then discarded (strictly on-policy).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch
from lerobot.utils.transition import Transition, move_state_dict_to_device
from torch import Tensor, nn
from torch.optim import Optimizer

from ...errors import RecipeError
from ...flow_rl import (
    FlowAdapterError,
    FlowAdapterRegistry,
    PiRLHeads,
    compute_gae,
    explained_variance,
    normalize_advantages,
)
from ...policies import (
    PI_RL_ADVANTAGE,
    PI_RL_CHAIN,
    PI_RL_OLD_TOKEN_LOG_PROB,
    PI_RL_OLD_VALUE,
    PI_RL_RETURN,
    PI_RL_STEP_INDEX,
    PiRLRecord,
    PiRLXVLAPolicy,
    adopt_pi_rl,
)
from ..hookspecs import hookimpl
from ..on_policy import ActorDecision
from ..registry import RecipeRegistry, installed
from .config import PiRLConfig
from .data_parallel import DataParallelUpdate
from .rollout import Rollout, RolloutAssembler
from .transitions import PiRLTransitionError, RecordLayout, decode_decision, encode_decision


class PolicyNotSupportedError(RecipeError, TypeError):
    pass


class PiRLRecipe:
    """The `OnPolicyRecipe` for flow policies: actors sample chunks with exact log-probs and send
    their denoising chains; the learner re-scores them under the current weights (PPO)."""

    name = "pi-rl"
    config_class = PiRLConfig

    def __init__(self, policy: nn.Module, config: PiRLConfig) -> None:
        config.validate()
        self.config = config
        try:
            self.policy = adopt_pi_rl(policy, installed().adapters)
        except FlowAdapterError as exc:
            policy_type = getattr(getattr(policy, "config", None), "type", type(policy).__name__)
            raise PolicyNotSupportedError(
                f"recipe 'pi-rl' trains flow-matching policies that have a πRL adapter; the config's "
                f"policy.type is '{policy_type}'. Use recipe=sac for gaussian_actor. ({exc})"
            ) from exc
        adapter = self.policy.flow_adapter()
        if config.freeze_vlm:
            for parameter in adapter.vlm_parameters():
                parameter.requires_grad_(False)
        if config.activation_checkpointing:
            checkpoint_activations = getattr(adapter, "checkpoint_activations", None)
            if checkpoint_activations is None:
                raise PolicyNotSupportedError(
                    f"activation_checkpointing=true: the πRL adapter for policy.type="
                    f"'{adapter.policy_type}' has no checkpoint_activations(); set it to false"
                )
            checkpoint_activations()
        self.heads = PiRLHeads.for_policy(
            self.policy,
            noise_head=config.noise_method == "flow_noise",
            value_hidden_dims=tuple(config.value_hidden_dims),
            noise_hidden_dim=config.noise_hidden_dim,
            detach_value_input=config.detach_value_input,
        )
        self.policy.attach_pi_rl(self.heads, config.sampling(), config.loss())
        self.record_layout = RecordLayout.for_policy(self.policy)
        self.assembler = RolloutAssembler(config.rollout_decisions, config.max_policy_staleness)
        self.generator = torch.Generator().manual_seed(0)  # minibatch order; checkpointed
        self._observation_spec: dict[str, tuple[tuple[int, ...], torch.dtype]] | None = None
        # A LeRobot policy config declares its inputs; a policy config without them is checked by
        # the observation spec alone.
        declared = getattr(self.policy.config, "input_features", None) or {}
        self._declared_features = {key: tuple(feature.shape) for key, feature in declared.items()}
        self.optimizer: torch.optim.AdamW | None = None
        self._sampler = _ChunkSampler(self.policy)
        self._data_parallel: DataParallelUpdate | None = None

    # ----------------------------------------------------------------------------- data

    def accept(self, transition: dict[str, Any]) -> bool:
        """Decode one received transition into the rollout (False if dropped as stale).

        Raises `PiRLTransitionError` (the learner rejects and counts it) for a malformed record and
        for observations the policy cannot use. Every feature the policy config declares
        (``input_features``: state, images) must have its declared shape, as float32. The keys the
        processors add (token ids, masks, ids) are fixed by the first decision that passes that
        check and encodes through the policy; every later observation and next observation must
        match that spec (keys, shapes, dtypes), so one bad decision can never break the stacking
        of a whole rollout.
        """
        decision = decode_decision(transition, self.record_layout)
        self._check_observations(decision)
        return self.assembler.add(decision)

    def _check_observations(self, decision: Any) -> None:
        if self.config.noise_method == "flow_sde" and decision.step_index < 0:
            raise PiRLTransitionError(
                f"step_index={decision.step_index}: a flow_sde decision records its stochastic step k* ≥ 0"
            )
        for part, observation in (("state", decision.observation), ("next_state", decision.next_observation)):
            for key, shape in self._declared_features.items():
                value = observation.get(key)
                if value is None or tuple(value.shape) != shape or value.dtype != torch.float32:
                    got = "missing" if value is None else f"{tuple(value.shape)} {value.dtype}"
                    raise PiRLTransitionError(
                        f"{part}[{key!r}] must be float32 of the policy's declared shape {shape}, got {got}"
                    )
        if self._observation_spec is None:
            try:
                self.policy.pi_rl_value(
                    _stack([decision.observation], torch.device(self.policy.config.device))
                )
            except Exception as exc:  # noqa: BLE001 - any failure means the policy cannot read it
                raise PiRLTransitionError(f"the policy cannot encode this observation: {exc}") from exc
            self._observation_spec = _spec(decision.observation)
        for part, observation in (("state", decision.observation), ("next_state", decision.next_observation)):
            spec = _spec(observation)
            if spec != self._observation_spec:
                wrong = sorted(set(spec.items()) ^ set(self._observation_spec.items()))
                raise PiRLTransitionError(
                    f"{part} differs from the observations already accepted (key, shape, dtype): {wrong}"
                )

    def rollout_ready(self) -> bool:
        return self.assembler.ready()

    def take_rollout(self) -> Rollout:
        return self.assembler.take()

    def data_counters(self) -> dict[str, int]:
        assembler = self.assembler
        return {
            "received": assembler.received,
            "consumed": assembler.consumed,
            "dropped": assembler.dropped_stale,
            "pending": assembler.pending(),
        }

    # ----------------------------------------------------------------------------- actor side

    @property
    def policy_version(self) -> int:
        return self.assembler.policy_version

    def sampler(self) -> _ChunkSampler:
        return self._sampler

    def encode_decision(self, decision: ActorDecision) -> Transition:
        """The decision's transition: the H' actions that ran (zero-padded to H'), the step rewards,
        and the record of how its chunk was sampled (chain, stochastic step, per-token log-probs)."""
        record = decision.sample
        executed_steps = self._sampler.executed_steps
        ran = decision.actions[: len(decision.rewards)].detach().to("cpu", torch.float32)
        padded = torch.zeros(executed_steps, ran.shape[-1])
        padded[: ran.shape[0]] = ran
        return encode_decision(
            observation=decision.observation,
            next_observation=decision.next_observation,
            executed_actions=padded,
            step_rewards=torch.tensor(decision.rewards),
            executed_steps=executed_steps,
            terminated=decision.terminated,
            truncated=decision.truncated,
            chain=record.chain[0],
            step_index=int(record.step_index[0]),
            old_token_log_prob=record.token_log_prob[0],
            policy_version=decision.policy_version,
            actor_id=decision.actor_id,
            episode_id=decision.episode_id,
            decision_index=decision.decision_index,
        )

    # ----------------------------------------------------------------------------- Recipe

    def build_optimizers(self) -> dict[str, Optimizer]:
        groups = [
            {
                "name": "actor",
                "params": [p for p in self.policy.parameters() if p.requires_grad],
                "lr": self.config.actor_lr,
            },
            {
                "name": "value_head",
                "params": list(self.heads.value_head.parameters()),
                "lr": self.config.value_lr,
            },
        ]
        if self.heads.noise_head is not None:
            groups.append(
                {
                    "name": "noise_head",
                    "params": list(self.heads.noise_head.parameters()),
                    "lr": self.config.noise_lr,
                }
            )
        self._base_lr = {
            "actor": self.config.actor_lr,
            "value_head": self.config.value_lr,
            "noise_head": self.config.noise_lr,
        }
        self.optimizer = torch.optim.AdamW(
            groups, betas=(self.config.betas[0], self.config.betas[1]), weight_decay=self.config.weight_decay
        )
        return {"pi_rl": self.optimizer}

    def enable_data_parallel(self, control_group: Any = None) -> None:
        """From now on ``update_step`` is a collective over the ``torch.distributed`` ranks (the
        `DataParallelRecipe` contract): DDP over the policy and heads, each rank a share of every
        minibatch (``recipes/pi_rl/data_parallel.py``). Call it on every rank after the optimizer
        is built and any checkpoint restored."""
        assert self.optimizer is not None, "build_optimizers() must run first"
        self._data_parallel = DataParallelUpdate(self.policy, self.heads, control_group)

    def update_step(self, batches: Iterator[Any], step: int) -> dict[str, float]:
        """One πRL update on the next rollout: advantages, PPO epochs, diagnostics."""
        assert self.optimizer is not None, "build_optimizers() must run first"
        rollout: Rollout = next(batches)
        if self._data_parallel is not None:  # rank 0's update-deciding state on every rank
            generator_state, version = self._data_parallel.broadcast(
                (self.generator.get_state(), self.assembler.policy_version)
            )
            self.generator.set_state(generator_state)
            self.assembler.policy_version = version
        # πRL scores recorded chains dropout-free, as they were sampled; in eval mode the policy's
        # per-forward dropout guard then has nothing to switch.
        self.policy.eval()
        batch, values, returns = self.prepare_update(rollout)
        result = self._ppo_epochs(batch, len(rollout))
        self.assembler.advance_policy_version()
        result.update(self._rollout_diagnostics(rollout, values, returns))
        return result

    def prepare_update(self, rollout: Rollout) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The update's batch on the policy's device (observations, recorded chains and old
        log-probs, old values, normalised advantages, returns), plus (values, returns); folds the
        rollout's states into the value-input statistics first when enabled."""
        device = next(self.policy.parameters()).device
        observations = _stack([d.observation for d in rollout.decisions], device)
        if self.config.normalize_value_input:
            self.policy.pi_rl_observe_state(observations)
        values, advantages, returns = self.advantages(rollout, observations)
        batch = {
            **observations,
            PI_RL_CHAIN: to_device(torch.stack([d.chain for d in rollout.decisions]), device),
            PI_RL_STEP_INDEX: to_device(
                torch.tensor([float(d.step_index) for d in rollout.decisions]), device
            ),
            PI_RL_OLD_TOKEN_LOG_PROB: to_device(
                torch.stack([d.old_token_log_prob for d in rollout.decisions]), device
            ),
            PI_RL_OLD_VALUE: values,
            PI_RL_ADVANTAGE: normalize_advantages(advantages),
            PI_RL_RETURN: returns,
        }
        return batch, values, returns

    def advantages(self, rollout: Rollout, observations: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(values, advantages, returns) [N] by GAE over the rollout's trajectory segments.

        V(s_{i+1}) is the next decision's value inside a segment and V(next_observation) where a
        segment stops: at a time-limit truncation and where the rollout cut an episode (both
        bootstrap), and at a termination (masked by GAE).
        """
        cfg = self.config
        with torch.no_grad():
            values = self._values(observations)
            next_values = torch.roll(values, -1)
            ends = rollout.segment_end.to(values.device)
            if bool(ends.any()):
                boundary = [
                    d.next_observation for d, end in zip(rollout.decisions, ends.tolist(), strict=True) if end
                ]
                next_values[ends] = self._values(_stack(boundary, values.device))
        advantages, returns = compute_gae(
            rollout.rewards.to(values.device),
            values,
            next_values,
            rollout.terminated.to(values.device),
            rollout.truncated.to(values.device) | ends,
            cfg.gamma,
            cfg.gae_lambda,
        )
        return values, advantages, returns

    def _ppo_epochs(self, batch: dict[str, Tensor], size: int) -> dict[str, float]:
        """``update_epochs`` passes of shuffled minibatches at the scheduled lr (the critic alone
        during warm-up; stopped early once a minibatch's approx_kl passes 1.5 × ``target_kl``);
        mean metrics."""
        assert self.optimizer is not None
        cfg = self.config
        warming_up = self.assembler.policy_version < cfg.critic_warmup_updates
        lr_factor = cfg.lr_factor(self.assembler.policy_version)
        for group in self.optimizer.param_groups:
            trains = not warming_up or group["name"] == "value_head"
            group["lr"] = self._base_lr[group["name"]] * lr_factor if trains else 0.0
        sums: dict[str, float] = defaultdict(float)
        steps = skipped = 0
        stopped_early = False
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        device = batch[PI_RL_ADVANTAGE].device
        for _ in range(cfg.update_epochs):
            if stopped_early:
                break
            order = torch.randperm(size, generator=self.generator).to(device)
            for start in range(0, size, cfg.minibatch_size):
                index = order[start : start + cfg.minibatch_size]
                if self._data_parallel is None:
                    minibatch = {key: value[index] for key, value in batch.items()}
                    with update_autocast(self.policy.config, device):
                        loss, metrics = self.policy.forward(minibatch, model="pi_rl")
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm)
                    finite = bool(torch.isfinite(loss) and torch.isfinite(grad_norm))
                else:  # this rank's share; DDP averages the gradients, the rest is all-reduced
                    data_parallel = self._data_parallel
                    rows, weight, count = data_parallel.share(index)
                    minibatch = {key: value[rows] for key, value in batch.items()}
                    with update_autocast(self.policy.config, device):
                        loss, metrics, values = data_parallel.forward(minibatch)
                    self.optimizer.zero_grad(set_to_none=True)
                    (loss * weight).backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm)
                    finite, metrics = data_parallel.reduce(
                        loss, grad_norm, metrics, values, count, batch[PI_RL_RETURN][index]
                    )
                if not finite:
                    skipped += 1  # never let a non-finite step touch parameters or moments
                    continue
                self.optimizer.step()
                steps += 1
                for key, value in metrics.items():
                    sums[key] += value
                sums["pi_rl_grad_norm"] += float(grad_norm)
                if (
                    not warming_up
                    and cfg.target_kl is not None
                    and metrics["approx_kl"] > 1.5 * cfg.target_kl
                ):
                    stopped_early = True
                    break
        result = {key: value / max(steps, 1) for key, value in sums.items()}
        result.pop("loss", None)
        result.update(
            {
                "skipped_nonfinite_steps": float(skipped),
                "minibatch_steps": float(steps),
                "stopped_early": float(stopped_early),
                "critic_warmup": float(warming_up),
            }
        )
        for group in self.optimizer.param_groups:
            result[f"lr_{group['name']}"] = float(group["lr"])
        return result

    def _rollout_diagnostics(self, rollout: Rollout, values: Tensor, returns: Tensor) -> dict[str, float]:
        stale = [self.assembler.policy_version - 1 - d.policy_version for d in rollout.decisions]
        return {
            "explained_variance_rollout": float(explained_variance(values, returns)),
            "rollout_decisions": float(len(rollout)),
            "rollout_reward_mean": float(rollout.rewards.mean()),
            "staleness_mean": sum(stale) / len(stale),
            "staleness_max": float(max(stale)),
            "dropped_stale_total": float(self.assembler.dropped_stale),
            "decisions_received_total": float(self.assembler.received),
            "decisions_consumed_total": float(self.assembler.consumed),
            "policy_version": float(self.assembler.policy_version),
        }

    def _values(self, observations: dict[str, Tensor]) -> Tensor:
        """V(s) [N] in chunks of max(minibatch, 256) decisions, so the VLM's activations stop growing
        with the rollout (``benchmarks/overhead.py`` measures the learner's memory per decision)."""
        size = max(self.config.minibatch_size, 256)
        count = next(iter(observations.values())).shape[0]
        chunks = [{k: v[i : i + size] for k, v in observations.items()} for i in range(0, count, size)]
        return torch.cat([self.policy.pi_rl_value(chunk) for chunk in chunks])

    def actor_weights(self) -> dict[str, Any]:
        return {
            "policy": move_state_dict_to_device(self.policy.state_dict(), device="cpu"),
            "pi_rl_heads": move_state_dict_to_device(self.heads.state_dict(), device="cpu"),
            "policy_version": torch.tensor(self.assembler.policy_version),
        }

    def load_actor_weights(self, weights: dict[str, Any], device: str | torch.device) -> None:
        self.policy.load_state_dict(move_state_dict_to_device(weights["policy"], device=device))
        self.heads.load_state_dict(move_state_dict_to_device(weights["pi_rl_heads"], device=device))
        self.assembler.policy_version = int(weights["policy_version"])

    def state_dict(self) -> dict[str, Tensor]:
        state = {f"heads.{k}": v for k, v in self.heads.state_dict().items()}
        state["counters"] = torch.tensor(
            [
                self.assembler.policy_version,
                self.assembler.received,
                self.assembler.dropped_stale,
                self.assembler.consumed,
            ],
            dtype=torch.long,
        )
        state["minibatch_rng"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Tensor], device: str | torch.device) -> None:
        heads = {k.removeprefix("heads."): v for k, v in state.items() if k.startswith("heads.")}
        self.heads.load_state_dict(move_state_dict_to_device(heads, device=device))
        version, received, dropped, consumed = (int(v) for v in state["counters"])
        self.assembler.policy_version, self.assembler.received = version, received
        self.assembler.dropped_stale, self.assembler.consumed = dropped, consumed
        self.generator.set_state(state["minibatch_rng"].cpu())


class _ChunkSampler:
    """Samples chunks with the attached noise method; each row's record is its `PiRLRecord` row."""

    def __init__(self, policy: PiRLXVLAPolicy) -> None:
        self.policy = policy
        executed_steps = policy.pi_rl_sampling.executed_steps
        assert executed_steps is not None  # resolved when the sampling settings were attached
        self.executed_steps = executed_steps

    def act(self, observations: dict[str, Tensor]) -> tuple[Tensor, list[Any]]:
        """Chunks on the policy's device (the postprocessors take them from there); the records on
        the CPU, one transfer per field for the whole batch, as the wire carries them. A plain copy
        in: pinning a small batch on every decision costs more than it saves."""
        device = next(self.policy.parameters()).device
        chunks, record = self.policy.sample_actions({k: v.to(device) for k, v in observations.items()})
        if device.type != "cpu":
            record = PiRLRecord(record.chain.cpu(), record.step_index.cpu(), record.token_log_prob.cpu())
        rows = [record.row(i) for i in range(chunks.shape[0])]
        return chunks[:, : self.executed_steps], rows


def _spec(observation: dict[str, Tensor]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {key: (tuple(value.shape), value.dtype) for key, value in observation.items()}


def _stack(observations: list[dict[str, Tensor]], device: torch.device) -> dict[str, Tensor]:
    return {key: to_device(torch.stack([o[key] for o in observations]), device) for key in observations[0]}


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """A CPU rollout tensor on ``device``: through pinned memory, without blocking, onto a GPU
    (the copy overlaps the stacking of the next tensor; CUDA orders it before any kernel reading
    it on the same stream)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def update_autocast(policy_config: Any, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The mixed precision LeRobot's own training uses for this policy config: autocast in the
    policy's ``dtype`` when it is bfloat16/float16 (``lerobot_train`` drives Accelerate's
    ``mixed_precision`` from it), else ``use_amp`` in the device's default autocast dtype, else
    none. πRL's log-densities stay float32 either way (``flow_rl.math`` computes them in float32)."""
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        str(getattr(policy_config, "dtype", ""))
    )
    if dtype is None and not hasattr(policy_config, "dtype") and getattr(policy_config, "use_amp", False):
        dtype = torch.get_autocast_dtype(device.type)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@hookimpl
def lerobot_pirl_register_recipes(registry: RecipeRegistry) -> None:
    registry.add(PiRLRecipe)


@hookimpl
def lerobot_pirl_register_flow_adapters(registry: FlowAdapterRegistry) -> None:
    registry.add(PiRLXVLAPolicy)
