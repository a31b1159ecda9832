"""MetaWorld (``metaworld`` 3) as a registered LeRobot env type (``env.type = "pirl_metaworld"``).

Why this type, beside LeRobot's own ``metaworld``
-------------------------------------------------
LeRobot 0.6.1's ``metaworld`` env type (`lerobot.envs.metaworld.MetaworldEnv`) is the reference for
the task names, the instructions, the scripted experts, the difficulty split and the camera, but
it does not fit RL on a CPU box: it renders a full-size frame with MuJoCo's default renderer at
every step and reset (whatever the observation type), it exposes only a 4-D ``agent_pos`` (hand
and gripper: no object or goal, so a state policy cannot know where to go), its ``state``
observation type is not implemented, and it builds one vector env per task. This type reuses
LeRobot's module and changes only what blocks that use:

* ``lerobot.envs.metaworld`` is imported, never restated: our sub-env is LeRobot's
  ``MetaworldEnv`` with its observation formatting, ``step`` and ``render`` replaced. Its
  constructor (task name, ``task_description`` from ``TASK_DESCRIPTIONS``, ``expert_policy`` from
  ``TASK_POLICY_MAPPING``), ``_ensure_env`` (the MetaWorld env, the corner2 camera's position fix,
  per-seed randomisation) and ``reset`` (seeding) run as LeRobot wrote them; the task groups come
  from ``DIFFICULTY_TO_TASKS`` and MetaWorld's own MT10 / MT50 lists.
* LeRobot's module imports MetaWorld and so MuJoCo, which reads ``MUJOCO_GL`` once, at import. It
  is imported on first use (`lerobot_metaworld`), after the same headless-GL default pick_cube
  applies, so loading the env plugins costs nothing and changes nothing for other env types.

Tasks and instructions
----------------------
``task`` is one task name (``"reach-v3"``), a comma list of them, ``"MT10"``, ``"MT50"`` or one of
LeRobot's difficulty names (``easy``, ``medium``, ``hard``, ``very_hard``); items of a comma list may
be groups too, and repeats are dropped. An unknown name fails when the config is built. Each
sub-env runs one task for its whole life: in a vector env of ``n_envs`` sub-envs over ``T`` tasks,
sub-env ``i`` runs task ``(task_offset + i) mod T`` of the expanded list, so one ``make_env(cfg,
n_envs)`` call spreads the tasks over its sub-envs (evenly when ``n_envs`` is a multiple of ``T``).
A caller that builds single-env vector envs one by one spreads the tasks by giving each build its
own ``task_offset``, as our on-policy actor does (``runtime.envs.make_envs``: env k of actor a
gets ``task_offset + a * envs_per_actor + k``). The instruction is the sub-env's
``task_description`` (``TASK_DESCRIPTIONS[task]``) and ``task`` is the task name: ``lerobot-eval``
and our runtime read them per sub-env with ``env.call("task_description")``.

Observations (LeRobot's raw env format; ``preprocess_observation`` maps them to policy keys)
------------------------------------------------------------------------------------------
* ``"agent_pos"`` float32 [39] (→ ``observation.state``): MetaWorld's whole observation, goal
  included (hand xyz, gripper opening, the object poses, the same for the previous frame, goal xyz),
  as MetaWorld's multi-task benchmarks give it.
* ``"pixels"["front"]`` uint8 [S, S, 3] (→ ``observation.images.front``, the image slot of our XVLA
  policies). With ``obs_type="pixels_agent_pos"`` it is the ``camera_name`` camera (LeRobot's
  ``corner2`` by default, turned upright by LeRobot's own fix) rendered at ``image_size`` by
  pick_cube's lean renderer (`lean_renderer`); with ``obs_type="state"`` it is all zeros, because
  XVLA needs one image input (as pick_cube does with ``image_obs=False``).

MuJoCo's offscreen renderer spends nearly all of a frame's time under OSMesa (and llvmpipe EGL) on
shadows, reflections and multisampling, whatever the frame's size; turned off, a small frame is an
order of magnitude cheaper and a policy at this size loses nothing it could see. ``render()`` (the
frames of ``lerobot-eval``'s videos) uses the same lean camera, larger.

Actions, reward, episodes
-------------------------
Actions are MetaWorld's own, 4-D in [-1, 1] (hand dx, dy, dz, gripper effort), clipped. Success is
MetaWorld's ``info["success"]`` (kept as MetaWorld reports it); ``info["is_success"]`` (bool) reports
it every step, as LeRobot's MetaWorld env does and ``lerobot-eval`` reads it (also from a vector
env's ``final_info``). As in LeRobot's env, success terminates the episode. ``reward_type="sparse"``
(default) returns 1.0 on the success step and 0 otherwise (the binary success reward πRL trains
on); ``"dense"`` returns MetaWorld's shaped reward (what LeRobot passes on), which is always in
``info["dense_reward"]``. ``shaping_coef`` > 0 adds to the sparse reward the change of a potential,
c·(Φ(s') − Φ(s)) with Φ = MetaWorld's shaped reward / 10 (it lies in [0, 1]; Φ of the start is taken
as Φ after the first step): over an episode the shaping sums to c·(Φ_last − Φ_first), so it points
the way to the goal yet never pays for lingering, and success still ends the episode.
``episode_length`` (gymnasium's ``TimeLimit``) defaults to 200 rather than
MetaWorld's 500-step horizon (the limit LeRobot's env reports to ``lerobot-eval``; its config's
``episode_length`` is never passed on): MetaWorld's scripted experts, even with action noise, finish
MT10 tasks well inside 200 steps, and on a CPU box a failed episode's tail is pure cost. Set 500 for
the benchmark's horizon.

Object and goal positions per reset seed
----------------------------------------
MetaWorld draws each task's object and goal positions (its ``rand_vec``) uniformly from the task's
``_random_reset_space``. Its benchmark classes pre-draw 50 such vectors per task and freeze one per
``set_task``; LeRobot's ``_ensure_env`` (reused here) unfreezes them (``_freeze_rand_vec = False``)
and sets ``seeded_rand_vec = True``, so every reset draws a fresh vector from the env's own
``np_random``, and LeRobot's ``reset`` re-seeds that generator (``env.seed(seed)``) when a seed is
given. So the same reset seed gives the same positions, different seeds give different ones
(continuous, not one of 50, so held-out evaluation seeds are positions training never saw), and a
reset without a seed continues the env's own stream (gymnasium's autoreset), reproducibly.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
from lerobot.configs.types import PolicyFeature
from lerobot.envs.configs import EnvConfig

from .pick_cube import (
    ACTION_KEY,
    CAMERA,
    IMAGE_KEY,
    STATE_KEY,
    VIDEO_SIZE,
    LeanCameraRenderer,
    _default_headless_gl,
    raw_features,
)

STATE_DIM = 39
"""MetaWorld's observation: hand xyz 3, gripper 1, object poses 14, the previous frame's 18, goal 3."""
ACTION_DIM = 4
GOAL_SLICE = slice(36, 39)
REWARD_TYPES = ("sparse", "dense")
DENSE_REWARD_MAX = 10.0
"""MetaWorld v3's shaped rewards lie in [0, 10] (10 at the goal)."""
OBS_TYPES = ("state", "pixels_agent_pos")
BENCHMARKS = ("MT10", "MT50")

