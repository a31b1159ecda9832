"""Simulation environments for actors and demos (gym-hil PandaPickCube adapter)."""

from lerobot_pirl.envs.pick_cube import (
    ACTION_DIM,
    IMAGE_KEY,
    STATE_DIM,
    STATE_KEY,
    PickCubeEnv,
    PickCubeEnvConfig,
    make_pick_cube_env,
    policy_features,
    scripted_expert_action,
)

__all__ = [
    "ACTION_DIM",
    "IMAGE_KEY",
    "STATE_DIM",
    "STATE_KEY",
    "PickCubeEnv",
    "PickCubeEnvConfig",
    "make_pick_cube_env",
    "policy_features",
    "scripted_expert_action",
]
