"""Env settings of the MT10 checkpoint, shared by its builder, its evaluation and later recipes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lerobot_pirl.envs.metaworld import MetaWorldEnvConfig

METAWORLD_ENV_TYPE = "pirl_metaworld"
"""The registered ``EnvConfig`` type (`lerobot_pirl.envs.metaworld.MetaWorldEnvConfig`)."""

ENV_SETTINGS: dict[str, Any] = {
    "task": "MT10",
    "obs_type": "state",
    "image_size": 16,
    "episode_length": 200,
    "reward_type": "sparse",
}
"""`MetaWorldEnvConfig` fields of the shipped MT10 checkpoint: the 39-D state (object and goal
included) with a blank image whose side is the tiny policy's image input (16), 200-step episodes,
the sparse success reward. Its demonstrations, its evaluation and RL from it use these."""


def mt10_env_config(**overrides: Any) -> MetaWorldEnvConfig:
    """A `MetaWorldEnvConfig` with `ENV_SETTINGS`, ``overrides`` applied (e.g. ``task="reach-v3"``)."""
    return MetaWorldEnvConfig(**{**ENV_SETTINGS, **overrides})


def single_task_config(env_config: MetaWorldEnvConfig, task: str) -> MetaWorldEnvConfig:
    """``env_config`` restricted to one task (every env built from it runs ``task``)."""
    return dataclasses.replace(env_config, task=task, task_offset=0)


SHIPPED_CHECKPOINT = Path(__file__).parent / "assets" / "mt10_sft"
"""The tiny multi-task XVLA SFT checkpoint shipped in the package (a stock XVLA ``pretrained_model``
folder with its LeRobot processors, the instruction tokenizer and ``provenance.json``)."""
