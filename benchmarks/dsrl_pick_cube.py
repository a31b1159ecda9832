"""DSRL in the learning benchmark: LeRobot's SAC steering the shipped XVLA's initial noise.

What it is
----------
``recipe=dsrl`` as one process: LeRobot's ``SACAlgorithm`` and ``gaussian_actor`` (the settings of
the SAC baseline, ``sac_pick_cube.py``, with its two documented departures from LeRobot's
defaults, and the demo's ``DSRL_SETTINGS``: a discount of 0.9 per decision) acting in the
``pirl_dsrl`` env (`lerobot_pirl.envs.noise_steered`) around the shipped SFT checkpoint, the πRL runs'
starting policy, which stays frozen. Same env options, training reward, env-step budget and
evaluation set as the πRL runs:

* one agent decision = one noise action = H' env steps of the frozen XVLA's deterministic chunk;
  the budget counts env steps (a decision that crosses the budget or an evaluation point is
  finished first, so counts can overshoot by H' - 1);
* one SAC update per decision once ``online_step_before_learning`` decisions are stored; online
  replay only: the demonstrations are env actions, and the noise that would reproduce them is not
  known without inverting the XVLA's sampler, so they cannot seed the agent's offline buffer;
* evaluation: the agent's mean noise action (tanh of the Gaussian mean) through the frozen XVLA
  on evaluation episode i, reset with seed ``EVAL_SEED_OFFSET + i`` — the set every method is
  measured on. At env step 0 the agent is untrained (its mean is not zero noise), so the first
  point is the untrained agent's, not the SFT policy's.

    python benchmarks/dsrl_pick_cube.py --seed 0 --env-steps 10000 --eval-every 2500 > dsrl_seed0.json

or through ``benchmarks/learning.py --methods dsrl``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lerobot.rl.buffer import ReplayBuffer  # noqa: E402
from lerobot.rl.data_sources import OnlineOfflineMixer  # noqa: E402
from lerobot.rl.trainer import preprocess_rl_batch  # noqa: E402
from lerobot.utils.constants import OBS_STATE  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from sac_pick_cube import (  # noqa: E402
    CHANGES,
    TRAIN_SEED_OFFSET,
    _split_overrides,
    _to_jsonable,
    build_agent,
    eval_schedule,
)

from lerobot_pirl.envs.noise_steered import DSRLEnvConfig, NoiseSteeredPolicyEnv, agent_dataset_stats  # noqa: E402
from lerobot_pirl.tasks.machine import machine_info  # noqa: E402
from lerobot_pirl.tasks.pick_cube.configs import DSRL_SETTINGS  # noqa: E402
from lerobot_pirl.tasks.pick_cube.evaluate import EVAL_SEED_OFFSET, evaluate_noise_agent  # noqa: E402
from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT  # noqa: E402

METHOD = "dsrl/gaussian_actor"


def _state(observation: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {OBS_STATE: torch.as_tensor(observation["agent_pos"])}


def run_dsrl(
    seed: int,
    env_steps: int,
    eval_at: list[int],
    eval_episodes: int,
    max_episode_steps: int = 50,
    progress: bool = False,
    physics_dt: float = 0.002,
    shaping_coef: float = 0.0,
    noise_dims: str = DSRLEnvConfig.noise_dims,
    noise_scale: float = DSRLEnvConfig.noise_scale,
    diagnostics_every: int = 500,
    checkpoint: Path = SHIPPED_CHECKPOINT,
    **sac_overrides: Any,
) -> dict[str, Any]:
    """Train the DSRL agent for ``env_steps`` env steps; evaluate at 0 and at each count in ``eval_at``.

    ``diagnostics`` holds, per ``diagnostics_every`` updates, the means of SAC's losses and
    temperature and of the executed noise actions' size (``action_abs_mean``) and the fraction of
    their coordinates beyond 0.95 (``action_saturated``): what shows a collapse, and where.
    """
    eval_points = sorted(set(eval_at))
    if env_steps < 1 or any(not 0 < k <= env_steps for k in eval_points):
        raise ValueError(f"need env_steps >= 1 and every eval_at in (0, env_steps]: {env_steps}, {eval_at}")
    started = time.perf_counter()
    torch.set_num_threads(1)
    sac_overrides = {**DSRL_SETTINGS, **sac_overrides}
    loop, policy_overrides, algorithm_overrides = _split_overrides(sac_overrides)

    def log(message: str) -> None:
        if progress:
            elapsed = time.perf_counter() - started
            print(f"[dsrl seed {seed} {elapsed:6.0f}s] {message}", file=sys.stderr, flush=True)

    inner = {"type": "pirl_pick_cube", "episode_length": max_episode_steps, "physics_dt": physics_dt}
    env_fields = {"checkpoint": str(checkpoint), "noise_dims": noise_dims, "noise_scale": noise_scale}
    train_config = DSRLEnvConfig(inner={**inner, "shaping_coef": shaping_coef}, **env_fields)
    eval_config = DSRLEnvConfig(inner=inner, **env_fields)
    env, eval_env = NoiseSteeredPolicyEnv(train_config), NoiseSteeredPolicyEnv(eval_config)
    dataset_stats = agent_dataset_stats(checkpoint, env.layout)

    state_dim = train_config.features["agent_pos"].shape[0]
    agent = build_agent(
        seed, state_dim, env.layout.action_dim, dataset_stats, policy_overrides, algorithm_overrides
    )
    policy, policy_config, algorithm = agent.policy, agent.policy_config, agent.algorithm
    preprocessor, postprocessor = agent.preprocessor, agent.postprocessor
    online = ReplayBuffer(policy_config.online_buffer_capacity, device="cpu", state_keys=[OBS_STATE])
    mixer = OnlineOfflineMixer(online, None)
    batches = None

    evaluations, training, diagnostics = [], [], []
    window: dict[str, list[float]] = {}
    n_updates = step = decisions = episode = 0
    update_s = eval_s = 0.0

    def record_evaluation() -> None:
        nonlocal eval_s
        t0 = time.perf_counter()
        result = evaluate_noise_agent(policy, preprocessor, postprocessor, eval_env, episodes=eval_episodes)
        eval_s += time.perf_counter() - t0
        evaluations.append({"update": n_updates, "env_steps": step, **result.to_dict()})
        log(f"eval @ {step} env steps, {n_updates} updates: success {result.success_rate:.2f}")

    try:
        record_evaluation()
        observation, _ = env.reset(seed=TRAIN_SEED_OFFSET + seed * 100_000 + episode)
        episode_steps, episode_return, episode_success = 0, 0.0, False
        pending = list(eval_points)
        while step < env_steps:
            state = _state(observation)
            with torch.no_grad():
                action = postprocessor.process_action(
                    policy.select_action(preprocessor.process_observation(dict(state)))
                )[0]
            window.setdefault("action_abs_mean", []).append(action.abs().mean().item())
            window.setdefault("action_saturated", []).append((action.abs() > 0.95).float().mean().item())
            observation, reward, terminated, truncated, info = env.step(action.numpy())
            step += info["env_steps"]
            decisions += 1
            online.add(
                state=state,
                action=action,
                reward=reward,
                next_state=_state(observation),
                done=terminated,
                truncated=truncated,
            )
            episode_steps += info["env_steps"]
            episode_return += reward
            episode_success = episode_success or info["success"]
            if len(online) >= policy_config.online_step_before_learning:
                t0 = time.perf_counter()
                if batches is None:
                    raw = algorithm.configure_data_iterator(mixer, loop["batch_size"], async_prefetch=False)
                    batches = (preprocess_rl_batch(preprocessor, batch) for batch in raw)
                stats = algorithm.update(batches).to_log_dict()
                n_updates += 1
                update_s += time.perf_counter() - t0
                for key in ("loss_critic", "loss_actor", "temperature"):
                    if key in stats:
                        window.setdefault(key, []).append(stats[key])
                if n_updates % diagnostics_every == 0:
                    diagnostics.append(
                        {"update": n_updates, "env_steps": step}
                        | {key: round(float(np.mean(values)), 5) for key, values in window.items()}
                    )
                    window.clear()
            if terminated or truncated:
                training.append(
                    {
                        "episode": episode,
                        "env_steps": step,
                        "success": episode_success,
                        "return": episode_return,
                    }
                )
                if progress and (episode + 1) % 20 == 0:
                    rate = sum(e["success"] for e in training[-20:]) / 20
                    log(f"episode {episode + 1}, {step} env steps: train success (last 20) {rate:.2f}")
                episode += 1
                observation, _ = env.reset(seed=TRAIN_SEED_OFFSET + seed * 100_000 + episode)
                episode_steps, episode_return, episode_success = 0, 0.0, False
            while pending and step >= pending[0]:
                pending.pop(0)
                record_evaluation()
    finally:
        env.close()
        eval_env.close()

    wall_s = time.perf_counter() - started
    return {
        "method": METHOD,
        "seed": seed,
        "env_step_budget": env_steps,
        "evaluations": evaluations,
        "training": training,
        "diagnostics": diagnostics,
        "wall_s": round(wall_s, 1),
        "machine": machine_info(),
        "timing": {
            "update_s": round(update_s, 1),
            "eval_s": round(eval_s, 1),
            "decisions": decisions,
            "updates_per_s": round(n_updates / update_s, 2) if update_s else None,
        },
        "settings": {
            **loop,
            "updates_per_decision": 1,
            "max_episode_steps": max_episode_steps,
            "physics_dt": physics_dt,
            "shaping_coef": shaping_coef,
            "frozen_policy": str(checkpoint.name),
            "noise_layout": _to_jsonable(env.layout),
            "executed_steps_per_decision": env.executed_steps,
            "offline_buffer": None,
            "dataset_stats": dataset_stats,
            "changes_from_lerobot_defaults": CHANGES,
            "overrides": _to_jsonable(sac_overrides),
            **agent.settings(),
            "eval_reset_seeds": f"{EVAL_SEED_OFFSET} + episode",
            "train_reset_seeds": f"{TRAIN_SEED_OFFSET} + seed * 100000 + episode",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-steps", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=2_500, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--noise-scale", type=float, default=DSRLEnvConfig.noise_scale)
    parser.add_argument("--noise-dims", choices=("real", "full"), default=DSRLEnvConfig.noise_dims)
    parser.add_argument(
        "--sac",
        type=json.loads,
        default={},
        help="JSON overrides of SACAlgorithmConfig / GaussianActorConfig / loop fields, "
        "e.g. '{\"target_entropy\": 0.0}'",
    )
    parser.add_argument("--shaping-coef", type=float, default=None, help="default: the demo's")
    parser.add_argument("--diagnostics-every", type=int, default=500, help="updates per diagnostics row")
    parser.add_argument("--progress", action="store_true", help="log progress to stderr")
    args = parser.parse_args()
    from lerobot_pirl.tasks.pick_cube.configs import ENV_SETTINGS

    eval_at = eval_schedule(args.env_steps, args.eval_every)
    result = run_dsrl(
        seed=args.seed,
        env_steps=args.env_steps,
        eval_at=eval_at,
        eval_episodes=args.eval_episodes,
        max_episode_steps=ENV_SETTINGS["episode_length"],
        physics_dt=ENV_SETTINGS["physics_dt"],
        shaping_coef=ENV_SETTINGS["shaping_coef"] if args.shaping_coef is None else args.shaping_coef,
        noise_dims=args.noise_dims,
        noise_scale=args.noise_scale,
        diagnostics_every=args.diagnostics_every,
        progress=args.progress,
        **args.sac,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
