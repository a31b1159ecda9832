"""gym-hil ``PandaPickCubeBase-v0`` as a registered LeRobot env type (``env.type = "pirl_pick_cube"``).

Construction path, and why
--------------------------
`PickCubeEnvConfig` is an ``EnvConfig`` like LeRobot's own (``aloha``, ``pusht``, ...): LeRobot's
``make_env(cfg, n_envs)`` builds it with its default ``create_envs`` (``gym.make(GYM_ID,
**gym_kwargs)`` in a vector env), and the πRL actor, the evaluation and the SFT build all take that
path. The gymnasium env (`PickCubeGymEnv`) drives gym-hil's ``PandaPickCubeGymEnv`` directly. It does
*not* go through LeRobot's ``lerobot.rl.gym_manipulator.make_robot_env``, because in LeRobot 0.6.1
that function cannot give us this task:

* it always passes ``use_gripper=`` and ``gripper_penalty=``, which only gym-hil's *wrapped* ids
  accept. ``PandaPickCubeBase-v0`` raises ``TypeError: unexpected keyword argument 'use_gripper'``.
* the wrapped ``PandaPickCube-v0`` it can build has a fixed block at (0.5, 0): there is no way to
  pass ``random_block_position``. It also forces ``image_obs=True`` (two 128 px cameras rendered
  every step, and the block xyz we need for the state is left out), ``render_mode="human"``, a 4-D
  action scaled by 2.5 cm, and ``ResetDelayWrapper``, which sleeps 1 s on every reset.

gym-hil stays the single source of the task (physics, reward, termination). This module only
adapts the observation, picks the camera, and keeps the block-position RNG reproducible.

Observations (LeRobot's raw env format; ``preprocess_observation`` maps them to policy keys)
------------------------------------------------------------------------------------------
* ``"agent_pos"`` float32 [21] (→ ``observation.state``) = gym-hil ``agent_pos`` (18: joint qpos 7,
  joint qvel 7, gripper command 1, TCP xyz 3) ⊕ block xyz (3). The gripper command is rescaled from
  gym-hil's actuator units (0..255) to [0, 1] (0 open), so no state entry dwarfs the others for the
  policy.
* ``"pixels"["front"]`` uint8 [S, S, 3] (→ ``observation.images.front``, [3, S, S] in [0, 1]). With
  ``image_obs=True`` it is the ``front`` camera, rendered at ``render_size`` and area-resized to
  ``image_size``. With ``image_obs=False`` it is all zeros: XVLA needs at least one image feature.

gym-hil is always built with ``image_obs=False``, so it returns the block position, and we render
the front camera ourselves, once per step. gym-hil's own image mode renders the wrist camera too.
Our renderer turns off shadows, reflections and multisampling: under OSMesa those dominate a
frame's cost (an order of magnitude).

Actions (4-D, each in [-1, 1]): ``[dx, dy, dz, grasp_delta]``
-------------------------------------------------------------
The policy acts in a normalised space, like gym-hil's wrapped tasks (4-D, scaled by 2.5 cm): the
adapter clips each entry to [-1, 1], multiplies ``dx, dy, dz`` by ``POSITION_STEP`` (3 cm) and
passes gym-hil its 7-D action ``[dx, dy, dz, 0, 0, 0, grasp_delta]``. gym-hil ignores the rotation
entries, so exposing them would only add action dims whose exploration noise carries no signal
(and inflates the πRL log-likelihood ratio). The πRL exploration noise (std 0.08–0.16 in action
units) then means a few millimetres per step, as it would on a real arm. gym-hil semantics,
checked against ``FrankaGymEnv.apply_action``:

* ``dx, dy, dz`` (after scaling) are metres added to the mocap target. The base env applies **no
  per-step limit**; it only clips the target to the workspace box ``[[0.2, -0.3, 0], [0.6, 0.3, 0.5]]``.
  An opspace controller then tracks the target for 50 physics substeps (``control_dt`` 0.1 s).
* ``grasp_delta`` changes the gripper command: ``g = clip(g + grasp_delta, 0, 1)`` with 0 open and
  1 closed. So +1 closes fully in one step and -1 opens fully. The state reports ``g``.

Episodes: the reward is sparse, 1.0 once the block is lifted 0.1 m. ``terminated`` is set on
success, or when the block leaves the sampling area by more than 5 cm. ``truncated`` is set at
``episode_length`` by gymnasium's ``TimeLimit``. ``info["is_success"]`` reports the success every
step, where LeRobot's evaluator (``lerobot-eval``) reads it, beside gym-hil's own ``info["succeed"]``
and ``info["success"]`` (`success_info`). With
``shaping_coef > 0`` the returned reward adds a potential-based shaping term (``shaping_potential``);
``info["sparse_reward"]`` keeps gym-hil's own reward, and success and terminations never change.

Rendering: gym-hil always creates a MuJoCo renderer, even for state-only observations. So on Linux
with no ``DISPLAY`` and no ``MUJOCO_GL`` set, and with ``mujoco`` not yet imported, we default to
``MUJOCO_GL=osmesa`` / ``PYOPENGL_PLATFORM=osmesa``. OSMesa needs the system package ``libosmesa6``.
Several envs can live in one process. ``close()`` works around a MuJoCo renderer-teardown bug that
would otherwise corrupt the frames of the other envs still open (see ``_close_renderer``).

Seeding: gym-hil samples the block from numpy's *global* RNG (``np.random.uniform``). To keep that
reproducible without touching the caller's global state, each env keeps a private numpy
``RandomState``. It swaps that state in around gym-hil's ``reset`` and swaps it back out afterwards.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig

STATE_DIM = 21
ACTION_DIM = 4
GRASP_IDX = 3  # index of grasp_delta in the action
STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_KEY = "observation.images.front"
CAMERA = "front"

# Indices into observation.state (agent_pos layout from gym-hil's FrankaGymEnv.get_robot_state).
GRIPPER_IDX = 14
TCP_SLICE = slice(15, 18)
BLOCK_SLICE = slice(18, 21)
GRIPPER_MAX = 255.0  # gym_hil.mujoco_gym_env.MAX_GRIPPER_COMMAND: the state reports command / this
POSITION_STEP = 0.03  # metres of TCP motion per unit of dx, dy, dz
CONTROL_DT = 0.1  # gym-hil's control period (s): one env step
LIFT_SUCCESS = 0.1  # m: gym-hil's success lift


def success_info(info: dict[str, Any], success: bool) -> dict[str, Any]:
    """``info`` (the wrapped env's own keys, kept) with the success flag under ``is_success``, the key
    LeRobot's envs report and ``lerobot-eval`` reads (also in a vector env's ``final_info``), and
    ``success``.

    Without ``is_success`` LeRobot 0.6.1's evaluator does not count 0 %: at a time limit it falls
    back to a default *list*, whose truthiness makes every env of the batch a success.
    """
    return {**info, "is_success": success, "success": success}


def shaping_potential(state: np.ndarray, block_z0: float, grasp_weight: float = 0.0) -> float:
    """Φ(s) = 0.3·reach + grasp_weight·reach·g + 0.7·clip((z_block − z0) / 0.1 m, 0, 1),
    with reach = exp(−20·‖block − tcp‖) and g the gripper command in [0, 1].

    With ``grasp_weight = 0`` these are the terms of gym-hil's ``reward_type="dense"`` reward, used
    as a *potential*: the training reward adds ``coef·(Φ(s') − Φ(s))`` to the sparse reward (Ng et
    al., 1999, with γ = 1, RLinf's "relative reward"). Used as a per-step reward instead, it pays the
    policy for hovering at the block for the whole episode rather than lifting it (success ends the
    episode); as a potential difference it sums to ``coef·(Φ_T − Φ_0)`` per episode, so progress is
    all it rewards. The grasp term grades closing the gripper at the block, which gym-hil's terms
    only reward once the block rises.
    """
    reach = float(np.exp(-20.0 * np.linalg.norm(state[BLOCK_SLICE] - state[TCP_SLICE])))
    lift = float(np.clip((state[BLOCK_SLICE][2] - block_z0) / LIFT_SUCCESS, 0.0, 1.0))
    return 0.3 * reach + grasp_weight * reach * float(state[GRIPPER_IDX]) + 0.7 * lift


TASK_DESCRIPTION = "pick up the cube"
"""The instruction the policy's tokenizer reads (``task_description``, as LeRobot's envs expose it)."""

GYM_ID = "lerobot_pirl/PandaPickCube-v0"
"""Our gymnasium id; ``PickCubeEnvConfig.create_envs`` (LeRobot's default) builds it with ``gym.make``."""


def raw_features(action_dim: int, state_dim: int, image_size: int) -> dict[str, PolicyFeature]:
    """The env features of a gym-hil adapter in LeRobot's raw format: the action, ``agent_pos``
    and one ``pixels/front`` camera (what ``features_map`` maps to the policy's keys)."""
    return {
        "action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,)),
        "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(state_dim,)),
        "pixels/front": PolicyFeature(type=FeatureType.VISUAL, shape=(image_size, image_size, 3)),
    }


@EnvConfig.register_subclass("pirl_pick_cube")
@dataclass
class PickCubeEnvConfig(EnvConfig):
    """gym-hil PandaPickCube as a LeRobot env type: ``env.type = "pirl_pick_cube"``.

    LeRobot builds it like any other ``EnvConfig`` (``lerobot.envs.make_env(cfg, n_envs)``), and
    its raw observations (``agent_pos``, ``pixels/front``) go through LeRobot's
    ``preprocess_observation`` to ``observation.state`` / ``observation.images.front``.
    """

    task: str | None = "PandaPickCube-v0"
    fps: int = 10
    episode_length: int = 100
    """Time limit (env steps): gymnasium's ``TimeLimit`` truncates the episode there."""
    image_obs: bool = False
    """Render the front camera every step; off, the image is blank (XVLA needs one image input)."""
    image_size: int = 16
    render_size: int | None = None
    """Side of the rendered frame before it is area-resized to ``image_size``; None: max(64,
    image_size). Under OSMesa the cost hardly depends on resolution, so rendering larger and
    downsampling is cheap."""
    random_block_position: bool = True
    physics_dt: float = 0.002
    """gym-hil's physics substep (s). Each env step runs control_dt / physics_dt substeps of gym-hil's
    Python operational-space controller, which dominates the step's cost; the task (success test,
    workspace, episode limit) does not depend on it."""
    shaping_coef: float = 0.0
    """Weight of the potential-based shaping added to the sparse reward (0: the sparse reward
    alone). See `shaping_potential`; ``info["success"]`` and terminations stay gym-hil's own."""
    shaping_grasp_weight: float = 0.0
    """Weight of the potential's grasp term (closing the gripper at the block); see `shaping_potential`."""
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(
        default_factory=lambda: {
            "action": ACTION_KEY,
            "agent_pos": STATE_KEY,
            "pixels/front": IMAGE_KEY,
        }
    )

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"env.image_size must be >= 1, got {self.image_size}")
        if self.episode_length < 1:
            raise ValueError(f"env.episode_length must be >= 1, got {self.episode_length}")
        if not 0 < self.physics_dt <= CONTROL_DT:
            raise ValueError(f"env.physics_dt must be in (0, {CONTROL_DT}] s, got {self.physics_dt}")
        if self.shaping_coef < 0 or self.shaping_grasp_weight < 0:
            raise ValueError(
                f"env.shaping_coef and env.shaping_grasp_weight must be >= 0, got {self.shaping_coef}, "
                f"{self.shaping_grasp_weight}"
            )
        if self.render_size is not None and self.render_size < self.image_size:
            raise ValueError(
                f"env.render_size ({self.render_size}) must be >= env.image_size ({self.image_size})"
            )
        if not self.features:  # declared from the fields unless a config gives them
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
            "image_obs": self.image_obs,
            "image_size": self.image_size,
            "render_size": self.render_size,
            "random_block_position": self.random_block_position,
            "physics_dt": self.physics_dt,
            "shaping_coef": self.shaping_coef,
            "shaping_grasp_weight": self.shaping_grasp_weight,
        }


