"""Tiny πRL XVLA policies and rollout batches for the policy tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lerobot_pirl.policies import (
    PI_RL_ADVANTAGE,
    PI_RL_CHAIN,
    PI_RL_OLD_TOKEN_LOG_PROB,
    PI_RL_OLD_VALUE,
    PI_RL_RETURN,
    PI_RL_STEP_INDEX,
    PiRLHeads,
    PiRLRecord,
    PiRLSampling,
    PiRLXVLAPolicy,
)
from lerobot_pirl.policies.tiny_xvla import observation_batch, tiny_xvla_config

STATE_DIM = 3
ACTION_DIM = 2
CHUNK = 4
EXECUTED = 3
STEPS = 3


def make_pi_rl_policy(
    noise_method: str = "flow_sde",
    *,
    seed: int = 0,
    action_dim: int = ACTION_DIM,
    detach_value_input: bool = True,
    sampling: dict[str, Any] | None = None,
    **config_overrides: Any,
) -> tuple[PiRLXVLAPolicy, PiRLHeads]:
    """A seeded tiny PiRLXVLAPolicy (hidden 32, depth 1, chunk 4, K=3, H'=3) with heads attached."""
    fields: dict[str, Any] = {
        "chunk_size": CHUNK,
        "n_action_steps": EXECUTED,
        "num_denoising_steps": STEPS,
        "hidden_size": 32,
        "depth": 1,
    }
    fields.update(config_overrides)
    torch.manual_seed(seed)
    policy = PiRLXVLAPolicy(tiny_xvla_config(STATE_DIM, action_dim, **fields))
    heads = PiRLHeads.for_policy(
        policy,
        noise_head=noise_method == "flow_noise",
        value_hidden_dims=(32, 32),
        noise_hidden_dim=32,
        detach_value_input=detach_value_input,
    )
    policy.attach_pi_rl(heads, PiRLSampling(noise_method=noise_method, **(sampling or {})))
    return policy, heads


def states(batch_size: int, seed: int = 1) -> Tensor:
    """Reproducible states uniform in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, STATE_DIM, generator=generator) * 2 - 1


def observations(policy: PiRLXVLAPolicy, batch_size: int, seed: int = 1) -> dict[str, Tensor]:
    return observation_batch(policy.config, states(batch_size, seed))


def training_batch(
    policy: PiRLXVLAPolicy,
    observation: dict[str, Tensor],
    record: PiRLRecord,
    advantage: Tensor,
    returns: Tensor,
) -> dict[str, Tensor]:
    """What the learner hands to ``forward(model="pi_rl")``: observation + record + targets, the
    old values being the critic's before the update (as ``PiRLRecipe.update_step`` computes them)."""
    return {
        **observation,
        PI_RL_CHAIN: record.chain,
        PI_RL_STEP_INDEX: record.step_index,
        PI_RL_OLD_TOKEN_LOG_PROB: record.token_log_prob,
        PI_RL_OLD_VALUE: policy.pi_rl_value(observation),
        PI_RL_ADVANTAGE: advantage,
        PI_RL_RETURN: returns,
    }
