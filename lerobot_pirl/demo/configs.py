"""Learner configs (plain LeRobot JSON dicts) for a tiny offline XVLA trained with ``recipe: pi-rl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import draccus
from lerobot.configs.policies import PreTrainedConfig

from ..envs.pick_cube import ACTION_DIM, STATE_DIM
from ..policies.tiny_xvla import tiny_xvla_config

PICK_CUBE_ENV = {"type": "gym_manipulator", "name": "gym_hil", "task": "PandaPickCubeBase-v0", "fps": 10}


def tiny_pi_rl_config(
    output_dir: Path | str,
    port: int,
    *,
    state_dim: int = STATE_DIM,
    action_dim: int = ACTION_DIM,
    policy: dict[str, Any] | None = None,
    env: dict[str, Any] | None = None,
    **algorithm: Any,
) -> dict[str, Any]:
    """A complete learner/actor config: tiny XVLA policy block, ``pi-rl`` algorithm block, env block.

    ``policy`` overrides fields of `tiny_xvla_config`; ``algorithm`` overrides `PiRLConfig` fields.
    """
    policy_kwargs: dict[str, Any] = {
        "chunk_size": 4,
        "n_action_steps": 2,
        "num_denoising_steps": 3,
        "hidden_size": 32,
        "depth": 1,
    }
    policy_kwargs.update(policy or {})
    policy_config = tiny_xvla_config(state_dim, action_dim, **policy_kwargs)
    algorithm_block: dict[str, Any] = {
        "rollout_decisions": 8,
        "minibatch_size": 4,
        "update_epochs": 1,
        "actor_lr": 1e-3,
        "value_hidden_dims": [32, 32],
        "noise_hidden_dim": 16,
        "max_updates": 3,
    }
    algorithm_block.update(algorithm)
    return learner_config(policy_config, output_dir, port, action_dim=action_dim, env=env, **algorithm_block)


def pretrained_pi_rl_config(
    checkpoint: Path | str, output_dir: Path | str, port: int, *, seed: int = 0, **algorithm: Any
) -> dict[str, Any]:
    """A pi-rl learner/actor config that starts from a saved XVLA checkpoint (``pretrained_path``)."""
    policy_config = PreTrainedConfig.from_pretrained(str(checkpoint))
    policy_config.pretrained_path = Path(checkpoint)
    return learner_config(policy_config, output_dir, port, seed=seed, **algorithm)


def learner_config(
    policy_config: PreTrainedConfig,
    output_dir: Path | str,
    port: int,
    *,
    action_dim: int = ACTION_DIM,
    env: dict[str, Any] | None = None,
    seed: int = 0,
    **algorithm: Any,
) -> dict[str, Any]:
    """The JSON dict LeRobot's parser reads: ``policy`` from ``policy_config``, ``algorithm`` = pi-rl."""
    policy_config.push_to_hub = False
    policy_block = json.loads(json.dumps(draccus.encode(policy_config, PreTrainedConfig), default=str))
    for features in (policy_block["input_features"], policy_block["output_features"]):
        for feature in features.values():
            feature["type"] = str(feature["type"]).removeprefix("FeatureType.")
    algorithm_block: dict[str, Any] = {"type": "pi-rl", "learner_port": port, **algorithm}
    env_block = {
        **PICK_CUBE_ENV,
        "features": {"action": {"type": "ACTION", "shape": [action_dim]}},
        "features_map": {"action": "action"},
    }
    env_block.update(env or {})
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
