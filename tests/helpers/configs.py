"""Small, stock LeRobot configs for tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path

STATE_DIM = 4
ACTION_DIM = 2


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    **algorithm,
) -> dict:
    """A LeRobot learner config for a tiny offline XVLA with ``recipe: pi-rl`` (3-D state by default;
    ``policy`` overrides fields of the tiny XVLA config, e.g. its ``device``)."""
    from lerobot_pirl.tasks.pick_cube.configs import tiny_pi_rl_config

    return tiny_pi_rl_config(
        output_dir, port, state_dim=state_dim, action_dim=action_dim, policy=policy, **algorithm
    )
