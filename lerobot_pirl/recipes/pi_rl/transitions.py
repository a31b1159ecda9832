"""One LeRobot `Transition` per πRL decision, with the rollout record in ``complementary_info``.

A decision samples one action chunk and executes H' env steps (chunk-level MDP). The actor sends
one transition per decision: ``state`` is the observation the chunk was sampled from, ``action``
the H' executed env actions, ``reward`` the chunk reward (sum of step rewards), ``done`` /
``truncated`` whether the episode ended inside the chunk.

``complementary_info`` holds one key, ``pi_rl.record``: a flat float32 vector laid out as
`RecordLayout` says — the scalars of `SCALAR_FIELDS`, the H' step rewards (zero-padded when
the episode ended inside the chunk), the behaviour policy's H' per-token log-probs (the chunk's
is their sum), then the flattened denoising chain x_{t0..tK}. One flat
float32 tensor of fixed size satisfies LeRobot's ``complementary_info`` rules (float32, a fixed key
set and shapes, no 3-D tensor that a checkpoint could mistake for an image).

Why one key: LeRobot's transport is ``torch.save``, which pays a pickled tensor header per tensor
and a zip record (~200 bytes) per storage. One record key instead of ten, and ``action`` a view of
the record's buffer, keeps a decision's wire bytes close to its raw chain + observation bytes
(``benchmarks/overhead.py`` measures the ratio).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from lerobot.utils.transition import Transition
from torch import Tensor

from ..on_policy import TransitionRejectedError

RECORD = "pi_rl.record"
SCALAR_FIELDS = (
    "step_index",
    "policy_version",
    "actor_id",
    "episode_id",
    "decision_index",
)
_EXACT_INT_LIMIT = 2**24  # float32 represents integers exactly up to here


class PiRLTransitionError(TransitionRejectedError):
    """A transition that cannot be used for πRL; the message names the field and what is expected."""


@dataclass(frozen=True)
class RecordLayout:
    """The layout of ``pi_rl.record``: `SCALAR_FIELDS`, H' step rewards, H' token log-probs, the
    chain (K+1, H, D_model)."""

    num_points: int
    chunk_size: int
    model_action_dim: int
    executed_steps: int

    @classmethod
    def for_policy(cls, policy: Any) -> RecordLayout:
        """The layout of the decisions a πRL-attached policy (``PiRLMixin``) samples."""
        sampling, adapter = policy.pi_rl_sampling, policy.pi_rl_adapter
        assert sampling.num_steps is not None and sampling.executed_steps is not None  # resolved
        return cls(
            num_points=sampling.num_steps + 1,
            chunk_size=adapter.chunk_size,
            model_action_dim=adapter.model_action_dim,
            executed_steps=sampling.executed_steps,
        )

    @property
    def chain_numel(self) -> int:
        return self.num_points * self.chunk_size * self.model_action_dim

    @property
    def rewards_start(self) -> int:
        return len(SCALAR_FIELDS)

    @property
    def log_probs_start(self) -> int:
        return self.rewards_start + self.executed_steps

    @property
    def chain_start(self) -> int:
        return self.log_probs_start + self.executed_steps

    @property
    def numel(self) -> int:
        return self.chain_start + self.chain_numel

    @staticmethod
    def scalar_index(name: str) -> int:
        """Position of a scalar field in the record (``SCALAR_FIELDS`` order)."""
        return SCALAR_FIELDS.index(name)

    def describe(self) -> str:
        return (
            f"{len(SCALAR_FIELDS)} scalars + H'={self.executed_steps} step rewards + H' token "
            f"log-probs + (K+1)·H·D = "
            f"{self.num_points}·{self.chunk_size}·{self.model_action_dim} chain values = {self.numel}"
        )


@dataclass
class Decision:
    """A decoded πRL decision, as the learner uses it."""

    observation: dict[str, Tensor]
    chain: Tensor  # [K+1, H, D_model] float32
    step_index: int
    old_token_log_prob: Tensor  # [H'] float32, the behaviour policy's
    reward: float  # chunk reward
    terminated: bool
    truncated: bool
    next_observation: dict[str, Tensor]
    policy_version: int
    actor_id: int
    episode_id: int
    decision_index: int


def _exact_int(name: str, value: int) -> float:
    if not 0 <= int(value) < _EXACT_INT_LIMIT:
        raise PiRLTransitionError(f"{name}={value} must be in [0, 2**24) to survive float32 transport")
    return float(int(value))


def encode_decision(
    *,
    observation: dict[str, Tensor],
    next_observation: dict[str, Tensor],
    executed_actions: Tensor,
    step_rewards: Tensor,
    executed_steps: int,
    terminated: bool,
    truncated: bool,
    chain: Tensor,
    step_index: int,
    old_token_log_prob: Tensor,
    policy_version: int,
    actor_id: int,
    episode_id: int,
    decision_index: int,
) -> Transition:
    """Build the transition an actor sends for one decision (``step_rewards`` has ≤ H' entries,
    ``old_token_log_prob`` exactly H')."""
    ran = int(step_rewards.numel())
    if not 1 <= ran <= executed_steps:
        raise PiRLTransitionError(f"a decision executes 1..{executed_steps} env steps, got {ran}")
    if executed_actions.shape[0] != executed_steps:
        raise PiRLTransitionError(
            f"executed_actions has {executed_actions.shape[0]} rows, "
            f"expected H'={executed_steps} (zero-padded)"
        )
    if old_token_log_prob.numel() != executed_steps:
        raise PiRLTransitionError(
            f"old_token_log_prob has {old_token_log_prob.numel()} values, expected one per executed "
            f"token (H'={executed_steps})"
        )
    scalars = torch.tensor(
        [
            float(step_index),
            _exact_int("policy_version", policy_version),
            _exact_int("actor_id", actor_id),
            _exact_int("episode_id", episode_id),
            _exact_int("decision_index", decision_index),
        ],
        dtype=torch.float32,
    )
    padded_rewards = torch.zeros(executed_steps, dtype=torch.float32)
    padded_rewards[:ran] = step_rewards.to(torch.float32).flatten()
    action = executed_actions.detach().to("cpu", torch.float32)
    # One buffer: the record, then the action (a view of the same storage, saved once).
    buffer = torch.cat(
        [
            scalars,
            padded_rewards,
            old_token_log_prob.detach().to("cpu", torch.float32).flatten(),
            chain.detach().to("cpu", torch.float32).flatten(),
            action.flatten(),
        ]
    )
    record_numel = buffer.numel() - action.numel()
    return Transition(
        state=observation,
        action=buffer[record_numel:].view(action.shape),
        reward=float(padded_rewards.sum()),
        next_state=next_observation,
        done=bool(terminated),
        truncated=bool(truncated),
        complementary_info={RECORD: buffer[:record_numel]},
    )


TRANSITION_KEYS = frozenset(Transition.__annotations__)


def _check_structure(transition: Any) -> None:
    """A LeRobot `Transition`: exactly its keys, tensor dicts for the observations, a tensor action."""
    if not isinstance(transition, dict):
        raise PiRLTransitionError(f"a transition must be a dict, got {type(transition).__name__}")
    if set(transition) != TRANSITION_KEYS:
        missing, extra = sorted(TRANSITION_KEYS - set(transition)), sorted(set(transition) - TRANSITION_KEYS)
        raise PiRLTransitionError(
            f"transition keys differ from LeRobot's Transition: missing {missing}, extra {extra}"
        )
    for part in ("state", "next_state"):
        observation = transition[part]
        if not isinstance(observation, dict) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in observation.items()
        ):
            raise PiRLTransitionError(f"{part} must be a dict of str to tensor")
    if not isinstance(transition["action"], Tensor):
        raise PiRLTransitionError(f"action must be a tensor, got {type(transition['action']).__name__}")
    for flag in ("done", "truncated"):
        if not isinstance(transition[flag], bool):
            raise PiRLTransitionError(f"{flag} must be a bool, got {type(transition[flag]).__name__}")


