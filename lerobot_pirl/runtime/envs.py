"""Envs for on-policy actors, built from the config's ``env`` block the way LeRobot builds them.

An actor that steps N envs holds N single-env vector envs from ``lerobot.envs.make_env(cfg.env,
n_envs=1)`` (``gym_manipulator`` envs: `RobotEnvAdapter`, from LeRobot's ``make_robot_env``), each
stepped only while its own episode runs, so a decision's H' actions never spill into the next
episode (one ``make_env(n_envs=N)`` vector env steps every sub-env at once).
LeRobot's ``AutoresetMode.SAME_STEP`` resets an env in the step that ends its episode: the
returned observation then starts the next episode and ``info["final_obs"]`` / ``info["final_info"]``
hold the end of this one (`EnvStep`).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import torch
from lerobot.envs import make_env
from lerobot.envs.configs import EnvConfig, HILSerlRobotEnvConfig
from lerobot.utils.import_utils import register_third_party_plugins

from ..errors import LerobotPirlError

ENV_ENTRY_POINT_GROUP = "lerobot_pirl.envs"
"""Entry-point group of modules that register ``EnvConfig`` types (this package's own among them)."""


SUCCESS_KEYS = ("is_success", "success", "succeed")
"""Info keys envs report success under, in the order they are read: LeRobot's own envs and
``lerobot-eval`` (``is_success``), gym-style envs (``success``), gym-hil (``succeed``). An env with
another key names it in the algorithm block (``success_key``)."""


class EnvConfigError(LerobotPirlError, ValueError):
    """The config's ``env`` block cannot drive this recipe; the message says what to change."""


_registered = False


def register_env_plugins() -> None:
    """Let LeRobot's config parser see every env type: LeRobot's own discovery of third-party
    ``lerobot_env_*`` packages, and the modules listed under our ``lerobot_pirl.envs`` entry points
    (this package's env types among them). Runs once per process, before a config is parsed."""
    global _registered
    if _registered:
        return
    register_third_party_plugins()
    for entry in entry_points(group=ENV_ENTRY_POINT_GROUP):
        try:
            importlib.import_module(entry.value)
        except Exception:  # a broken plugin must not take the other env types down with it
            logging.exception(f"could not import env plugin {entry.name} = {entry.value}")
    _registered = True


def require_env_factory(env_cfg: EnvConfig | None) -> None:
    """Refuse, before anything starts, an env block that `make_envs` cannot build."""
    if env_cfg is None:
        raise EnvConfigError(
            "on-policy recipes need an env block: env.type names a LeRobot EnvConfig type (LeRobot's "
            "own, an installed lerobot_env_* package's, or one under the lerobot_pirl.envs entry points)"
        )
    if isinstance(env_cfg, HILSerlRobotEnvConfig):
        if env_cfg.name == "gym_hil" and str(env_cfg.task).endswith("Base-v0"):
            raise EnvConfigError(
                f"env.type='gym_manipulator' with env.task={env_cfg.task!r}: LeRobot's make_robot_env passes "
                "use_gripper/gripper_penalty, which only gym-hil's wrapped tasks accept (e.g. "
                "'PandaPickCube-v0'), or an env type that builds the base task itself"
            )
        if env_cfg.name != "gym_hil" and (env_cfg.robot is None or env_cfg.teleop is None):
            raise EnvConfigError(
                f"env.type='gym_manipulator' with env.name={env_cfg.name!r} drives a real robot: LeRobot's "
                "make_robot_env needs env.robot and env.teleop (the teleop serves resets and interventions); "
                "for gym-hil set env.name='gym_hil'"
            )


def make_envs(env_cfg: EnvConfig, count: int, first_index: int = 0) -> list[Any]:
    """``count`` independent single-env vector envs of ``env_cfg``: from LeRobot's ``make_env`` for
    ``EnvConfig`` types, from LeRobot's ``make_robot_env`` + ``make_processors`` for
    ``gym_manipulator`` (`RobotEnvAdapter`).

    A multi-task env type whose config has a ``task_offset`` field (``pirl_metaworld``) gives env
    k the offset ``task_offset + first_index + k``, so the tasks spread over an actor's envs and,
    with ``first_index = actor_id * count``, over the actors."""
    require_env_factory(env_cfg)
    if isinstance(env_cfg, HILSerlRobotEnvConfig):
        if count > 1 and env_cfg.name != "gym_hil":
            raise EnvConfigError(
                "env.type='gym_manipulator' drives one real robot per actor; got "
                f"algorithm.envs_per_actor={count} (set it to 1 and start one actor per robot)"
            )
        return [RobotEnvAdapter.make(env_cfg) for _ in range(count)]
    envs = []
    try:
        for k in range(count):
            one_cfg = env_cfg
            if hasattr(env_cfg, "task_offset"):
                one_cfg = dataclasses.replace(env_cfg, task_offset=env_cfg.task_offset + first_index + k)
            suites = make_env(one_cfg, n_envs=1)
            vector_envs = [env for tasks in suites.values() for env in tasks.values()]
            if len(vector_envs) != 1:
                for env in vector_envs:
                    env.close()
                raise EnvConfigError(
                    f"env.type={env_cfg.type!r} made {len(vector_envs)} task envs; an on-policy actor "
                    "runs one task per config: select a single task in the env block"
                )
            envs.append(vector_envs[0])
    except BaseException:
        for env in envs:
            env.close()
        raise
    return envs


class RobotEnvAdapter:
    """A ``gym_manipulator`` env (a real robot, or gym-hil through LeRobot's wrappers) seen as the
    single-env vector env the runtime steps.

    Built and stepped with LeRobot's own HIL-SERL functions: ``make_robot_env`` and
    ``make_processors`` build it, ``reset_and_build_transition`` / ``step_env_and_process_transition``
    run its env and action processors (observation mapping, time limit, gripper, crop/resize, reward
    classifier), and steps are paced at ``env.fps`` as LeRobot's actor paces them. Observations
    leave the env processor already in policy keys with a batch dim, so `PolicyIO` skips
    ``preprocess_observation`` for this env (``processed_observations``). Episodes end on the
    processed transition's done / truncated; the next reset happens in the same ``step``
    (``AutoresetMode.SAME_STEP``, as LeRobot's vector envs do), with ``final_obs`` / ``final_info``.
    A teleop intervention replaces the policy's action in that step: on-policy recipes then train
    on an action the env did not run, so ``info["intervention"]`` reports it.
    """

    processed_observations = True

    def __init__(self, env: Any, teleop: Any, env_processor: Any, action_processor: Any, fps: int | None):
        self.env, self.teleop = env, teleop
        self.env_processor, self.action_processor = env_processor, action_processor
        self.fps = fps
        self.single_action_space = env.action_space
        self._transition: Any = None
        self._last_step = 0.0

    @classmethod
    def make(cls, env_cfg: HILSerlRobotEnvConfig) -> RobotEnvAdapter:
        from lerobot.rl.gym_manipulator import make_processors, make_robot_env

        env, teleop = make_robot_env(env_cfg)
        env_processor, action_processor = make_processors(env, teleop, env_cfg, device="cpu")
        return cls(env, teleop, env_processor, action_processor, env_cfg.fps)

    def _observation(self) -> dict[str, Any]:
        from lerobot.processor import TransitionKey

        observation = self._transition[TransitionKey.OBSERVATION]
        return {key: value for key, value in observation.items() if isinstance(value, torch.Tensor)}

    def reset(self, seed: list[int] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """LeRobot's reset (robots take no seed; gym-hil's wrapped envs seed themselves)."""
        from lerobot.rl.gym_manipulator import reset_and_build_transition

        self._transition = reset_and_build_transition(self.env, self.env_processor, self.action_processor)
        return self._observation(), {}

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        from lerobot.processor import TransitionKey
        from lerobot.rl.gym_manipulator import reset_and_build_transition, step_env_and_process_transition
        from lerobot.teleoperators.utils import TeleopEvents
        from lerobot.utils.robot_utils import precise_sleep

        if self.fps:
            precise_sleep(max(1.0 / self.fps - (time.perf_counter() - self._last_step), 0.0))
        self._last_step = time.perf_counter()
        action = torch.as_tensor(np.asarray(actions, dtype=np.float32).reshape(-1))
        self._transition = step_env_and_process_transition(
            self.env, self._transition, action, self.env_processor, self.action_processor
        )
        transition = self._transition
        terminated = bool(transition.get(TransitionKey.DONE, False))
        truncated = bool(transition.get(TransitionKey.TRUNCATED, False))
        raw_info = transition.get(TransitionKey.INFO, {}) or {}
        info = {key: value for key, value in raw_info.items() if isinstance(key, str)}
        info["intervention"] = bool(raw_info.get(TeleopEvents.IS_INTERVENTION, False))
        reward = np.asarray([float(transition.get(TransitionKey.REWARD, 0.0))], dtype=np.float32)
        observation = self._observation()
        if terminated or truncated:
            final = {key: value[0].cpu().numpy() for key, value in observation.items()}
            self._transition = reset_and_build_transition(self.env, self.env_processor, self.action_processor)
            observation = self._observation()
            info = {"final_obs": np.array([final], dtype=object), "final_info": info}
        return observation, reward, np.asarray([terminated]), np.asarray([truncated]), info

    def call(self, name: str) -> list[Any]:
        value = getattr(self.env.unwrapped, name, None)
        if value is None:
            raise AttributeError(name)
        return [value]

    def close(self) -> None:
        self.env.close()
        if self.teleop is not None and getattr(self.teleop, "is_connected", False):
            self.teleop.disconnect()


def task_description(env: Any) -> str:
    """The instruction of a vector env's task, found as LeRobot's ``lerobot-eval`` finds it."""
    for name in ("task_description", "task"):
        try:
            return str(env.call(name)[0])
        except (AttributeError, NotImplementedError):
            continue
    return ""


@dataclass
class EnvStep:
    """One step of a single-env vector env, with its episode's end unpacked from SAME_STEP autoreset."""

    observation: dict[str, Any]
    """The observation after the step; at an episode end, the *next* episode's first observation."""
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    """This step's info (at an episode end LeRobot's vector env keeps it under ``final_info``)."""
    final_observation: dict[str, Any] | None
    """The episode's last observation when this step ended it, else None."""

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    @property
    def success(self) -> bool:
        """The env's success flag under the first of `SUCCESS_KEYS` its info has (False if none)."""
        return self.success_under(None)

    def success_key(self, key: str | None) -> str | None:
        """``key`` if this step's info has it (None: the first of `SUCCESS_KEYS` it has), else None."""
        keys = SUCCESS_KEYS if key is None else (key,)
        return next((k for k in keys if k in self.info), None)

    def success_under(self, key: str | None) -> bool:
        """The success flag under ``key`` (None: the first of `SUCCESS_KEYS` present); False if absent."""
        found = self.success_key(key)
        return found is not None and bool(np.asarray(self.info[found]).reshape(-1)[0])


def step_env(env: Any, action: np.ndarray) -> EnvStep:
    """Step a single-env vector env with one action ([action_dim])."""
    observation, reward, terminated, truncated, info = env.step(action[None])
    done = bool(terminated[0] or truncated[0])
    final = info.get("final_obs") if done else None
    step_info = info.get("final_info", {}) if done else info
    return EnvStep(
        observation=observation,
        reward=float(reward[0]),
        terminated=bool(terminated[0]),
        truncated=bool(truncated[0]),
        info=step_info,
        final_observation=_unbatched_final(final) if final is not None else None,
    )


def _unbatched_final(final: Any) -> dict[str, Any]:
    """``info["final_obs"]`` is an object array of per-env observations; give env 0's as a batch of one."""
    observation = final[0] if isinstance(final, np.ndarray) and final.dtype == object else final
    return _batched(observation)


def _batched(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _batched(item) for key, item in value.items()}
    return np.asarray(value)[None]


class SingleEnv:
    """A single-env vector env of `make_envs` seen as one unbatched env with LeRobot observation
    keys (``preprocess_observation``, batch dim dropped); for scripts that step one env by hand
    (the scripted expert, the SAC baseline). ``step`` returns the episode's last observation when
    it ends, not the autoreset one."""

    def __init__(self, env: Any):
        self.env = env

    @classmethod
    def make(cls, env_cfg: EnvConfig) -> SingleEnv:
        return cls(make_envs(env_cfg, 1)[0])

    @staticmethod
    def _unbatched(raw: dict[str, Any]) -> dict[str, Any]:
        from lerobot.envs.utils import preprocess_observation

        return {key: value[0] for key, value in preprocess_observation(raw).items()}

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        raw, _ = self.env.reset(seed=None if seed is None else [seed])
        return self._unbatched(raw)

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        result = step_env(self.env, np.asarray(action, dtype=np.float32).reshape(-1))
        raw = result.final_observation if result.final_observation is not None else result.observation
        info = {
            key: np.asarray(value).reshape(-1)[0].item()
            for key, value in result.info.items()
            if not key.startswith("_")
        }
        return self._unbatched(raw), result.reward, result.terminated, result.truncated, info

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> SingleEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
