"""DSRL's env: a frozen flow-matching policy steered through its initial noise (``env.type = "pirl_dsrl"``).

DSRL (Wagenmaker et al., 2025) keeps a pretrained flow policy frozen and lets an RL agent choose
the initial noise its deterministic sampler starts from. Seen from the agent, one env step is:
the agent's action a ∈ [-1, 1]^m becomes the initial noise w, the frozen policy denoises a chunk
from w, and H' of its actions run in the inner env with their rewards summed. So LeRobot's SAC
and ``gaussian_actor`` train the agent unchanged (``recipe=dsrl``); the policy never leaves this
env and never gets a gradient. Any policy type with a πRL flow adapter that declares
``action_dims`` can be steered (XVLA, SmolVLA): the chain and its sizes come from the adapter.

**The noise parametrisation** (`noise_from_action`) is w = ``noise_scale`` · a on the noise
coordinates the agent controls, and 0 on the rest. The agent's tanh-squashed action lies in
[-1, 1], so w lies in [-s, s], and a = w / s is the inverse: a bijection between [-1, 1]^m and
[-s, s]^m. Which coordinates the agent controls is ``noise_dims``:

- ``"real"`` (default): chunk × the real action dims, m = chunk_size · real_action_dim;
- ``"full"``: the policy's whole x₁, m = chunk_size · model_action_dim (its padded action width).

a = 0 is w = 0: the frozen policy's own deterministic chunk from zero noise.

**The deterministic sampler** is the one every success rate here is measured with
(``demo.evaluate``): ``sample_actions(mode="deterministic", initial_noise=w)``, the Euler/x̂₁
chain with the policy's K. The policy and its processors load from ``checkpoint`` (a stock
checkpoint with LeRobot's pipeline files) and run on ``policy_device``.

**What the agent observes** is the inner env's raw ``agent_pos`` state (the policy's
``observation.state`` before its normaliser). The agent's discount applies per decision, i.e.
per H' env steps.

**Multi-task inner envs** (an env config with ``task_names``, e.g. ``pirl_metaworld`` on MT10):
the env holds one inner env per task and runs its episodes round robin over the tasks (or the
task a reset's ``options={"task": name}`` names). The frozen policy gets each task's own
instruction; the agent, which reads no language, gets the task as a one-hot vector appended to
the state (T values after the state's), so one agent learns a noise policy per task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import draccus
import gymnasium as gym
import numpy as np
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig

GYM_ID = "lerobot_pirl/NoiseSteeredPolicy-v0"
STATE_KEY = "agent_pos"
NOISE_DIMS = ("real", "full")


@dataclass(frozen=True)
class NoiseLayout:
    """How the agent's flat action maps onto the policy's initial noise [chunk_size, model_action_dim]."""

    chunk_size: int
    model_action_dim: int
    controlled_dims: int
    """Leading model action dims the agent sets (the rest of each noise row is 0)."""
    noise_scale: float

    @property
    def action_dim(self) -> int:
        return self.chunk_size * self.controlled_dims

    def noise_from_action(self, action: torch.Tensor) -> torch.Tensor:
        """[..., action_dim] in [-1, 1] → initial noise [..., chunk_size, model_action_dim]."""
        if action.shape[-1] != self.action_dim:
            raise ValueError(f"a noise action has {self.action_dim} values, got shape {tuple(action.shape)}")
        rows = action.reshape(*action.shape[:-1], self.chunk_size, self.controlled_dims)
        noise = rows.new_zeros(*action.shape[:-1], self.chunk_size, self.model_action_dim)
        noise[..., : self.controlled_dims] = self.noise_scale * rows
        return noise

    def action_from_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """The inverse on its image: initial noise in [-s, s] (0 outside the controlled dims) → action."""
        return (noise[..., : self.controlled_dims] / self.noise_scale).flatten(-2)


def _checkpoint_config(checkpoint: Path) -> dict[str, Any]:
    config_file = checkpoint / "config.json"
    if not config_file.is_file():
        raise ValueError(f"env.checkpoint={str(checkpoint)!r} has no config.json: point it at a saved policy")
    return json.loads(config_file.read_text())


def _adapter_class(policy_type: str | None) -> Any:
    """The installed flow adapter of ``policy_type``, if it can tell DSRL its sizes."""
    from lerobot_pirl.flow_rl.adapter import DSRL_METHOD
    from lerobot_pirl.recipes.registry import installed

    adapters = installed().adapters
    steerable = [
        name
        for name in adapters.policy_types()
        if callable(getattr(adapters.resolve(name).policy_class.flow_adapter_class, DSRL_METHOD, None))
    ]
    if policy_type not in steerable:
        raise ValueError(
            f"env.checkpoint's policy type is {policy_type!r}; DSRL steers a flow-matching policy "
            f"whose πRL adapter declares `{DSRL_METHOD}`: {', '.join(steerable)}"
        )
    return adapters.resolve(policy_type).policy_class.flow_adapter_class


def noise_layout(checkpoint: Path, noise_dims: str, noise_scale: float) -> NoiseLayout:
    """The layout from the checkpoint's ``config.json`` alone (the learner needs no weights), sized
    by the policy type's flow adapter (``action_dims``)."""
    from lerobot_pirl.runtime.processors import load_policy_config

    adapter = _adapter_class(_checkpoint_config(checkpoint).get("type"))
    config = load_policy_config(checkpoint)
    chunk_size, model_action_dim, real_action_dim = adapter.action_dims(config)
    controlled = real_action_dim if noise_dims == "real" else model_action_dim
    return NoiseLayout(chunk_size, model_action_dim, controlled, noise_scale)