GYM_ID = "lerobot_pirl/MetaWorld-v3"
"""Our gymnasium id: `MetaWorldEnvConfig.create_envs` makes each sub-env with ``gym.make(GYM_ID, task=)``."""


@functools.cache
def lerobot_metaworld() -> ModuleType:
    """LeRobot's ``lerobot.envs.metaworld``, imported on first use: it imports MetaWorld and MuJoCo,
    which picks its GL backend at import, so the headless default (pick_cube's) is applied first."""
    _default_headless_gl()
    import lerobot.envs.metaworld as module

    return module


def task_groups() -> dict[str, list[str]]:
    """The names ``task`` accepts for a group of tasks: MetaWorld's ``MT10`` and ``MT50`` (its own
    lists and order) and LeRobot's difficulty split (``DIFFICULTY_TO_TASKS``)."""
    lerobot_mw = lerobot_metaworld()
    from metaworld.env_dict import MT10_V3, MT50_V3

    return {"MT10": list(MT10_V3), "MT50": list(MT50_V3), **lerobot_mw.DIFFICULTY_TO_TASKS}


def expand_tasks(spec: str) -> list[str]:
    """The task names ``spec`` stands for (see the module docstring), in order, without repeats.

    Raises ValueError, one line naming what is accepted, for an unknown or empty ``spec``.
    """
    descriptions = lerobot_metaworld().TASK_DESCRIPTIONS
    difficulties = ", ".join(lerobot_metaworld().DIFFICULTY_TO_TASKS)
    groups = task_groups()
    names: list[str] = []
    items = [item.strip() for item in str(spec).split(",") if item.strip()]
    for item in items:
        name = item.removeprefix("metaworld-")  # LeRobot's env type accepts this prefix
        group = groups.get(name.upper() if name.upper() in BENCHMARKS else name)
        if group is None and name not in descriptions:
            close = difflib.get_close_matches(name, list(descriptions) + list(groups), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"env.task={spec!r}: unknown MetaWorld task {item!r}{hint}; give a task name such as "
                f"'reach-v3' (the {len(descriptions)} of lerobot.envs.metaworld.TASK_DESCRIPTIONS), a comma "
                f"list of them, 'MT10', 'MT50' or a difficulty ({difficulties})"
            )
        names += [task for task in (group or [name]) if task not in names]
    if not names:
        raise ValueError(
            f"env.task={spec!r}: no MetaWorld task; give a task name such as 'reach-v3', a comma list, "
            "'MT10', 'MT50' or a difficulty"
        )
    return names


