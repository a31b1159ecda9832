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


TRAINING_ENV_SETTINGS: dict[str, Any] = {**ENV_SETTINGS, "shaping_coef": 1.0}
"""The env RL trains in: `ENV_SETTINGS` with the potential-based shaping on (success still ends an
episode and is what every evaluation counts)."""

PI_RL_SETTINGS: dict[str, Any] = {
    "rollout_decisions": 512,
    "minibatch_size": 128,
    "update_epochs": 4,
    "actor_lr": 5e-5,
    "value_lr": 1e-3,
    "noise_lr": 1e-3,
    "value_hidden_dims": [64, 64],
    "noise_hidden_dim": 32,
    "target_kl": 0.02,
    "critic_warmup_updates": 1,
    "envs_per_actor": 10,
    "torch_threads": 1,
}
"""πRL settings on MT10: the PickCube ones, with one env per task in each actor."""

DSRL_SETTINGS: dict[str, Any] = {"temperature_init": 0.01, "discount": 0.9}
"""SAC settings of DSRL on MT10 (PickCube's; the lever study behind them is in benchmarks/README.md)."""

EVAL_EPISODES_PER_TASK = 50
"""Evaluation episodes per task of every recorded MT10 rate."""
DEMO_ENV_STEPS = 600_000
"""The MT10 demo's env-step budget."""
DEMO_EVAL_EVERY_UPDATES = 100
"""The MT10 demo evaluates every this many updates."""


def mt10_env_config(**overrides: Any) -> MetaWorldEnvConfig:
    """A `MetaWorldEnvConfig` with `ENV_SETTINGS`, ``overrides`` applied (e.g. ``task="reach-v3"``)."""
    return MetaWorldEnvConfig(**{**ENV_SETTINGS, **overrides})


def single_task_config(env_config: MetaWorldEnvConfig, task: str) -> MetaWorldEnvConfig:
    """``env_config`` restricted to one task (every env built from it runs ``task``)."""
    return dataclasses.replace(env_config, task=task, task_offset=0)


SHIPPED_CHECKPOINT = Path(__file__).parent / "assets" / "mt10_sft"
"""The tiny multi-task XVLA SFT checkpoint shipped in the package (a stock XVLA ``pretrained_model``
folder with its LeRobot processors, the instruction tokenizer and ``provenance.json``)."""
SHIPPED_CHECKPOINTS = {
    "xvla": SHIPPED_CHECKPOINT,
    "smolvla": SHIPPED_CHECKPOINT.with_name("mt10_smolvla_sft"),
}
"""The shipped MT10 SFT checkpoint of each policy type, the default first (the SmolVLA one keeps
its VLM folder inside itself as ``vlm/``, as the PickCube one does)."""
