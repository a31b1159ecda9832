"""MT10 success rates of an XVLA policy with the deterministic sampler, per task and on average.

Measured as every success rate in this project (`lerobot_pirl.tasks.pick_cube.evaluate`):
``sample_actions(mode="deterministic")``, H' executed steps per decision, and one fixed evaluation
set. Here the set is per task: episode i of task t resets task t's env with seed
``EVAL_SEED_OFFSET + i`` (MetaWorld draws the object and goal positions from it; the SFT
demonstrations use seeds below it) and draws its sampler's start noise from its own generator with
that seed, so the result depends neither on how episodes are batched nor on anything run before.
The mean is the average of the per-task rates (each task has the same number of episodes).

Each episode's instruction goes through the policy's own preprocessor (its tokenizer). The
**instruction-swap** evaluation (`swapped_instructions`) runs exactly the same episodes with each
task's instruction replaced by another task's (the next one in MT10's order): a policy that reads
its instruction scores clearly lower there.

Episodes of all tasks run together, ``envs_per_task`` envs per task, their decisions sampled in
one batched call per step.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.envs.utils import preprocess_observation

from lerobot_pirl.envs.metaworld import MetaWorldEnvConfig, lerobot_metaworld
from lerobot_pirl.runtime.envs import make_envs, step_env, task_description
from lerobot_pirl.runtime.flow_policy import load_flow_policy
from lerobot_pirl.runtime.processors import PolicyIO
from lerobot_pirl.tasks.metaworld.configs import (
    ENV_SETTINGS,
    EVAL_EPISODES_PER_TASK,
    SHIPPED_CHECKPOINT,
    mt10_env_config,
    single_task_config,
)
from lerobot_pirl.tasks.pick_cube.evaluate import EVAL_SEED_OFFSET

__all__ = [
    "EVAL_SEED_OFFSET",
    "EVAL_EPISODES_PER_TASK",
    "evaluate_tasks",
    "evaluate_mt10",
    "evaluate_noise_agent_tasks",
    "with_summary",
    "instructions_for",
    "swapped_instructions",
    "load_mt10_policy",
    "policy_observation",
]

EVAL_ENVS_PER_TASK = 5
"""Envs per task stepped together (all tasks at once: 10 × 5 episodes per batched decision)."""


def instructions_for(tasks: list[str]) -> dict[str, str]:
    """Each task's own instruction (LeRobot's ``TASK_DESCRIPTIONS``, the env's ``task_description``)."""
    descriptions = lerobot_metaworld().TASK_DESCRIPTIONS
    return {task: descriptions[task] for task in tasks}


def swapped_instructions(tasks: list[str], shift: int = 1) -> dict[str, str]:
    """Task ``tasks[i]`` gets the instruction of ``tasks[(i + shift) mod T]`` (the next task's by
    default): the instruction-swap evaluation."""
    own = instructions_for(tasks)
    if len(tasks) < 2 or shift % len(tasks) == 0:
        raise ValueError(f"swapping instructions needs >= 2 tasks and a shift that is not 0 mod {len(tasks)}")
    return {task: own[tasks[(i + shift) % len(tasks)]] for i, task in enumerate(tasks)}


def policy_observation(io: PolicyIO, raw: dict[str, Any], instructions: list[str]) -> dict[str, torch.Tensor]:
    """A batch of raw env observations (row r with instruction ``instructions[r]``) as the policy
    reads them: `PolicyIO.observation` with one instruction per row."""
    observation = preprocess_observation(raw)
    observation["task"] = list(instructions)
    observation = io.preprocessor(io.env_preprocessor(observation))
    return {key: value for key, value in observation.items() if isinstance(value, torch.Tensor)}


