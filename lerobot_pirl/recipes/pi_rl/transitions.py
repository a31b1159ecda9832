"""One LeRobot `Transition` per πRL decision, with the rollout record in ``complementary_info``.

A decision samples one action chunk and executes H' env steps (chunk-level MDP). The actor sends
one transition per decision: ``state`` is the observation the chunk was sampled from, ``action``
the H' executed env actions, ``reward`` the chunk reward (sum of step rewards), ``done`` /
``truncated`` whether the episode ended inside the chunk. ``complementary_info`` follows LeRobot's
rules (DESIGN §3): float32 tensors only, a fixed key set, fixed shapes, no leading size-1 dim, no
3-D tensors (the chain is flattened, so a K+1 of 3 cannot be mistaken for an image).

The ``complementary_info`` tensors and ``action`` are views of one float32 buffer per decision.
LeRobot's transport is ``torch.save``, which writes one zip record (~200 bytes of headers and
padding) per storage and reads it back with one ``load_tensor`` call: one storage instead of
twelve cuts a tiny-XVLA decision's wire bytes by ~22% and the learner's ``torch.load`` time ~2×
(``benchmarks/overhead.py``). Keys, shapes and values are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lerobot.utils.transition import Transition
from torch import Tensor

from ...policies import PI_RL_CHAIN as CHAIN
from ...policies import PI_RL_OLD_LOG_PROB as OLD_LOG_PROB
from ...policies import PI_RL_OLD_VALUE as OLD_VALUE
from ...policies import PI_RL_STEP_INDEX as STEP_INDEX

STEP_REWARDS = "pi_rl.step_rewards"
NUM_STEPS = "pi_rl.num_steps"
POLICY_VERSION = "pi_rl.policy_version"
ACTOR_ID = "pi_rl.actor_id"
EPISODE_ID = "pi_rl.episode_id"
DECISION_INDEX = "pi_rl.decision_index"

REQUIRED_KEYS = (
    CHAIN,
    STEP_INDEX,
    OLD_LOG_PROB,
    OLD_VALUE,
    STEP_REWARDS,
    NUM_STEPS,
    POLICY_VERSION,
    ACTOR_ID,
    EPISODE_ID,
    DECISION_INDEX,
)
_EXACT_INT_LIMIT = 2**24  # float32 represents integers exactly up to here


class PiRLTransitionError(ValueError):
    """A transition that cannot be used for πRL; the message names the key and what is expected."""


@dataclass(frozen=True)
class ChainShape:
    """(K+1, H, D_model): how to unflatten ``pi_rl.chain``."""

    num_points: int
    chunk_size: int
    model_action_dim: int

    @property
    def numel(self) -> int:
        return self.num_points * self.chunk_size * self.model_action_dim


@dataclass
class Decision:
    """A decoded πRL decision, as the learner uses it."""

    observation: dict[str, Tensor]
    chain: Tensor  # [K+1, H, D_model] float32
    step_index: int
    old_log_prob: float
    old_value: float
    reward: float  # chunk reward
    terminated: bool
    truncated: bool
    next_observation: dict[str, Tensor]
    policy_version: int
    actor_id: int
    episode_id: int
    decision_index: int


# The scalar keys, in the order encode_decision packs them.
_SCALAR_KEYS = (
    STEP_INDEX,
    OLD_LOG_PROB,
    OLD_VALUE,
    NUM_STEPS,
    POLICY_VERSION,
    ACTOR_ID,
    EPISODE_ID,
    DECISION_INDEX,
)


def _packed(parts: dict[str, Tensor]) -> dict[str, Tensor]:
    """Copy float32 ``parts`` into one buffer and return views of it with the parts' shapes."""
    buffer = torch.cat([part.reshape(-1) for part in parts.values()])
    views, offset = {}, 0
    for key, part in parts.items():
        views[key] = buffer[offset : offset + part.numel()].view(part.shape)
        offset += part.numel()
    return views