def max_episode_length() -> int:
    """MetaWorld's horizon (``max_path_length``): its envs refuse a step past it."""
    lerobot_metaworld()
    from metaworld.sawyer_xyz_env import SawyerXYZEnv

    return int(SawyerXYZEnv.max_path_length)


@EnvConfig.register_subclass("pirl_metaworld")
@dataclass
class MetaWorldEnvConfig(EnvConfig):
    """MetaWorld tasks as a LeRobot env type: ``env.type = "pirl_metaworld"``.

    ``lerobot.envs.make_env(cfg, n_envs)`` builds one vector env (``{"pirl_metaworld": {0: env}}``)
    whose sub-env ``i`` runs task ``(task_offset + i) mod T`` of ``task``'s expanded list
    (`task_names`). Its raw observations (``agent_pos``, ``pixels/front``) go through LeRobot's
    ``preprocess_observation`` to ``observation.state`` / ``observation.images.front``.
    """

    task: str = "MT10"
    """One task name, a comma list, ``MT10``, ``MT50`` or a difficulty name (see `expand_tasks`)."""
    fps: int = 80
    """MetaWorld's control rate (frame skip 5 × 2.5 ms), as LeRobot's MetaWorld env declares it."""
    episode_length: int = 200
    """Time limit (env steps, at most MetaWorld's 500): gymnasium's ``TimeLimit`` truncates there."""
    obs_type: str = "state"
    """``state``: the 39-D observation and a blank image; ``pixels_agent_pos``: the same plus the camera."""
    image_size: int = 64
    """Side (px) of the image; with ``obs_type="state"`` the blank image has it too (it must match the
    policy's image input)."""
    camera_name: str = "corner2"
    """MetaWorld camera for the image and for ``render()`` (LeRobot's default, with its fixes)."""
    reward_type: str = "sparse"
    """``sparse``: 1.0 on the success step (which ends the episode), else 0; ``dense``: MetaWorld's."""
    shaping_coef: float = 0.0
    """With ``reward_type="sparse"``: weight of the potential-based shaping (module docstring); 0: none."""
    task_offset: int = 0
    """Sub-env ``i`` runs task ``(task_offset + i) mod T``: give each of several single-env builds
    its own offset to spread the tasks over them."""
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(
        default_factory=lambda: {"action": ACTION_KEY, "agent_pos": STATE_KEY, f"pixels/{CAMERA}": IMAGE_KEY}
    )

    def __post_init__(self) -> None:
        if self.obs_type not in OBS_TYPES:
            raise ValueError(f"env.obs_type must be one of {OBS_TYPES}, got {self.obs_type!r}")
        if self.reward_type not in REWARD_TYPES:
            raise ValueError(f"env.reward_type must be one of {REWARD_TYPES}, got {self.reward_type!r}")
        if self.image_size < 1:
            raise ValueError(f"env.image_size must be >= 1, got {self.image_size}")
        if self.shaping_coef < 0 or (self.shaping_coef > 0 and self.reward_type != "sparse"):
            raise ValueError(
                f"env.shaping_coef must be >= 0 and is added to the sparse reward only, got "
                f"shaping_coef={self.shaping_coef} with reward_type={self.reward_type!r}"
            )
        if self.task_offset < 0:
            raise ValueError(f"env.task_offset must be >= 0, got {self.task_offset}")
        horizon = max_episode_length()
        if not 1 <= self.episode_length <= horizon:
            raise ValueError(
                f"env.episode_length must be in [1, {horizon}] (MetaWorld's horizon), got "
                f"{self.episode_length}"
            )
        expand_tasks(self.task)  # fails here, one line, on an unknown task
        if not self.features:  # declared from the fields unless a config gives them
            self.features = raw_features(ACTION_DIM, STATE_DIM, self.image_size)

    @property
    def task_names(self) -> list[str]:
        """``task`` expanded to MetaWorld task names (`expand_tasks`)."""
        return expand_tasks(self.task)

    def sub_env_tasks(self, n_envs: int) -> list[str]:
        """The task of each sub-env of an ``n_envs`` vector env: ``(task_offset + i) mod T``."""
        names = self.task_names
        return [names[(self.task_offset + i) % len(names)] for i in range(n_envs)]

    @property
    def package_name(self) -> str:
        return __name__

    @property
    def gym_id(self) -> str:
        return GYM_ID

    @property
    def gym_kwargs(self) -> dict[str, Any]:
        """``gym.make`` keywords shared by every sub-env (each gets its own ``task``)."""
        return {
            "max_episode_steps": self.episode_length,
            "obs_type": self.obs_type,
            "image_size": self.image_size,
            "camera_name": self.camera_name,
            "reward_type": self.reward_type,
            "shaping_coef": self.shaping_coef,
        }

    def create_envs(
        self, n_envs: int, use_async_envs: bool = False
    ) -> dict[str, dict[int, gym.vector.VectorEnv]]:
        """One vector env of ``n_envs`` sub-envs, sub-env ``i`` on `sub_env_tasks` ``[i]``; sync or
        async (forkserver) and ``AutoresetMode.SAME_STEP`` as LeRobot's default ``create_envs``."""
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive int, got {n_envs!r}")
        factories = [
            functools.partial(make_sub_env, task, self.disable_env_checker, self.gym_kwargs)
            for task in self.sub_env_tasks(n_envs)
        ]
        mode = gym.vector.AutoresetMode.SAME_STEP
        if use_async_envs and n_envs > 1:
            vec: gym.vector.VectorEnv = gym.vector.AsyncVectorEnv(
                factories, autoreset_mode=mode, context="forkserver"
            )
        else:
            vec = gym.vector.SyncVectorEnv(factories, autoreset_mode=mode)
        return {self.type: {0: vec}}