def stack_raw(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """Batched raw observations (nested dicts of arrays with a leading batch dim) joined on that dim."""
    first = raws[0]
    if isinstance(first, dict):
        return {key: stack_raw([raw[key] for raw in raws]) for key in first}
    return np.concatenate([np.asarray(raw) for raw in raws])


@torch.no_grad()
def evaluate_tasks(
    policy: Any,
    io: PolicyIO,
    env_config: MetaWorldEnvConfig,
    *,
    episodes_per_task: int = EVAL_EPISODES_PER_TASK,
    instructions: dict[str, str] | None = None,
    envs_per_task: int = EVAL_ENVS_PER_TASK,
    sampler: str = "deterministic",
) -> dict[str, Any]:
    """Run episodes ``0 .. episodes_per_task - 1`` of the evaluation set of every task of
    ``env_config`` (see the module docstring) and return ``{"per_task": {task: rate}, "mean":
    average of the rates, "successes": {task: int}, "mean_episode_steps": {task: float},
    "episodes_per_task", "instructions": {task: instruction given}, "sampler"}``.

    ``instructions`` replaces a task's instruction (`swapped_instructions`); by default each episode
    gets its env's own ``task_description``. ``policy`` is a πRL-attached XVLA and ``io`` its
    processors (e.g. from `load_mt10_policy`).
    """
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    tasks = env_config.task_names
    executed_steps = policy.pi_rl_sampling.executed_steps
    adapter = policy.pi_rl_adapter
    noise_shape = (adapter.chunk_size, adapter.model_action_dim)
    per_task_envs = min(envs_per_task, episodes_per_task)
    envs: dict[str, list[Any]] = {}
    given: dict[str, str] = {}
    successes = dict.fromkeys(tasks, 0)
    steps = dict.fromkeys(tasks, 0)
    try:
        for task in tasks:
            envs[task] = make_envs(single_task_config(env_config, task), per_task_envs)
            given[task] = (instructions or {}).get(task) or task_description(envs[task][0])
        for first in range(0, episodes_per_task, per_task_envs):
            wave = range(first, min(first + per_task_envs, episodes_per_task))
            slots = [(task, envs[task][j], i) for task in tasks for j, i in enumerate(wave)]
            generators = [torch.Generator().manual_seed(EVAL_SEED_OFFSET + i) for _, _, i in slots]
            raws = [env.reset(seed=[EVAL_SEED_OFFSET + i])[0] for _, env, i in slots]
            live, success = list(range(len(slots))), [False] * len(slots)
            while live:
                batch = policy_observation(
                    io, stack_raw([raws[s] for s in live]), [given[slots[s][0]] for s in live]
                )
                noise = torch.stack([torch.randn(noise_shape, generator=generators[s]) for s in live])
                actions, _ = policy.sample_actions(batch, mode=sampler, initial_noise=noise)
                still_live = []
                for row, s in enumerate(live):
                    task, env, _ = slots[s]
                    env_actions = io.env_actions(actions[row, :executed_steps])
                    for h in range(executed_steps):
                        result = step_env(env, env_actions[h])
                        steps[task] += 1
                        success[s] = success[s] or result.success
                        if result.done:
                            break
                    if not result.done:
                        raws[s] = result.observation
                        still_live.append(s)
                live = still_live
            for s, (task, _, _) in enumerate(slots):
                successes[task] += int(success[s])
    finally:
        for task_envs in envs.values():
            for env in task_envs:
                env.close()
    per_task = {task: successes[task] / episodes_per_task for task in tasks}
    return {
        "per_task": per_task,
        "mean": sum(per_task.values()) / len(tasks),
        "successes": successes,
        "mean_episode_steps": {task: steps[task] / episodes_per_task for task in tasks},
        "episodes_per_task": episodes_per_task,
        "instructions": given,
        "sampler": sampler,
    }


def with_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """A multi-task evaluation (``per_task`` rates, ``episodes_per_task``) with the keys every
    evaluation has: ``success_rate`` (the mean of the task rates), its ``stderr`` (binomial, over
    all episodes; the tasks have equal counts) and ``episodes`` (all of them)."""
    rates = evaluation["per_task"]
    episodes = evaluation["episodes_per_task"] * len(rates)
    mean = sum(rates.values()) / len(rates)
    variance = sum(rate * (1 - rate) for rate in rates.values()) / len(rates) ** 2
    return {
        **evaluation,
        "success_rate": mean,
        "stderr": (variance / evaluation["episodes_per_task"]) ** 0.5,
        "episodes": episodes,
    }


@torch.no_grad()
def evaluate_noise_agent_tasks(
    agent: Any,
    preprocessor: Any,
    postprocessor: Any,
    env: Any,
    *,
    episodes_per_task: int = EVAL_EPISODES_PER_TASK,
) -> dict[str, Any]:
    """A DSRL agent on every task's evaluation set: `evaluate_noise_agent` per task, the multi-task
    `NoiseSteeredPolicyEnv` ``env`` reset onto each task in turn (``options={"task": name}``) with
    seed ``EVAL_SEED_OFFSET + i`` for episode i. Returns `evaluate_tasks`'s keys."""
    from lerobot_pirl.tasks.pick_cube.evaluate import evaluate_noise_agent

    per_task, successes, steps = {}, {}, {}
    for task in env.task_names:
        result = evaluate_noise_agent(
            agent, preprocessor, postprocessor, env, episodes=episodes_per_task, reset_options={"task": task}
        )
        per_task[task], successes[task] = result.success_rate, result.successes
        steps[task] = result.mean_episode_steps
    return {
        "per_task": per_task,
        "mean": sum(per_task.values()) / len(per_task),
        "successes": successes,
        "mean_episode_steps": steps,
        "episodes_per_task": episodes_per_task,
        "instructions": dict(zip(env.task_names, env.instructions, strict=True)),
        "sampler": "deterministic from the agent's mean noise",
    }


def evaluate_mt10(
    policy: Any,
    io: PolicyIO,
    episodes_per_task: int = EVAL_EPISODES_PER_TASK,
    *,
    swap: bool = False,
    env_config: MetaWorldEnvConfig | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """`evaluate_tasks` on MT10 (``env_config``: `mt10_env_config` by default), with each task's
    own instruction or, ``swap=True``, the next task's (`swapped_instructions`)."""
    env_config = env_config or mt10_env_config()
    instructions = swapped_instructions(env_config.task_names) if swap else None
    return evaluate_tasks(
        policy, io, env_config, episodes_per_task=episodes_per_task, instructions=instructions, **kwargs
    )


def load_mt10_policy(
    checkpoint: Path | str = SHIPPED_CHECKPOINT, env_config: MetaWorldEnvConfig | None = None
) -> tuple[Any, PolicyIO]:
    """A saved checkpoint (the shipped MT10 one by default) as a πRL-sampling policy in eval mode,
    with its own LeRobot processors and instruction tokenizer (`load_flow_policy`)."""
    return load_flow_policy(checkpoint, env_config or mt10_env_config())


def main(argv: list[str] | None = None) -> None:
    """``python -m lerobot_pirl.tasks.metaworld.evaluate [--checkpoint DIR] [--episodes-per-task N]
    [--swap] [--output FILE.json]``."""
    parser = argparse.ArgumentParser(description="Deterministic MT10 success rates of an XVLA checkpoint")
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--episodes-per-task", type=int, default=EVAL_EPISODES_PER_TASK)
    parser.add_argument("--episode-length", type=int, default=ENV_SETTINGS["episode_length"])
    parser.add_argument("--task", default=ENV_SETTINGS["task"], help="MT10 (default), a task or a comma list")
    parser.add_argument("--swap", action="store_true", help="give each task the next task's instruction")
    parser.add_argument("--output", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("LEROBOT_PIRL_TORCH_THREADS", "1")))
    env_config = mt10_env_config(episode_length=args.episode_length, task=args.task)
    policy, io = load_mt10_policy(args.checkpoint, env_config)
    result = evaluate_mt10(policy, io, args.episodes_per_task, swap=args.swap, env_config=env_config)
    text = json.dumps(with_summary(result))
    if args.output is not None:
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