def policy_features(config: PickCubeEnvConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(input_features, output_features)`` for a LeRobot policy config driving this env."""
    from lerobot.envs import env_to_policy_features

    features = env_to_policy_features(config)
    outputs = {key: ft for key, ft in features.items() if ft.type is FeatureType.ACTION}
    return {key: ft for key, ft in features.items() if key not in outputs}, outputs


def reset_with_private_rng(adapter: Any, seed: int | None) -> dict[str, Any]:
    """``adapter._env.reset(seed=seed)`` with numpy's global RNG swapped for the adapter's own state
    (``adapter._rng_state``, re-seeded when ``seed`` is given): gym-hil draws its scene from the
    global RNG, which must stay the caller's."""
    if seed is not None:
        adapter._rng_state = np.random.RandomState(seed).get_state()
    outer = np.random.get_state()
    np.random.set_state(adapter._rng_state)
    try:
        raw, _ = adapter._env.reset(seed=seed)
    finally:
        adapter._rng_state = np.random.get_state()
        np.random.set_state(outer)
    return raw


def _default_headless_gl() -> None:
    """Select OSMesa when nothing else can work headless and it is still early enough to choose."""
    if (
        sys.platform.startswith("linux")
        and "MUJOCO_GL" not in os.environ
        and not os.environ.get("DISPLAY")
        and "mujoco" not in sys.modules
    ):
        os.environ["MUJOCO_GL"] = "osmesa"
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")


class PickCubeGymEnv(gym.Env):
    """gym-hil PandaPickCube with LeRobot-style raw observations (see the module docstring).

    Registered as ``GYM_ID``; the time limit comes from ``gym.make(..., max_episode_steps=)``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / CONTROL_DT)}

    def __init__(
        self,
        *,
        image_obs: bool = False,
        image_size: int = 16,
        render_size: int | None = None,
        random_block_position: bool = True,
        physics_dt: float = 0.002,
        shaping_coef: float = 0.0,
        shaping_grasp_weight: float = 0.0,
    ):
        _default_headless_gl()
        from gym_hil import GymRenderingSpec
        from gym_hil.envs import PandaPickCubeGymEnv

        self.image_obs, self.image_size = image_obs, image_size
        self.shaping_coef, self.shaping_grasp_weight = shaping_coef, shaping_grasp_weight
        # LeRobot's envs expose both; lerobot-eval checks for both (an async worker asked for a
        # missing attribute shuts down).
        self.task, self.task_description = "PandaPickCube-v0", TASK_DESCRIPTION
        size = render_size if render_size is not None else max(64, image_size)
        self._env: Any = PandaPickCubeGymEnv(
            image_obs=False,
            random_block_position=random_block_position,
            seed=0,
            render_spec=GymRenderingSpec(height=size, width=size),
            physics_dt=physics_dt,
        )
        self._gym_action_dim = int(self._env.action_space.shape[0])  # 7: xyz, rotation, grasp
        self._rng_state = np.random.RandomState(0).get_state()
        self._renderer = self._make_renderer(size) if image_obs else None
        self._video_renderer: LeanCameraRenderer | None = None
        self._blank = np.zeros((image_size, image_size, 3), dtype=np.uint8)
        self._potential = 0.0
        self._block_z0 = 0.0
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "agent_pos": gym.spaces.Box(-np.inf, np.inf, shape=(STATE_DIM,), dtype=np.float32),
                "pixels": gym.spaces.Dict(
                    {CAMERA: gym.spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8)}
                ),
            }
        )

    @property
    def gym_hil_env(self) -> Any:
        """The gym-hil ``PandaPickCubeGymEnv`` this adapter drives."""
        return self._env

    def _make_renderer(self, size: int) -> LeanCameraRenderer:
        return LeanCameraRenderer(self._env.model, size, CAMERA)

    def _image(self) -> np.ndarray:
        if self._renderer is None:
            return self._blank.copy()
        frame = self._renderer.frame(self._env.data)
        if frame.shape[0] == self.image_size:
            return frame.copy()
        resized = F.interpolate(
            torch.from_numpy(frame.copy()).permute(2, 0, 1).float().unsqueeze(0),
            size=(self.image_size, self.image_size),
            mode="area",
        )
        return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()

    def _state(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        state = np.concatenate([raw["agent_pos"], raw["environment_state"]]).astype(np.float32)
        state[GRIPPER_IDX] /= GRIPPER_MAX
        return state

    def _obs(self, state: np.ndarray) -> dict[str, Any]:
        return {"agent_pos": state, "pixels": {CAMERA: self._image()}}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        raw = reset_with_private_rng(self, seed)
        state = self._state(raw)
        self._block_z0 = float(state[BLOCK_SLICE][2])
        self._potential = shaping_potential(state, self._block_z0, self.shaping_grasp_weight)
        return self._obs(state), {}

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"expected a {ACTION_DIM}-D action, got shape {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"non-finite action: {action}")
        action = np.clip(action, -1.0, 1.0)
        gym_action = np.zeros(self._gym_action_dim, dtype=np.float32)
        gym_action[:3] = action[:3] * POSITION_STEP
        gym_action[-1] = action[GRASP_IDX]
        raw, reward, terminated, truncated, info = self._env.step(gym_action)
        info = success_info(info, bool(info.get("succeed", False)))
        info["sparse_reward"] = float(reward)
        state = self._state(raw)
        if self.shaping_coef > 0:
            potential = shaping_potential(state, self._block_z0, self.shaping_grasp_weight)
            reward = float(reward) + self.shaping_coef * (potential - self._potential)
            self._potential = potential
        return self._obs(state), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray:
        """The front camera at ``VIDEO_SIZE`` px (uint8 [S, S, 3]): the frames of ``lerobot-eval``'s
        episode videos, whatever the policy's image input is."""
        if self._video_renderer is None:
            self._video_renderer = self._make_renderer(VIDEO_SIZE)
        return self._video_renderer.frame(self._env.data).copy()

    def close(self) -> None:
        for renderer in (self._renderer, self._video_renderer):
            if renderer is not None:
                renderer.close()
        self._renderer = self._video_renderer = None
        if self._env is not None:
            # gym-hil's close() closes its own renderer: give it the same protection.
            _make_current(getattr(self._env, "_viewer", None))
            self._env.close()
            self._env = None


if GYM_ID not in gym.registry:
    gym.register(id=GYM_ID, entry_point=f"{__name__}:PickCubeGymEnv")


VIDEO_SIZE = 128
"""Side (px) of the frames ``render()`` gives for videos."""


class LeanCameraRenderer:
    """One MuJoCo camera rendered offscreen without shadows, reflections or multisampling: under
    OSMesa those dominate a frame's cost (an order of magnitude) and add nothing at these sizes."""

    def __init__(self, model: Any, size: int, camera: str):
        import mujoco

        # Multisampling and the buffer's size only affect the offscreen buffer this renderer is
        # about to create (gym-hil sizes the model's for its own cameras).
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), size)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), size)
        self._renderer = mujoco.Renderer(model, height=size, width=size)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)

    def frame(self, data: Any) -> np.ndarray:
        """The camera's view of ``data`` (uint8 [size, size, 3]; a buffer the next frame reuses)."""
        self._renderer.update_scene(data, camera=self._camera_id)
        return self._renderer.render()

    def close(self) -> None:
        _close_renderer(self._renderer)