def make_sub_env(task: str, disable_env_checker: bool, kwargs: dict[str, Any]) -> gym.Env:
    """One sub-env (module level, so async workers can unpickle it: importing this module
    registers `GYM_ID` there)."""
    return gym.make(
        GYM_ID,
        disable_env_checker=disable_env_checker,
        task=task,
        episode_length=kwargs["max_episode_steps"],  # gym.make keeps max_episode_steps for its TimeLimit
        **kwargs,
    )


def lean_renderer(model: Any, size: int, camera: str) -> LeanCameraRenderer:
    """pick_cube's `LeanCameraRenderer` (no shadows, reflections or multisampling) on a MetaWorld
    camera, checked by name. On MetaWorld it already costs what DESIGN §10's full lean list costs
    (also zeroing ``light_castshadow``, ``mat_reflectance``, ``shadowsize`` and the skybox: measured
    the same), so the model is left as MetaWorld made it."""
    import mujoco

    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
        cameras = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
        raise ValueError(f"env.camera_name={camera!r} is not a MetaWorld camera; cameras: {cameras}")
    return LeanCameraRenderer(model, size, camera)


class _LeanFrameSource:
    """Stands in for a LeRobot ``MetaworldEnv`` in a call to LeRobot's own ``MetaworldEnv.render``,
    with a lean camera where MetaWorld's renderer would be. That method reads only ``_ensure_env``,
    ``_env.render()`` and ``camera_name``, then applies LeRobot's orientation fix (the corner2 image
    comes out rotated by 180°): so our frames get exactly LeRobot's fix."""

    def __init__(self, renderer: LeanCameraRenderer, data: Any, camera_name: str):
        self._renderer, self._data, self.camera_name = renderer, data, camera_name
        self._env = self

    def _ensure_env(self) -> None:
        pass

    def render(self) -> np.ndarray:
        return self._renderer.frame(self._data)