def _exact_int(name: str, value: int) -> int:
    if not 0 <= int(value) < _EXACT_INT_LIMIT:
        raise PiRLTransitionError(f"{name}={value} must be in [0, 2**24) to survive float32 transport")
    return int(value)


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
    old_log_prob: float,
    old_value: float,
    policy_version: int,
    actor_id: int,
    episode_id: int,
    decision_index: int,
) -> Transition:
    """Build the transition an actor sends for one decision (``step_rewards`` has ≤ H' entries)."""
    num_steps = int(step_rewards.numel())
    if not 1 <= num_steps <= executed_steps:
        raise PiRLTransitionError(f"a decision executes 1..{executed_steps} env steps, got {num_steps}")
    padded_rewards = torch.zeros(executed_steps, dtype=torch.float32)
    padded_rewards[:num_steps] = step_rewards.to(torch.float32).flatten()
    scalars = [
        step_index,
        old_log_prob,
        old_value,
        num_steps,
        _exact_int(POLICY_VERSION, policy_version),
        _exact_int(ACTOR_ID, actor_id),
        _exact_int(EPISODE_ID, episode_id),
        _exact_int(DECISION_INDEX, decision_index),
    ]
    parts = {
        CHAIN: chain.detach().to("cpu", torch.float32).flatten(),
        STEP_REWARDS: padded_rewards,
        "scalars": torch.tensor([float(value) for value in scalars], dtype=torch.float32),
        "action": executed_actions.detach().to("cpu", torch.float32),
    }
    views = _packed(parts)
    info = {CHAIN: views[CHAIN], STEP_REWARDS: views[STEP_REWARDS]}
    for key, value in zip(_SCALAR_KEYS, views["scalars"].unbind(), strict=True):
        info[key] = value
    return Transition(
        state=observation,
        action=views["action"],
        reward=float(padded_rewards.sum()),
        next_state=next_observation,
        done=bool(terminated),
        truncated=bool(truncated),
        complementary_info=info,
    )


def decode_decision(transition: Transition, shape: ChainShape) -> Decision:
    """Validate and decode a received transition; errors say exactly which key is wrong."""
    info = transition.get("complementary_info") or {}
    missing = [key for key in REQUIRED_KEYS if key not in info]
    if missing:
        raise PiRLTransitionError(
            f"transition is missing πRL complementary_info keys {missing}; a pi-rl actor "
            f"(lerobot-pirl-actor with recipe=pi-rl) sends {list(REQUIRED_KEYS)}"
        )
    chain = torch.as_tensor(info[CHAIN], dtype=torch.float32).flatten()
    if chain.numel() != shape.numel:
        raise PiRLTransitionError(
            f"{CHAIN} has {chain.numel()} values, expected (K+1)·H·D = {shape.num_points}·"
            f"{shape.chunk_size}·{shape.model_action_dim} = {shape.numel}: actor and learner disagree "
            "on num_steps, chunk_size or the action space"
        )
    for key in (CHAIN, OLD_LOG_PROB, OLD_VALUE, STEP_REWARDS):
        if not torch.isfinite(torch.as_tensor(info[key])).all():
            raise PiRLTransitionError(f"{key} contains NaN or inf")
    for part in ("state", "next_state"):
        for key, value in transition[part].items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise PiRLTransitionError(f"{part}[{key!r}] contains NaN or inf")
    return Decision(
        observation=transition["state"],
        chain=chain.view(shape.num_points, shape.chunk_size, shape.model_action_dim),
        step_index=int(round(float(info[STEP_INDEX]))),
        old_log_prob=float(info[OLD_LOG_PROB]),
        old_value=float(info[OLD_VALUE]),
        reward=float(torch.as_tensor(info[STEP_REWARDS]).sum()),
        terminated=bool(transition["done"]),
        truncated=bool(transition["truncated"]),
        next_observation=transition["next_state"],
        policy_version=int(round(float(info[POLICY_VERSION]))),
        actor_id=int(round(float(info[ACTOR_ID]))),
        episode_id=int(round(float(info[EPISODE_ID]))),
        decision_index=int(round(float(info[DECISION_INDEX]))),
    )
