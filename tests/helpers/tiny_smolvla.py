"""Preprocessed observation batches and random checkpoints for the tiny SmolVLA
(`lerobot_pirl.policies.tiny_smolvla`, built fully offline)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from lerobot.configs import FeatureType
from lerobot.policies.smolvla import SmolVLAConfig
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch import Tensor

from lerobot_pirl.policies.tiny_smolvla import (  # noqa: F401  (re-exported for the tests)
    IMAGE_SIZE,
    IMAGE_TOKENS,
    INSTRUCTION,
    LANGUAGE_LENGTH,
    build_tiny_smolvlm,
    tiny_smolvla_config,
)


@functools.cache
def _language(vlm_dir: str, instruction: str, length: int) -> tuple[Tensor, Tensor]:
    """The instruction tokenised by the folder's own tokenizer, right-padded to ``length``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(vlm_dir)
    encoded = tokenizer(
        instruction, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
    )
    return encoded["input_ids"][0], encoded["attention_mask"][0].bool()


def observation_batch(
    config: SmolVLAConfig,
    state: Tensor,
    images: dict[str, Tensor] | None = None,
    instruction: str = INSTRUCTION,
) -> dict[str, Tensor]:
    """A preprocessed observation batch from a [B, state_dim] state: every camera of ``config`` gets
    the given image or a blank one, and every row the same tokenised instruction (what SmolVLA's
    preprocessor hands the policy, minus normalisation)."""
    batch_size = state.shape[0]
    images = images or {}
    batch: dict[str, Tensor] = {OBS_STATE: state}
    for key, feature in config.image_features.items():
        batch[key] = images.get(key, torch.zeros(batch_size, *feature.shape, device=state.device))
    tokens, mask = _language(config.vlm_model_name, instruction, config.tokenizer_max_length)
    batch[OBS_LANGUAGE_TOKENS] = tokens.to(state.device).expand(batch_size, -1).clone()
    batch[OBS_LANGUAGE_ATTENTION_MASK] = mask.to(state.device).expand(batch_size, -1).clone()
    return batch


def tiny_smolvla_checkpoint(env_cfg: Any, output_dir: Path, *, seed: int = 0) -> Path:
    """A random tiny SmolVLA ``pretrained_model`` folder for ``env_cfg``'s features, with its VLM
    folder inside and LeRobot's pipeline files (unit normalisation stats: mean 0, std 1, min -1,
    max 1), as a fine-tuned SmolVLA checkpoint is laid out for the actors and DSRL."""
    from lerobot.envs.utils import env_to_policy_features
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from lerobot_pirl.runtime.processors import PolicyIO

    features = env_to_policy_features(env_cfg)
    images = {key: f for key, f in features.items() if f.type is FeatureType.VISUAL}
    state_dim, action_dim = features[OBS_STATE].shape[0], features[ACTION].shape[0]
    output_dir.mkdir(parents=True)
    vlm_dir = build_tiny_smolvlm(output_dir / "vlm")
    config = tiny_smolvla_config(
        vlm_dir,
        state_dim,
        action_dim,
        max_state_dim=max(state_dim, 6),
        max_action_dim=action_dim + 2,
        input_features={OBS_STATE: features[OBS_STATE], **images},
        output_features={ACTION: features[ACTION]},
        push_to_hub=False,
    )
    torch.manual_seed(seed)
    SmolVLAPolicy(config).save_pretrained(output_dir)

    def unit(dim: int) -> dict[str, Tensor]:
        return {
            "mean": torch.zeros(dim),
            "std": torch.ones(dim),
            "min": -torch.ones(dim),
            "max": torch.ones(dim),
        }

    stats = {OBS_STATE: unit(state_dim), ACTION: unit(action_dim)}
    PolicyIO.for_policy(config, dataset_stats=stats).save_pretrained(output_dir)
    return output_dir