def upright_frame(renderer: LeanCameraRenderer, data: Any, camera_name: str) -> np.ndarray:
    """``renderer``'s view of ``data`` oriented as LeRobot orients that camera's images (a fresh,
    contiguous uint8 [S, S, 3] array)."""
    frame = lerobot_metaworld().MetaworldEnv.render(_LeanFrameSource(renderer, data, camera_name))
    return np.array(frame, dtype=np.uint8, order="C", copy=True)  # LeRobot's flip is a view


class MetaWorldEnvMixin:
    """What our sub-env changes in LeRobot's ``MetaworldEnv``: a mixin that `metaworld_env_class`
    puts before LeRobot's class (imported on first use). See the module docstring."""

    def __init__(
        self,
        task: str,
        *,
        obs_type: str = "state",
        image_size: int = 64,
        camera_name: str = "corner2",
        reward_type: str = "sparse",
        shaping_coef: float = 0.0,
        episode_length: int = 200,
    ):
        # LeRobot's constructor: task name, task_description, expert_policy, camera. Its own
        # "state" obs type raises, and its spaces are replaced below, so it is given a pixel type.
        super().__init__(  # type: ignore[call-arg]
            task=task,
            camera_name=camera_name,
            obs_type="pixels_agent_pos",
            observation_width=image_size,
            observation_height=image_size,
        )
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
        self.obs_type, self.reward_type, self.image_size = obs_type, reward_type, image_size
        self.shaping_coef = shaping_coef
        self._potential: float | None = None  # Φ of the last step (None: none yet this episode)
        self._max_episode_steps = episode_length  # lerobot-eval reads it (TimeLimit's, through env.call)
        self._renderer: LeanCameraRenderer | None = None
        self._video_renderer: LeanCameraRenderer | None = None
        self._blank = np.zeros((image_size, image_size, 3), dtype=np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "agent_pos": gym.spaces.Box(-np.inf, np.inf, shape=(STATE_DIM,), dtype=np.float32),
                "pixels": gym.spaces.Dict(
                    {CAMERA: gym.spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8)}
                ),
            }
        )

    @property
    def metaworld_env(self) -> Any:
        """The MetaWorld env (``SawyerXYZEnv``) this env drives, built on first use."""
        self._ensure_env()  # type: ignore[attr-defined]
        return self._env  # type: ignore[attr-defined]

    def _image(self) -> np.ndarray:
        if self.obs_type == "state":
            return self._blank.copy()
        env = self.metaworld_env
        if self._renderer is None:
            self._renderer = lean_renderer(env.model, self.image_size, self.camera_name)  # type: ignore[attr-defined]
        return upright_frame(self._renderer, env.data, self.camera_name)  # type: ignore[attr-defined]

    def _format_raw_obs(self, raw_obs: np.ndarray) -> dict[str, Any]:
        """MetaWorld's observation as ``agent_pos`` (float32 [39]) and the image (LeRobot's ``reset``
        calls this too)."""
        return {"agent_pos": np.asarray(raw_obs, dtype=np.float32), "pixels": {CAMERA: self._image()}}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """LeRobot's step without its internal reset after success (the vector env's autoreset
        resets) and without a full-size frame per step; success terminates, as in LeRobot's."""
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"expected a {ACTION_DIM}-D action, got shape {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"non-finite action: {action}")
        raw, reward, terminated, truncated, info = self.metaworld_env.step(np.clip(action, -1.0, 1.0))
        success = bool(info.get("success", 0))
        info = {**info, "task": self.task, "is_success": success, "dense_reward": float(reward)}  # type: ignore[attr-defined]
        if self.reward_type == "sparse":
            potential = float(reward) / DENSE_REWARD_MAX
            shaping = 0.0 if self._potential is None else potential - self._potential
            self._potential = potential
            reward = float(success) + self.shaping_coef * shaping
        return self._format_raw_obs(raw), float(reward), bool(terminated) or success, bool(truncated), info

    def reset(self, seed: int | None = None, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        self._potential = None
        return super().reset(seed=seed, **kwargs)  # type: ignore[misc]

    def render(self) -> np.ndarray:
        """The ``camera_name`` camera at ``VIDEO_SIZE`` px, lean and upright (uint8 [S, S, 3]): the
        frames of ``lerobot-eval``'s videos, whatever the observation type."""
        env = self.metaworld_env
        if self._video_renderer is None:
            self._video_renderer = lean_renderer(env.model, VIDEO_SIZE, self.camera_name)  # type: ignore[attr-defined]
        return upright_frame(self._video_renderer, env.data, self.camera_name)  # type: ignore[attr-defined]

    def close(self) -> None:
        for renderer in (self._renderer, self._video_renderer):
            if renderer is not None:
                renderer.close()
        self._renderer = self._video_renderer = None
        super().close()  # type: ignore[misc]  # LeRobot's: closes the MetaWorld env
        self._env = None


@functools.cache
def metaworld_env_class() -> type:
    """Our sub-env class, ``PirlMetaWorldEnv``: `MetaWorldEnvMixin` on top of LeRobot's
    ``MetaworldEnv`` (imported here, on first use)."""
    bases = (MetaWorldEnvMixin, lerobot_metaworld().MetaworldEnv)
    return type("PirlMetaWorldEnv", bases, {"__module__": __name__})


def make_gym_env(**kwargs: Any) -> gym.Env:
    """`GYM_ID`'s entry point: a ``PirlMetaWorldEnv`` (`metaworld_env_class`)."""
    return metaworld_env_class()(**kwargs)


if GYM_ID not in gym.registry:
    gym.register(id=GYM_ID, entry_point=f"{__name__}:make_gym_env")
