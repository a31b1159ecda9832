"""gym-hil ``PandaArrangeBoxesBase-v0`` as a LeRobot env type (``env.type = "pirl_arrange_boxes"``).

The second env type the on-policy runtime drives, built by the same path as ``pirl_pick_cube``:
LeRobot's ``make_env(cfg, n_envs)`` → the default ``create_envs`` → ``gym.make(GYM_ID, **gym_kwargs)``.
The gymnasium env (`ArrangeBoxesGymEnv`) drives gym-hil's ``PandaArrangeBoxesGymEnv`` and only
adapts its observation to LeRobot's raw format:

* ``"agent_pos"`` float32 [21] (→ ``observation.state``) = gym-hil ``agent_pos`` (joint qpos 7,
  joint qvel 7, gripper command 1, TCP xyz 3) ⊕ gym-hil ``environment_state`` (what gym-hil
  exposes of the scene: the first box's position);
* ``"pixels"["front"]`` uint8 [S, S, 3], all zeros: gym-hil renders two 128 px cameras per step in
  its image mode (about a second per step under OSMesa), and XVLA needs one image feature.

Actions are gym-hil's own 7-D ``[dx, dy, dz, rx, ry, rz, grasp]`` in [-1, 1]; rewards,
terminations and success (``info["succeed"]``, also reported as ``info["is_success"]`` for LeRobot's
evaluator and as ``info["success"]``) are gym-hil's.
gym-hil shuffles the boxes with numpy's global RNG; each env keeps a private ``RandomState``
swapped in around gym-hil's ``reset`` (as ``pirl_pick_cube`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from lerobot.configs.types import PolicyFeature
from lerobot.envs.configs import EnvConfig

from .pick_cube import (
    CONTROL_DT,
    VIDEO_SIZE,
    LeanCameraRenderer,
    _default_headless_gl,
    _make_current,
    raw_features,
    reset_with_private_rng,
    success_info,
)

GYM_ID = "lerobot_pirl/PandaArrangeBoxes-v0"
TASK_DESCRIPTION = "arrange the boxes"
ROBOT_STATE_DIM = 18
ACTION_DIM = 7


STATE_DIM = ROBOT_STATE_DIM + 3


@EnvConfig.register_subclass("pirl_arrange_boxes")
@dataclass
class ArrangeBoxesEnvConfig(EnvConfig):
    """gym-hil PandaArrangeBoxes as a LeRobot env type: ``env.type = "pirl_arrange_boxes"``."""

    task: str | None = "PandaArrangeBoxes-v0"
    fps: int = 10
    episode_length: int = 100
    """Env steps per episode (gymnasium's ``TimeLimit``)."""
    image_size: int = 16
    """Side of the (blank) front image."""
    physics_dt: float = 0.002
    """gym-hil's physics substep (s); the control period stays 0.1 s."""
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(
        default_factory=lambda: {
            "action": "action",
            "agent_pos": "observation.state",
            "pixels/front": "observation.images.front",
        }
    )

    def __post_init__(self) -> None:
        if self.episode_length < 1 or self.image_size < 1:
            raise ValueError(
                "env.episode_length and env.image_size must be >= 1, got "
                f"{self.episode_length}, {self.image_size}"
            )
        if not self.features:
            self.features = raw_features(ACTION_DIM, STATE_DIM, self.image_size)

    @property
    def package_name(self) -> str:
        return __name__

    @property
    def gym_id(self) -> str:
        return GYM_ID

    @property
    def gym_kwargs(self) -> dict[str, Any]:
        return {
            "max_episode_steps": self.episode_length,
            "image_size": self.image_size,
            "physics_dt": self.physics_dt,
        }


class ArrangeBoxesGymEnv(gym.Env):
    """gym-hil PandaArrangeBoxes with LeRobot-style raw observations (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / CONTROL_DT)}

    def __init__(self, *, image_size: int = 16, physics_dt: float = 0.002):
        _default_headless_gl()
        from gym_hil import GymRenderingSpec
        from gym_hil.envs import PandaArrangeBoxesGymEnv

        self.task, self.task_description = "PandaArrangeBoxes-v0", TASK_DESCRIPTION  # as LeRobot's envs
        # gym-hil always creates a renderer; the smallest one costs nothing when nothing renders.
        self._env: Any = PandaArrangeBoxesGymEnv(
            image_obs=False, seed=0, physics_dt=physics_dt, render_spec=GymRenderingSpec(height=16, width=16)
        )
        self._rng_state = np.random.RandomState(0).get_state()
        self._video_renderer: LeanCameraRenderer | None = None
        self._blank = np.zeros((image_size, image_size, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "agent_pos": gym.spaces.Box(-np.inf, np.inf, shape=(STATE_DIM,), dtype=np.float32),
                "pixels": gym.spaces.Dict(
                    {"front": gym.spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8)}
                ),
            }
        )

    def _observation(self, raw: dict[str, Any]) -> dict[str, Any]:
        state = np.concatenate([raw["agent_pos"], raw["environment_state"]]).astype(np.float32)
        return {"agent_pos": state, "pixels": {"front": self._blank.copy()}}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self._observation(reset_with_private_rng(self, seed)), {}

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(-1), -1.0, 1.0)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"expected a {ACTION_DIM}-D action, got shape {action.shape}")
        raw, reward, terminated, truncated, info = self._env.step(action)
        info = success_info(info, bool(info.get("succeed", False)))
        return self._observation(raw), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray:
        """The front camera at ``VIDEO_SIZE`` px, for ``lerobot-eval``'s episode videos."""
        if self._video_renderer is None:
            self._video_renderer = LeanCameraRenderer(self._env.model, VIDEO_SIZE, "front")
        return self._video_renderer.frame(self._env.data).copy()

    def close(self) -> None:
        if self._video_renderer is not None:
            self._video_renderer.close()
            self._video_renderer = None
        if self._env is not None:
            _make_current(getattr(self._env, "_viewer", None))  # see pick_cube._close_renderer
            self._env.close()
            self._env = None


if GYM_ID not in gym.registry:
    gym.register(id=GYM_ID, entry_point=f"{__name__}:ArrangeBoxesGymEnv")