def task_count(inner_env: EnvConfig) -> int:
    """How many tasks the inner env config runs (``task_names``; 1 for single-task env types)."""
    return len(getattr(inner_env, "task_names", None) or [None])


def agent_dataset_stats(
    checkpoint: Path, layout: NoiseLayout, tasks: int = 1
) -> dict[str, dict[str, list[float]]]:
    """The agent's normaliser stats: the checkpoint's own min/max of ``observation.state`` (what the
    policy was trained with), [0, 1] for the task one-hot of a multi-task env (``tasks`` > 1), and
    [-1, 1] for the noise action, which makes LeRobot's MIN_MAX action (un)normaliser the identity
    on the tanh-squashed action."""
    from safetensors.torch import load_file

    [stats_file] = checkpoint.glob("policy_preprocessor_step_*_normalizer_processor.safetensors")
    stats = load_file(str(stats_file))
    one_hot = tasks if tasks > 1 else 0
    return {
        "observation.state": {
            "min": stats["observation.state.min"].tolist() + [0.0] * one_hot,
            "max": stats["observation.state.max"].tolist() + [1.0] * one_hot,
        },
        "action": {"min": [-1.0] * layout.action_dim, "max": [1.0] * layout.action_dim},
    }


@EnvConfig.register_subclass("pirl_dsrl")
@dataclass
class DSRLEnvConfig(EnvConfig):
    """The inner env (any env type `runtime.envs.make_envs` builds), steered through a frozen flow policy."""

    inner: dict[str, Any] = field(default_factory=lambda: {"type": "pirl_pick_cube"})
    """The inner env's block, as any ``env`` block (``type`` plus its fields). A plain dict, not an
    ``EnvConfig`` field: draccus would otherwise recurse through ``pirl_dsrl`` choosing itself."""
    checkpoint: str = ""
    """A stock checkpoint directory (weights, config.json and LeRobot's pipeline files) of a policy
    type DSRL can steer (XVLA, SmolVLA: a πRL flow adapter with ``action_dims``)."""
    noise_dims: str = "real"
    """Which initial-noise coordinates the agent sets: "real" (chunk × real action dims) or "full"."""
    noise_scale: float = 1.5
    """Initial noise w = noise_scale · a for the agent's a ∈ [-1, 1]."""
    executed_steps: int | None = None
    """Env steps per decision (H'); None: the checkpoint's ``n_action_steps``."""
    policy_device: str = "cpu"
    """Where the frozen policy runs."""
    seed: int = 0
    """Seeds the inner env's first reset (LeRobot's actor resets without a seed)."""
    task: str | None = "dsrl"
    fps: int = 1000
    """LeRobot's actor sleeps to pace each step at ``fps``: high, so a simulated env never waits."""
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(
        default_factory=lambda: {"action": "action", STATE_KEY: "observation.state"}
    )

    def __post_init__(self) -> None:
        problems = []
        if not self.checkpoint:
            problems.append("env.checkpoint is empty (a stock policy checkpoint directory is required)")
        if self.noise_dims not in NOISE_DIMS:
            problems.append(f"env.noise_dims={self.noise_dims!r} (accepted: {', '.join(NOISE_DIMS)})")
        if not self.noise_scale > 0:
            problems.append(f"env.noise_scale={self.noise_scale} (must be > 0)")
        if self.executed_steps is not None and self.executed_steps < 1:
            problems.append(f"env.executed_steps={self.executed_steps} (must be ≥ 1, or null)")
        if self.inner.get("type") == "pirl_dsrl":
            problems.append("env.inner is itself a pirl_dsrl env")
        if problems:
            raise ValueError("invalid pirl_dsrl env: " + "; ".join(problems))
        self.inner_env: EnvConfig = draccus.decode(EnvConfig, self.inner)
        """``inner`` as the env config `runtime.envs.make_envs` builds."""
        if not self.features:
            layout = noise_layout(Path(self.checkpoint), self.noise_dims, self.noise_scale)
            inputs = _checkpoint_config(Path(self.checkpoint))["input_features"]
            tasks = task_count(self.inner_env)
            state_dim = int(inputs["observation.state"]["shape"][0]) + (tasks if tasks > 1 else 0)
            self.features = {
                "action": PolicyFeature(type=FeatureType.ACTION, shape=(layout.action_dim,)),
                STATE_KEY: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,)),
            }

    @property
    def package_name(self) -> str:
        return __name__

    @property
    def gym_id(self) -> str:
        return GYM_ID

    @property
    def gym_kwargs(self) -> dict[str, Any]:
        return {"config": self}


