"""Small, stock LeRobot configs for tests."""

from __future__ import annotations

import json
from pathlib import Path

from lerobot_pirl.envs import pick_cube
from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config
from lerobot_pirl.tasks.machine import free_port
from lerobot_pirl.tasks.pick_cube.configs import learner_config

__all__ = ["free_port", "pi_rl_learner_config", "sac_learner_config", "write_json"]

STATE_DIM = 4
ACTION_DIM = 2


def sac_learner_config(output_dir: Path, port: int, **overrides: object) -> dict:
    """A stock LeRobot 0.6 learner config: tiny gaussian_actor on a 4-D state, 2-D action."""
    config: dict = {
        "output_dir": str(output_dir),
        "job_name": "test_sac",
        "seed": 0,
        "batch_size": 8,
        "log_freq": 1,
        "save_checkpoint": True,
        "save_freq": 4,
        "wandb": {"enable": False},
        "policy": {
            "type": "gaussian_actor",
            "device": "cpu",
            "push_to_hub": False,
            "online_steps": 8,
            "online_step_before_learning": 8,
            "online_buffer_capacity": 1000,
            "latent_dim": 16,
            "state_encoder_hidden_dim": 16,
            "actor_network_kwargs": {"hidden_dims": [16, 16]},
            "dataset_stats": {
                "observation.state": {"min": [-1.0] * STATE_DIM, "max": [1.0] * STATE_DIM},
                "action": {"min": [-1.0] * ACTION_DIM, "max": [1.0] * ACTION_DIM},
            },
            "actor_learner_config": {
                "learner_host": "127.0.0.1",
                "learner_port": port,
                "policy_parameters_push_frequency": 0,
                "queue_get_timeout": 0.1,
            },
            "concurrency": {"actor": "threads", "learner": "threads"},
        },
        "env": {
            "type": "gym_manipulator",
            "fps": 10,
            "features": {
                "observation.state": {"type": "STATE", "shape": [STATE_DIM]},
                "action": {"type": "ACTION", "shape": [ACTION_DIM]},
            },
            "features_map": {"observation.state": "observation.state", "action": "action"},
        },
    }
    config.update(overrides)
    return config


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def pi_rl_learner_config(
    output_dir: Path,
    port: int,
    *,
    state_dim: int = 3,
    action_dim: int = 2,
    policy: dict | None = None,
    env: dict | None = None,
    **algorithm,
) -> dict:
    """A complete learner/actor config for a tiny offline XVLA (3-D state by default) with
    ``recipe: pi-rl``: tiny XVLA policy block, ``pi-rl`` algorithm block, ``pirl_pick_cube`` env block.

    ``policy`` overrides fields of `tiny_xvla_config`; ``env`` fields of `PickCubeEnvConfig`;
    ``algorithm`` overrides `PiRLConfig` fields.
    """
    policy_kwargs: dict = {
        "chunk_size": 4,
        "n_action_steps": 2,
        "num_denoising_steps": 3,
        "hidden_size": 32,
        "depth": 1,
    }
    policy_kwargs.update(policy or {})
    policy_config = tiny_xvla_config(state_dim, action_dim, **policy_kwargs)
    algorithm_block: dict = {
        "rollout_decisions": 8,
        "minibatch_size": 4,
        "update_epochs": 1,
        "actor_lr": 1e-3,
        "value_hidden_dims": [32, 32],
        "noise_hidden_dim": 16,
        "max_updates": 3,
    }
    algorithm_block.update(algorithm)
    pick_cube_dims = (pick_cube.STATE_DIM, pick_cube.ACTION_DIM)
    if (state_dim, action_dim) != pick_cube_dims and not (env or {}).get("features"):
        # A policy for another state/action size (learner-only tests): declare its action on the env
        # block, as LeRobot's make_policy takes the policy's action feature from there.
        env = {**(env or {}), "features": {"action": {"type": "ACTION", "shape": [action_dim]}}}
    return learner_config(policy_config, output_dir, port, env=env, **algorithm_block)
