"""Success rate of a flow-matching policy (XVLA, SmolVLA) on PandaPickCube, deterministic (ODE) sampler.

Shared by the SFT checkpoint builder, ``lerobot-pirl demo`` and ``benchmarks/learning.py``, so
every success rate in this project is measured the same way: ``sample_actions(mode="deterministic")``
(the Euler/x̂₁ chain πRL trains, without its noise), H' executed steps per decision, and one fixed
evaluation set — episode i always has the block where reset seed ``EVAL_SEED_OFFSET + i`` puts it,
apart from any training episode, and its own start-noise stream — so every method, seed and
checkpoint faces the same episodes. Episodes run in batches of envs (one sampling call per step).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig
from lerobot_pirl.runtime.envs import make_envs, step_env, task_description
from lerobot_pirl.runtime.flow_policy import load_flow_policy
from lerobot_pirl.runtime.processors import PolicyIO

EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episode i is reset with seed ``EVAL_SEED_OFFSET + i`` (away from training seeds)."""


@dataclass
class EvalResult:
    episodes: int
    successes: int
    success_rate: float
    mean_return: float
    mean_episode_steps: float
    stderr: float
    """Binomial standard error of ``success_rate``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, episodes: int, successes: int, total_return: float, total_steps: int) -> EvalResult:
        rate = successes / episodes
        return cls(
            episodes=episodes,
            successes=successes,
            success_rate=rate,
            mean_return=total_return / episodes,
            mean_episode_steps=total_steps / episodes,
            stderr=(rate * (1 - rate) / episodes) ** 0.5,
        )


EVAL_BATCH_ENVS = 10
"""Evaluation episodes run this many at a time, their decisions sampled in one batched call."""


@torch.no_grad()
def evaluate_policy(
    policy: Any,
    io: PolicyIO,
    env_config: Any,
    *,
    episodes: int = 100,
    batch_envs: int = EVAL_BATCH_ENVS,
    sampler: str = "deterministic",
) -> EvalResult:
    """Run the first ``episodes`` episodes of the evaluation set with the deterministic sampler
    (``sampler="native"``: the stock policy's own sampler, what ``select_action`` runs).

    ``policy`` is a πRL-attached policy (``PiRLMixin``) and ``io`` its LeRobot processors; the envs
    come from ``env_config`` through LeRobot's ``make_env``, as the actors' do. Episode i resets
    with seed ``EVAL_SEED_OFFSET + i`` and draws its sampler's start noise from its own generator
    with that seed, so the result depends neither on ``batch_envs`` nor on anything run before.
    """
    executed_steps = policy.pi_rl_sampling.executed_steps
    adapter = policy.pi_rl_adapter
    noise_shape = (adapter.chunk_size, adapter.model_action_dim)
    envs = make_envs(env_config, min(batch_envs, episodes))
    task = task_description(envs[0])
    successes, total_return, total_steps = 0, 0.0, 0
    try:
        for first in range(0, episodes, len(envs)):
            wave = list(range(first, min(first + len(envs), episodes)))
            generators = [torch.Generator().manual_seed(EVAL_SEED_OFFSET + i) for i in wave]
            observations = [
                io.observation(env.reset(seed=[EVAL_SEED_OFFSET + i])[0], task)
                for env, i in zip(envs, wave, strict=False)
            ]
            live, success = list(range(len(wave))), [False] * len(wave)
            while live:
                batch = {
                    key: torch.cat([observations[j][key] for j in live]) for key in observations[live[0]]
                }
                noise = torch.stack([torch.randn(noise_shape, generator=generators[j]) for j in live])
                actions, _ = policy.sample_actions(batch, mode=sampler, initial_noise=noise)
                still_live = []
                for row, j in enumerate(live):
                    env_actions = io.env_actions(actions[row, :executed_steps])
                    for h in range(executed_steps):
                        result = step_env(envs[j], env_actions[h])
                        total_return += result.reward
                        total_steps += 1
                        success[j] = success[j] or result.success
                        if result.done:
                            break
                    if not result.done:
                        observations[j] = io.observation(result.observation, task)
                        still_live.append(j)
                live = still_live
            successes += sum(success)
    finally:
        for env in envs:
            env.close()
    return EvalResult.of(episodes, successes, total_return, total_steps)


@torch.no_grad()
def evaluate_noise_agent(
    agent: Any,
    preprocessor: Any,
    postprocessor: Any,
    env: Any,
    *,
    episodes: int = 100,
    reset_options: dict[str, Any] | None = None,
) -> EvalResult:
    """A DSRL agent (``gaussian_actor``) on the same evaluation set: its mean noise action (tanh of
    the Gaussian mean) through the frozen policy of ``env`` (a `NoiseSteeredPolicyEnv`), whose inner
    episode i resets with seed ``EVAL_SEED_OFFSET + i``. The actor's forward also draws a sample,
    so this runs on a forked torch RNG and leaves the caller's stream as it was. ``reset_options``
    go to every reset (a multi-task env's ``{"task": name}``)."""
    from lerobot.utils.constants import OBS_STATE

    successes, total_return, total_steps = 0, 0.0, 0
    with torch.random.fork_rng(devices=[]):
        for episode in range(episodes):
            observation, _ = env.reset(seed=EVAL_SEED_OFFSET + episode, options=reset_options)
            done, success = False, False
            while not done:
                state = {OBS_STATE: torch.as_tensor(observation["agent_pos"])}
                _, _, mean = agent.actor(preprocessor.process_observation(state))
                action = postprocessor.process_action(torch.tanh(mean))[0].numpy()
                observation, reward, terminated, truncated, info = env.step(action)
                total_return += reward
                total_steps += info["env_steps"]
                success = success or info["success"]
                done = terminated or truncated
            successes += int(success)
    return EvalResult.of(episodes, successes, total_return, total_steps)


def load_noise_agent(pretrained_dir: Path | str) -> tuple[Any, Any, Any]:
    """A saved DSRL agent and its LeRobot processors, as the learner checkpointed them."""
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy

    agent = GaussianActorPolicy.from_pretrained(str(pretrained_dir)).eval()
    preprocessor, postprocessor = make_pre_post_processors(agent.config, pretrained_path=str(pretrained_dir))
    return agent, preprocessor, postprocessor


def evaluation_env(*, episode_length: int = 50, physics_dt: float = PickCubeEnvConfig.physics_dt) -> Any:
    """The PandaPickCube env of the evaluation set: gym-hil's sparse reward, blank image."""
    return PickCubeEnvConfig(episode_length=episode_length, physics_dt=physics_dt)


def main(argv: list[str] | None = None) -> None:
    """``python -m lerobot_pirl.tasks.pick_cube.evaluate --checkpoint DIR [...] --output FILE.json``."""
    parser = argparse.ArgumentParser(description="Deterministic success rate of a flow-policy checkpoint")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a pretrained_model folder")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--max-episode-steps", type=int, default=50)
    parser.add_argument(
        "--physics-dt", type=float, default=PickCubeEnvConfig.physics_dt, help="gym-hil physics substep (s)"
    )
    parser.add_argument("--output", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("LEROBOT_PIRL_TORCH_THREADS", "1")))
    env_config = evaluation_env(episode_length=args.max_episode_steps, physics_dt=args.physics_dt)
    policy, io = load_flow_policy(args.checkpoint, env_config)
    result = evaluate_policy(policy, io, env_config, episodes=args.episodes).to_dict()
    text = json.dumps(result)
    if args.output is not None:
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