def decode_decision(transition: Transition, layout: RecordLayout) -> Decision:
    """Validate and decode a received transition; errors say exactly which field is wrong."""
    _check_structure(transition)
    info = transition.get("complementary_info") or {}
    if not isinstance(info, dict) or RECORD not in info:
        raise PiRLTransitionError(
            f"transition has no {RECORD!r} in complementary_info (keys: {sorted(info)}); a pi-rl actor "
            f"(lerobot-pirl-actor with recipe=pi-rl) sends it, laid out as {layout.describe()}"
        )
    if set(info) != {RECORD}:
        raise PiRLTransitionError(
            f"complementary_info must hold only {RECORD!r}, got extra keys {sorted(set(info) - {RECORD})}"
        )
    if not isinstance(info[RECORD], Tensor) or info[RECORD].dtype != torch.float32:
        got = info[RECORD].dtype if isinstance(info[RECORD], Tensor) else type(info[RECORD]).__name__
        raise PiRLTransitionError(f"{RECORD} must be a float32 tensor, got {got}")
    record = info[RECORD].flatten()
    if record.numel() != layout.numel:
        raise PiRLTransitionError(
            f"{RECORD} has {record.numel()} values, expected {layout.describe()}: actor and learner "
            "disagree on K (num_steps), chunk_size, n_action_steps or the action space"
        )
    step_rewards = record[layout.rewards_start : layout.log_probs_start]
    old_token_log_prob = record[layout.log_probs_start : layout.chain_start]
    chain = record[layout.chain_start :]
    if not torch.isfinite(record).all():  # one check per decision; name the field only on failure
        fields = {name: record[i : i + 1] for i, name in enumerate(SCALAR_FIELDS)}
        fields.update(step_rewards=step_rewards, old_token_log_prob=old_token_log_prob, chain=chain)
        bad = next(name for name, values in fields.items() if not torch.isfinite(values).all())
        raise PiRLTransitionError(f"{RECORD} field {bad} contains NaN or inf")
    for part in ("state", "next_state"):
        for key, value in transition[part].items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise PiRLTransitionError(f"{part}[{key!r}] contains NaN or inf")
    scalars = dict(zip(SCALAR_FIELDS, record[: layout.rewards_start].tolist(), strict=True))
    for name, value in scalars.items():
        low = -1 if name == "step_index" else 0  # -1: no single stochastic step (flow_noise)
        high = layout.num_points - 1 if name == "step_index" else _EXACT_INT_LIMIT
        if value != round(value) or not low <= value < high:
            raise PiRLTransitionError(f"{RECORD} field {name}={value} must be an integer in [{low}, {high})")
    return Decision(
        observation=transition["state"],
        chain=chain.view(layout.num_points, layout.chunk_size, layout.model_action_dim),
        step_index=round(scalars["step_index"]),
        old_token_log_prob=old_token_log_prob,
        reward=float(step_rewards.sum()),
        terminated=bool(transition["done"]),
        truncated=bool(transition["truncated"]),
        next_observation=transition["next_state"],
        policy_version=round(scalars["policy_version"]),
        actor_id=round(scalars["actor_id"]),
        episode_id=round(scalars["episode_id"]),
        decision_index=round(scalars["decision_index"]),
    )
