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
    output_dir: Path, port: int, *, state_dim: int = 3, action_dim: int = 2, **algorithm: object
) -> dict:
    """A LeRobot learner config for a tiny offline XVLA with ``recipe: pi-rl``."""
    import draccus
    from lerobot.configs.policies import PreTrainedConfig

    from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config

    policy = tiny_xvla_config(
        state_dim, action_dim, chunk_size=4, n_action_steps=2, num_denoising_steps=3, hidden_size=32, depth=1
    )
    policy.push_to_hub = False
    policy_block = json.loads(json.dumps(draccus.encode(policy, PreTrainedConfig), default=str))
    for features in (policy_block["input_features"], policy_block["output_features"]):
        for feature in features.values():
            feature["type"] = feature["type"].split(".")[-1].removeprefix("FeatureType.")
    algorithm_block = {
        "type": "pi-rl",
        "learner_port": port,
        "rollout_decisions": 8,
        "minibatch_size": 4,
        "update_epochs": 1,
        "actor_lr": 1e-3,
        "value_hidden_dims": [32, 32],
        "noise_hidden_dim": 16,
        "max_updates": 3,
    }
    algorithm_block.update(algorithm)
    return {
        "output_dir": str(output_dir),
        "job_name": "test_pi_rl",
        "seed": 0,
        "log_freq": 1,
        "save_checkpoint": True,
        "save_freq": 1,
        "wandb": {"enable": False},
        "recipe": "pi-rl",
        "policy": policy_block,
        "algorithm": algorithm_block,
        "env": {
            "type": "gym_manipulator",
            "fps": 10,
            "features": {"action": {"type": "ACTION", "shape": [action_dim]}},
            "features_map": {"action": "action"},
        },
    }
