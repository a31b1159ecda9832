"""Simulation environments, registered with LeRobot as ``EnvConfig`` types: gym-hil PandaPickCube
(``pirl_pick_cube``, the demo's) and PandaArrangeBoxes (``pirl_arrange_boxes``).

The runtime never imports this package: LeRobot's env registry reaches it once the plugin loader
(``runtime.envs.register_env_plugins``) has imported the modules named under our
``lerobot_pirl.envs`` entry points.
"""

from lerobot_pirl.envs.pick_cube import (
    ACTION_DIM,
    IMAGE_KEY,
    STATE_DIM,
    STATE_KEY,
    TASK_DESCRIPTION,
    PickCubeEnvConfig,
    PickCubeGymEnv,
    policy_features,
    scripted_expert_action,
)

__all__ = [
    "ACTION_DIM",
    "IMAGE_KEY",
    "STATE_DIM",
    "STATE_KEY",
    "TASK_DESCRIPTION",
    "PickCubeEnvConfig",
    "PickCubeGymEnv",
    "policy_features",
    "scripted_expert_action",
]
