"""Tiny πRL XVLA policies and rollout batches for the policy tests."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.policies.xvla.configuration_xvla import XVLAConfig
from lerobot.utils.constants import OBS_LANGUAGE_TOKENS, OBS_STATE
from torch import Tensor

from lerobot_pirl.policies import (
    PI_RL_ADVANTAGE,
    PI_RL_CHAIN,
    PI_RL_OLD_TOKEN_LOG_PROB,
    PI_RL_OLD_VALUE,
    PI_RL_RETURN,
    PI_RL_STEP_INDEX,
    PiRLHeads,
    PiRLMixin,
    PiRLRecord,
    PiRLSampling,
    PiRLXVLAPolicy,
)
from lerobot_pirl.policies.tiny_xvla import LANGUAGE_LENGTH, TINY_VOCAB_SIZE, tiny_xvla_config

STATE_DIM = 3
ACTION_DIM = 2
CHUNK = 4
EXECUTED = 3
STEPS = 3


def language_tokens(
    batch_size: int,
    length: int = LANGUAGE_LENGTH,
    vocab_size: int = TINY_VOCAB_SIZE,
    device: torch.device | str | None = None,
) -> Tensor:
    """Fixed token ids, no tokenizer download: the same deterministic instruction for every row.

    Stands in for ``observation.language.tokens`` that XVLA's pre-processor would produce with
    the BART tokenizer; the ids are a fixed pattern below ``vocab_size``. Shape [B, length], long.
    """
    ids = (torch.arange(length, device=device) * 37 + 5) % vocab_size
    return ids.unsqueeze(0).expand(batch_size, length).clone()


def observation_batch(config: XVLAConfig, state: Tensor, images: dict[str, Tensor] | None = None) -> dict:
    """An already-preprocessed observation batch for a tiny XVLA, from a [B, state_dim] state.

    Every image feature of ``config`` gets the given tensor or a blank (zero) image, and the
    language input is ``language_tokens`` with the config's text length and vocabulary.
    """
    batch_size = state.shape[0]
    images = images or {}
    batch: dict[str, Tensor] = {OBS_STATE: state}
    for key, feature in config.image_features.items():
        batch[key] = images.get(key, torch.zeros(batch_size, *feature.shape, device=state.device))
    vocab_size = config.florence_config["text_config"]["vocab_size"]
    batch[OBS_LANGUAGE_TOKENS] = language_tokens(
        batch_size, config.tokenizer_max_length, vocab_size, device=state.device
    )
    return batch


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
    policy: PiRLMixin,
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