def _make_current(renderer: Any) -> None:
    ctx = getattr(renderer, "_gl_context", None)
    if ctx is not None:
        ctx.make_current()


def _close_renderer(renderer: Any) -> None:
    """Close a ``mujoco.Renderer`` without corrupting other live renderers.

    ``Renderer.close()`` (mujoco 3.8) destroys its GL context, then frees its ``MjrContext``, which
    deletes framebuffers and textures by id on whichever context is *current*. If another
    renderer drew last, its objects get deleted and all its later frames are garbage (seen under
    OSMesa with two envs in one process). Making our own context current first makes those deletes
    land on the context being destroyed.
    """
    _make_current(renderer)
    renderer.close()


# --------------------------------------------------------------------------------------------
# Scripted expert
# --------------------------------------------------------------------------------------------

HOVER_HEIGHT = 0.08  # m above the block before descending
GRASP_TOL_XY = 0.01
GRASP_TOL_Z = 0.01
HOVER_TOL_XY = 0.015
CLOSE_STEPS = 5  # the gripper command ramps 0 -> 1 over this many steps; lift once it is full
HOLD_DIST = 0.03  # block within this of the TCP counts as "in hand"


def scripted_expert_action(
    state: torch.Tensor | np.ndarray, rng: np.random.Generator, noise_std: float = 0.01
) -> np.ndarray:
    """Noisy pick-and-lift action for PandaPickCube from its 21-D state (``agent_pos``), as a 4-D
    float32 numpy array in action units.

    The expert is stateless: it reads its phase from the observation. The gripper command in the
    state (0..1) doubles as the grasp counter, because the expert closes in ``CLOSE_STEPS``
    equal increments:

    * gripper open, TCP not yet at the block: go to ``HOVER_HEIGHT`` above the block, and descend
      once within ``HOVER_TOL_XY`` of it in xy;
    * gripper open, TCP at the block (within 1 cm): start closing;
    * gripper partly closed: hold position and keep closing;
    * gripper fully closed with the block in hand: lift at the full step;
    * gripper closed but the block not in hand (a missed grasp): open and start again.

    Position deltas (m) get Gaussian noise ``noise_std`` (m), then are clipped to one
    ``POSITION_STEP`` per axis and expressed in action units.
    """
    state = state.detach().cpu().numpy() if isinstance(state, torch.Tensor) else np.asarray(state)
    state = state.reshape(-1)
    tcp, block = state[TCP_SLICE].astype(np.float64), state[BLOCK_SLICE].astype(np.float64)
    grip = float(state[GRIPPER_IDX])
    step = 1.0 / CLOSE_STEPS

    in_hand = np.linalg.norm(block - tcp) < HOLD_DIST
    if grip > 0.0 and not in_hand:  # missed grasp / dropped: open and re-approach
        target, grasp = tcp.copy(), -1.0
    elif grip >= 1.0 - 1e-3:  # fully closed on the block: lift
        target, grasp = tcp + np.array([0.0, 0.0, POSITION_STEP]), 1.0
    elif grip > 0.0:  # closing: hold still
        target, grasp = block.copy(), step
    else:
        err_xy = np.linalg.norm(block[:2] - tcp[:2])
        at_grasp = err_xy < GRASP_TOL_XY and abs(block[2] - tcp[2]) < GRASP_TOL_Z
        if at_grasp:
            target, grasp = block.copy(), step
        elif err_xy < HOVER_TOL_XY and tcp[2] < block[2] + HOVER_HEIGHT + 0.02:
            target, grasp = block.copy(), -1.0  # descend
        else:
            target, grasp = block + np.array([0.0, 0.0, HOVER_HEIGHT]), -1.0

    delta = target - tcp
    if noise_std > 0:
        delta = delta + rng.normal(0.0, noise_std, size=3)
    delta = np.clip(delta / POSITION_STEP, -1.0, 1.0)
    return np.concatenate([delta, [grasp]]).astype(np.float32)