class NoiseSteeredPolicyEnv(gym.Env):
    """One DSRL env: a noise action in, H' inner-env steps of the frozen policy's chunk out."""

    metadata = {"render_modes": []}

    def __init__(self, config: DSRLEnvConfig) -> None:
        from lerobot_pirl.runtime.envs import make_envs, task_description
        from lerobot_pirl.runtime.flow_policy import load_flow_policy

        self.config = config
        checkpoint = Path(config.checkpoint)
        self.layout = noise_layout(checkpoint, config.noise_dims, config.noise_scale)
        self.policy, self.io = load_flow_policy(checkpoint, config.inner_env)
        self.policy.to(config.policy_device).requires_grad_(False)
        self.executed_steps = config.executed_steps or int(self.policy.config.n_action_steps)
        if self.executed_steps > self.layout.chunk_size:
            raise ValueError(
                f"env.executed_steps={self.executed_steps} exceeds the checkpoint's chunk_size "
                f"{self.layout.chunk_size}"
            )
        self.tasks = task_count(config.inner_env)
        self.inners = make_envs(config.inner_env, self.tasks)  # inner env k runs task k
        self.instructions = [task_description(env) for env in self.inners]
        self.task_names = list(getattr(config.inner_env, "task_names", None) or self.instructions)
        self.current = 0
        self.task = self.task_description = self.instructions[0]  # as LeRobot's envs
        state_dim = config.features[STATE_KEY].shape[0]
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.layout.action_dim,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(
            {STATE_KEY: gym.spaces.Box(-np.inf, np.inf, shape=(state_dim,), dtype=np.float32)}
        )
        self._raws: list[dict[str, Any] | None] = [None] * self.tasks  # each inner env's observation
        self._episodes = 0

    @property
    def inner(self) -> Any:
        """The inner env of the current episode's task."""
        return self.inners[self.current]

    @property
    def _raw(self) -> dict[str, Any] | None:
        return self._raws[self.current]

    @_raw.setter
    def _raw(self, raw: dict[str, Any] | None) -> None:
        self._raws[self.current] = raw

    def _agent_observation(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        state = np.asarray(raw[STATE_KEY][0], dtype=np.float32)
        if self.tasks > 1:
            state = np.concatenate([state, np.eye(self.tasks, dtype=np.float32)[self.current]])
        return {STATE_KEY: state}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """A new inner episode: of the task ``options["task"]`` names, else of the next task round
        robin; seeded by ``seed``, else by ``config.seed`` (plus the task's index) the first time
        that task runs. After an episode end the inner env has already reset itself (same-step
        autoreset) and that start is used, so each inner env keeps its own seed sequence."""
        super().reset(seed=seed)
        if options and "task" in options:
            if options["task"] not in self.task_names:
                raise ValueError(f"unknown task {options['task']!r} (this env runs {self.task_names})")
            self.current = self.task_names.index(options["task"])
        else:
            self.current = self._episodes % self.tasks
        self._episodes += 1
        self.task = self.task_description = self.instructions[self.current]
        if seed is None and self._raw is None:
            seed = self.config.seed + self.current
        if seed is not None:
            self._raw, _ = self.inner.reset(seed=[seed])
        return self._agent_observation(self._raw), {"task": self.task}

    @torch.no_grad()
    def chunk_actions(self, action: np.ndarray) -> np.ndarray:
        """The H' env actions the frozen policy's deterministic sampler gives from this noise action."""
        assert self._raw is not None, "reset() first"
        noise = self.layout.noise_from_action(torch.as_tensor(np.asarray(action, dtype=np.float32)))
        observation = self.io.observation(self._raw, self.task)
        device = self.config.policy_device
        chunk, _ = self.policy.sample_actions(
            {k: v.to(device) for k, v in observation.items()},
            mode="deterministic",
            initial_noise=noise[None].to(device),
        )
        return self.io.env_actions(chunk[0, : self.executed_steps])

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        from lerobot_pirl.runtime.envs import step_env

        if not np.all(np.abs(np.asarray(action)) <= 1.0 + 1e-6):
            raise ValueError("a DSRL noise action must lie in [-1, 1] (the agent's tanh-squashed action)")
        total, success, steps = 0.0, False, 0
        for env_action in self.chunk_actions(action):
            result = step_env(self.inner, env_action)
            total += result.reward
            steps += 1
            success = success or result.success
            if result.done:
                # The inner env has reset itself; its final observation ends this episode.
                assert result.final_observation is not None  # batched like every other observation
                self._raw = result.observation
                info = {"is_success": success, "success": success, "env_steps": steps}
                return (
                    self._agent_observation(result.final_observation),
                    total,
                    result.terminated,
                    result.truncated,
                    info,
                )
        self._raw = result.observation
        return (
            self._agent_observation(self._raw),
            total,
            False,
            False,
            {"is_success": success, "success": success, "env_steps": steps},
        )

    def close(self) -> None:
        for env in self.inners:
            env.close()


if GYM_ID not in gym.registry:
    gym.register(id=GYM_ID, entry_point=f"{__name__}:NoiseSteeredPolicyEnv", disable_env_checker=True)
