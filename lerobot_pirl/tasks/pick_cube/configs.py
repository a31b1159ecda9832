"""Learner configs (plain LeRobot JSON dicts) for a tiny offline XVLA trained with ``recipe: pi-rl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import draccus
from lerobot.configs.policies import PreTrainedConfig

from lerobot_pirl.runtime.processors import load_policy_config

PICK_CUBE_ENV_TYPE = "pirl_pick_cube"
"""The registered ``EnvConfig`` type of gym-hil PandaPickCube (`lerobot_pirl.envs.PickCubeEnvConfig`)."""


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
    "envs_per_actor": 4,
    "torch_threads": 1,
}
"""πRL settings for the tiny XVLA on this task (the paper's are for 3B models: larger lrs, smaller
heads); the lever study behind them is in ``benchmarks/README.md`` and ``benchmarks/results/ablation/``."""

ENV_SETTINGS: dict[str, Any] = {
    "episode_length": 50,
    "physics_dt": 0.005,
    "shaping_coef": 1.0,
}
"""`PickCubeEnvConfig` fields of the training env of the demo and the benchmarks (evaluations use the
same episode length and physics, and count gym-hil's sparse success)."""


DSRL_SETTINGS: dict[str, Any] = {"temperature_init": 0.01, "discount": 0.9}
"""SAC settings of the demo (and of ``benchmarks/dsrl_pick_cube.py``), LeRobot's defaults but two:

- ``temperature_init``: the SAC baseline's departure (a 0/1 reward once per episode is swamped by
  alpha = 1);
- ``discount`` per decision (H' env steps): at LeRobot's 0.99 the agent learned, then unlearned,
  to succeed (the DSRL lever study, ``benchmarks/README.md``). Its critic's horizon spans several
  episodes, and the targets bootstrap through the time limit and back up the entropy bonus, so an
  episode that goes on can be worth more than a success, which ends it. 0.9 is a horizon of about
  ten decisions, the length of a pick.
"""


def pretrained_pi_rl_config(
    checkpoint: Path | str,
    output_dir: Path | str,
    port: int,
    *,
    seed: int = 0,
    env: dict[str, Any] | None = None,
    **algorithm: Any,
) -> dict[str, Any]:
    """A pi-rl learner/actor config that starts from a saved XVLA checkpoint (``pretrained_path``)."""
    policy_config = load_policy_config(checkpoint)
    policy_config.pretrained_path = Path(checkpoint)
    return learner_config(policy_config, output_dir, port, seed=seed, env=env, **algorithm)


def learner_config(
    policy_config: PreTrainedConfig,
    output_dir: Path | str,
    port: int,
    *,
    env: dict[str, Any] | None = None,
    seed: int = 0,
    **algorithm: Any,
) -> dict[str, Any]:
    """The JSON dict LeRobot's parser reads: ``policy`` from ``policy_config``, ``algorithm`` = pi-rl,
    ``env`` = PandaPickCube with the given `PickCubeEnvConfig` fields."""
    policy_config.push_to_hub = False
    policy_block = json.loads(json.dumps(draccus.encode(policy_config, PreTrainedConfig), default=str))
    for features in (policy_block["input_features"], policy_block["output_features"]):
        for feature in features.values():
            feature["type"] = str(feature["type"]).removeprefix("FeatureType.")
    algorithm_block: dict[str, Any] = {"type": "pi-rl", "learner_port": port, **algorithm}
    env_block: dict[str, Any] = {"type": PICK_CUBE_ENV_TYPE, **(env or {})}
    return {
        "output_dir": str(output_dir),
        "job_name": "pi_rl",
        "seed": seed,
        "log_freq": 1,
        "save_checkpoint": True,
        "save_freq": 1,
        "wandb": {"enable": False},
        "recipe": "pi-rl",
        "policy": policy_block,
        "algorithm": algorithm_block,
        "env": env_block,
    }


def dsrl_config(
    checkpoint: Path | str,
    output_dir: Path | str,
    port: int,
    *,
    inner_env: dict[str, Any] | None = None,
    env: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
    seed: int = 0,
    **algorithm: Any,
) -> dict[str, Any]:
    """A stock LeRobot SAC learner/actor config with ``recipe: dsrl``: a small ``gaussian_actor``
    choosing the initial noise of the frozen XVLA at ``checkpoint`` (``env.type = pirl_dsrl``,
    its ``inner`` env PandaPickCube with the given fields, or the env ``inner_env["type"]`` names).

    The agent's normaliser stats are `agent_dataset_stats`.
    """
    from lerobot.envs.configs import EnvConfig

    from lerobot_pirl.envs.noise_steered import DSRLEnvConfig, agent_dataset_stats, noise_layout, task_count

    checkpoint = Path(checkpoint)
    env_block: dict[str, Any] = {
        "type": "pirl_dsrl",
        "checkpoint": str(checkpoint.resolve()),
        "inner": {"type": PICK_CUBE_ENV_TYPE, **(inner_env or {})},
        **(env or {}),
    }
    layout = noise_layout(
        checkpoint,
        env_block.get("noise_dims", DSRLEnvConfig.noise_dims),
        env_block.get("noise_scale", DSRLEnvConfig.noise_scale),
    )
    policy_block: dict[str, Any] = {
        "type": "gaussian_actor",
        "device": "cpu",
        "push_to_hub": False,
        "online_steps": 1_000_000,
        "online_step_before_learning": 100,
        "online_buffer_capacity": 100_000,
        "offline_buffer_capacity": 1,
        "latent_dim": 64,
        "actor_network_kwargs": {"hidden_dims": [256, 256]},
        "dataset_stats": agent_dataset_stats(
            checkpoint, layout, task_count(draccus.decode(EnvConfig, env_block["inner"]))
        ),
        "actor_learner_config": {
            "learner_host": "127.0.0.1",
            "learner_port": port,
            "policy_parameters_push_frequency": 1,
            "queue_get_timeout": 0.1,
        },
        "concurrency": {"actor": "threads", "learner": "threads"},
        **(policy or {}),
    }
    return {
        "output_dir": str(output_dir),
        "job_name": "dsrl",
        "seed": seed,
        "batch_size": 256,
        "log_freq": 10,
        "save_checkpoint": True,
        "save_freq": 1000,
        "wandb": {"enable": False},
        "recipe": "dsrl",
        "policy": policy_block,
        "algorithm": {"type": "dsrl", **algorithm},
        "env": env_block,
    }
