"""SAC baseline of the learning benchmark: LeRobot's own SAC on gym-hil PandaPickCube (state only).

What it is
----------
LeRobot 0.6.1's ``SACAlgorithm`` (``lerobot.rl.algorithms.sac``) with its ``gaussian_actor`` policy,
trained in one process on the ``pirl_pick_cube`` env LeRobot's ``make_env`` builds — the same
env, episode limit,
demonstrations and evaluation episodes as the πRL runs of ``benchmarks/learning.py``. Nothing of SAC
is re-implemented: the loop below only wires LeRobot's pieces together the way LeRobot's HIL-SERL
actor (``lerobot/rl/actor.py``) and learner (``lerobot/rl/learner.py``) do, minus the gRPC hop:

* policy input: ``observation.state`` [21] only (the env's image is blank), MIN_MAX-normalised by
  the stock gaussian_actor preprocessor with min/max taken from the demonstrations (the stats a
  HIL-SERL user computes from their offline dataset); action [4] in [-1, 1], the tanh-squashed
  Gaussian's range, so the action (un)normalisation is the identity;
* offline replay buffer: the 20 noisy-expert demonstrations the πRL starting policy was SFT'd on
  (``collect_demonstrations(SFTConfig(), chunk_size=1)``) in a LeRobot ``ReplayBuffer``; online
  replay buffer: the actor's transitions; every batch is half online, half offline
  (``OnlineOfflineMixer``, ``online_ratio=0.5``, LeRobot's default), preprocessed with
  ``lerobot.rl.trainer.preprocess_rl_batch`` exactly like ``RLTrainer`` does;
* actor: ``select_action`` (a sample of the tanh-Gaussian) every env step; one ``SACAlgorithm.update``
  (``utd_ratio`` critic steps + the actor/temperature step) per env step once the online buffer
  holds ``online_step_before_learning`` transitions; the budget is counted in env steps, exactly;
* evaluation: the deterministic actor (tanh of the Gaussian mean) on a separate env whose episode i
  is reset with seed ``EVAL_SEED_OFFSET + i`` (the evaluation set of
  ``lerobot_pirl.tasks.pick_cube.evaluate`` that every method of the benchmark is measured on), at
  env step 0 and at every count in ``eval_at``.

LeRobot quirks this loop works around (all on the data path; SAC's maths is untouched):

* the learner builds its buffers with ``optimize_memory=True``, which reads ``next_state`` as the
  *next slot's* state: wrong at every episode end, and SAC (which masks by ``done`` only) does
  bootstrap from it after a time-limit truncation. We keep ``ReplayBuffer``'s default, ``False``;
* ``ReplayBuffer`` defaults to ``device="cuda:0"``; ``configure_data_iterator`` defaults to
  ``async_prefetch=True``, a sampler thread drawing from torch's global RNG, so runs stop being
  reproducible. We sample in the main thread (``async_prefetch=False``: LeRobot's "naive"
  iterator, which keeps two batches queued ahead);
* ``GaussianActorPolicy.actor`` always draws a sample, even when only the mean is wanted, so
  evaluation runs under ``torch.random.fork_rng`` to leave training's random stream unchanged;
* LeRobot's learner updates as fast as it can, independently of the actor; in one process we do
  the usual one update per env step (``updates_per_env_step`` in ``settings``).

Settings are LeRobot's defaults (``SACAlgorithmConfig``, ``GaussianActorConfig``,
``TrainRLServerPipelineConfig``) except the few listed in ``CHANGES`` with the reason for each; the
returned dict records every setting used.

How to run
----------
    OMP_NUM_THREADS=1 MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa HF_HUB_OFFLINE=1 \\
        .venv/bin/python benchmarks/sac_pick_cube.py --seed 0 --env-steps 15000 --eval-every 5000 \\
        --eval-episodes 50 --progress > sac_seed0.json

or from Python (``benchmarks/learning.py --methods sac`` does this)::

    from sac_pick_cube import run_sac
    result = run_sac(seed=0, env_steps=15_000, eval_at=[5_000, 10_000, 15_000], eval_episodes=50)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from lerobot.configs.types import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies.gaussian_actor.configuration_gaussian_actor import GaussianActorConfig  # noqa: E402
from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy  # noqa: E402
from lerobot.policies.gaussian_actor.processor_gaussian_actor import (  # noqa: E402
    make_gaussian_actor_pre_post_processors,
)
from lerobot.rl.algorithms.sac import SACAlgorithm, SACAlgorithmConfig  # noqa: E402
from lerobot.rl.buffer import ReplayBuffer  # noqa: E402
from lerobot.rl.data_sources import OnlineOfflineMixer  # noqa: E402
from lerobot.rl.trainer import preprocess_rl_batch  # noqa: E402
from lerobot.utils.constants import ACTION, OBS_STATE  # noqa: E402

from lerobot_pirl.envs import ACTION_DIM, STATE_DIM, PickCubeEnvConfig  # noqa: E402
from lerobot_pirl.runtime.envs import SingleEnv  # noqa: E402
from lerobot_pirl.tasks.pick_cube.evaluate import EVAL_SEED_OFFSET  # noqa: E402
from lerobot_pirl.tasks.pick_cube.sft import SFTConfig, collect_demonstrations  # noqa: E402

METHOD = "sac/gaussian_actor"
TRAIN_SEED_OFFSET = 2_000_000
"""Training episode e of seed s is reset with ``TRAIN_SEED_OFFSET + s * 100_000 + e``: block
positions disjoint from the demonstrations' (seeds 0..~40) and the evaluation set's (1_000_000 + i)."""

# Loop settings that live on LeRobot's TrainRLServerPipelineConfig, not on the SAC/policy configs.
LOOP_DEFAULTS: dict[str, Any] = {"batch_size": 256, "online_ratio": 0.5}

CHANGES: dict[str, dict[str, Any]] = {
    "batch_size": {
        "value": 256,
        "lerobot_default": 8,
        "why": "8 is TrainPipelineConfig's generic default; LeRobot's own gym_hil SAC example config "
        "(lerobot/config_examples rl/gym_hil/train_config.json) trains with 256",
    },
    "temperature_init": {
        "value": 0.01,
        "lerobot_default": 1.0,
        "why": "the reward is 0/1 once per episode; at alpha=1 the entropy bonus of a 4-D tanh-Gaussian "
        "(~+4 per step, backed up through use_backup_entropy) swamps it, and alpha only decays by "
        "~temperature_lr per update, i.e. by ~e^-4.5 over a whole 15k-step budget",
    },
}
"""Every departure from LeRobot's defaults, with the reason (also returned in ``settings``)."""


def _apply(config: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` that also accepts dicts for nested dataclass fields (network kwargs)."""
    changes = {}
    for key, value in overrides.items():
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            value = dataclasses.replace(current, **value)
        changes[key] = value
    return dataclasses.replace(config, **changes)


def _split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Route each override to the loop, GaussianActorConfig or SACAlgorithmConfig (error if none)."""
    loop, policy, algorithm = dict(LOOP_DEFAULTS), {}, {}
    algorithm_fields = {f.name for f in dataclasses.fields(SACAlgorithmConfig)} - {"policy_config"}
    policy_fields = {f.name for f in dataclasses.fields(GaussianActorConfig)}
    for key, value in {**{k: c["value"] for k, c in CHANGES.items()}, **overrides}.items():
        if key in LOOP_DEFAULTS:
            loop[key] = value
        elif key in algorithm_fields:
            algorithm[key] = value
        elif key in policy_fields:
            policy[key] = value
        else:
            raise ValueError(f"unknown SAC setting {key!r}")
    return loop, policy, algorithm


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_jsonable(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, int | float | str | bool):  # enums
        return value.value
    return value


@dataclasses.dataclass
class Agent:
    """A ``gaussian_actor`` and its ``SACAlgorithm``, built as LeRobot's ``make_policy`` /
    ``make_algorithm`` build them from a learner config, with the stock processors."""

    policy: Any
    policy_config: Any
    algorithm: Any
    algorithm_config: Any
    preprocessor: Any
    postprocessor: Any

    def settings(self) -> dict[str, Any]:
        """The policy and algorithm settings a result records."""
        algorithm = {k: v for k, v in _to_jsonable(self.algorithm_config).items() if k != "policy_config"}
        policy = {
            k: _to_jsonable(getattr(self.policy_config, k))
            for k in (
                "latent_dim",
                "state_encoder_hidden_dim",
                "shared_encoder",
                "actor_network_kwargs",
                "policy_kwargs",
                "online_step_before_learning",
                "online_buffer_capacity",
                "normalization_mapping",
            )
        }
        return {"policy": policy, "algorithm": algorithm}


def build_agent(
    seed: int,
    state_dim: int,
    action_dim: int,
    dataset_stats: dict[str, Any],
    policy_overrides: dict[str, Any],
    algorithm_overrides: dict[str, Any],
) -> Agent:
    """The SAC agent under ``torch.manual_seed(seed)`` (state-only input, tanh-squashed action)."""
    torch.manual_seed(seed)
    policy_config = GaussianActorConfig(
        input_features={OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))},
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
        dataset_stats=dataset_stats,
        device="cpu",
        push_to_hub=False,
    )
    policy_config = _apply(policy_config, policy_overrides)
    policy = GaussianActorPolicy(policy_config)
    algorithm_config = _apply(SACAlgorithmConfig.from_policy_config(policy_config), algorithm_overrides)
    algorithm = SACAlgorithm(policy=policy, config=algorithm_config)
    algorithm.make_optimizers_and_scheduler()
    preprocessor, postprocessor = make_gaussian_actor_pre_post_processors(policy_config, dataset_stats)
    return Agent(policy, policy_config, algorithm, algorithm_config, preprocessor, postprocessor)


def eval_schedule(env_steps: int, eval_every: int) -> list[int]:
    """Every ``eval_every`` env steps, and at the budget."""
    eval_at = list(range(eval_every, env_steps + 1, eval_every))
    if not eval_at or eval_at[-1] != env_steps:
        eval_at.append(env_steps)
    return eval_at


@torch.no_grad()
def evaluate(policy, preprocessor, postprocessor, env, episodes: int) -> dict[str, float]:
    """Deterministic actor (tanh of the mean) on evaluation episodes 0..episodes-1."""
    successes, total_steps = 0, 0
    # The actor's forward also draws a sample: keep evaluation from shifting training's torch RNG.
    with torch.random.fork_rng(devices=[]):
        for episode in range(episodes):
            observation = env.reset(seed=EVAL_SEED_OFFSET + episode)
            done, success = False, False
            while not done:
                batch = preprocessor.process_observation({OBS_STATE: observation[OBS_STATE]})
                _, _, mean = policy.actor(batch)
                action = postprocessor.process_action(torch.tanh(mean))
                observation, _, terminated, truncated, info = env.step(action[0])
                total_steps += 1
                success = success or info["success"]
                done = terminated or truncated
            successes += int(success)
    rate = successes / episodes
    return {
        "success_rate": rate,
        "stderr": math.sqrt(rate * (1 - rate) / episodes),
        "episodes": episodes,
        "mean_episode_steps": total_steps / episodes,
    }


def run_sac(
    seed: int,
    env_steps: int,
    eval_at: list[int],
    eval_episodes: int,
    max_episode_steps: int = 50,
    progress: bool = False,
    physics_dt: float = PickCubeEnvConfig.physics_dt,
    shaping_coef: float = 0.0,
    shaping_grasp_weight: float = 0.0,
    **sac_overrides: Any,
) -> dict[str, Any]:
    """Train LeRobot SAC for ``env_steps`` env steps; evaluate at 0 and at each count in ``eval_at``.

    ``sac_overrides`` may set any ``SACAlgorithmConfig`` or ``GaussianActorConfig`` field (nested
    network configs as dicts, e.g. ``critic_network_kwargs={"hidden_dims": [64, 64]}``) or a loop
    setting (``batch_size``, ``online_ratio``).
    """
    eval_points = sorted(set(eval_at))
    if env_steps < 1 or any(not 0 < k <= env_steps for k in eval_points):
        raise ValueError(f"need env_steps >= 1 and every eval_at in (0, env_steps]: {env_steps}, {eval_at}")
    started = time.perf_counter()
    torch.set_num_threads(1)
    loop, policy_overrides, algorithm_overrides = _split_overrides(sac_overrides)

    def log(message: str) -> None:
        if progress:
            elapsed = time.perf_counter() - started
            print(f"[sac seed {seed} {elapsed:6.0f}s] {message}", file=sys.stderr, flush=True)

    # Offline data: the demonstrations the πRL starting policy was SFT'd on (their own env seeds).
    demos = collect_demonstrations(SFTConfig(), chunk_size=1)
    all_states = torch.cat([demos.states, demos.next_states])
    dataset_stats = {
        OBS_STATE: {"min": all_states.min(0).values.tolist(), "max": all_states.max(0).values.tolist()},
        ACTION: {"min": [-1.0] * ACTION_DIM, "max": [1.0] * ACTION_DIM},
    }
    demo_s = time.perf_counter() - started
    log(f"{demos.episodes_kept} demonstrations, {len(demos.states)} transitions ({demo_s:.0f}s)")

    agent = build_agent(seed, STATE_DIM, ACTION_DIM, dataset_stats, policy_overrides, algorithm_overrides)
    policy, policy_config, algorithm = agent.policy, agent.policy_config, agent.algorithm
    preprocessor, postprocessor = agent.preprocessor, agent.postprocessor

    # Replay buffers and the 50/50 mixer, as the learner builds them (but optimize_memory=False: see top).
    state_keys = [OBS_STATE]
    online = ReplayBuffer(policy_config.online_buffer_capacity, device="cpu", state_keys=state_keys)
    offline = ReplayBuffer(len(demos.states), device="cpu", state_keys=state_keys)
    for i in range(len(demos.states)):
        offline.add(
            state={OBS_STATE: demos.states[i]},
            action=demos.action_chunks[i, 0],
            reward=float(demos.rewards[i]),
            next_state={OBS_STATE: demos.next_states[i]},
            done=bool(demos.terminated[i]),
            truncated=False,
        )
    mixer = OnlineOfflineMixer(online, offline, online_ratio=loop["online_ratio"])
    batches = None  # built at the first update (sampling needs a non-empty online buffer), like RLTrainer

    train_config = PickCubeEnvConfig(
        episode_length=max_episode_steps,
        physics_dt=physics_dt,
        shaping_coef=shaping_coef,
        shaping_grasp_weight=shaping_grasp_weight,
    )
    eval_config = PickCubeEnvConfig(episode_length=max_episode_steps, physics_dt=physics_dt)
    evaluations, training = [], []
    n_updates, step, episode = 0, 0, 0
    update_s = eval_s = 0.0

    def record_evaluation() -> None:
        nonlocal eval_s
        t0 = time.perf_counter()
        result = evaluate(policy, preprocessor, postprocessor, eval_env, eval_episodes)
        eval_s += time.perf_counter() - t0
        evaluations.append({"update": n_updates, "env_steps": step, **result})
        log(f"eval @ {step} env steps, {n_updates} updates: success {result['success_rate']:.2f}")

    with SingleEnv.make(train_config) as env, SingleEnv.make(eval_config) as eval_env:
        record_evaluation()
        observation = env.reset(seed=TRAIN_SEED_OFFSET + seed * 100_000 + episode)
        episode_steps, episode_return, episode_success = 0, 0.0, False
        while step < env_steps:
            # Actor: a stochastic action from the current policy (actor.py's act_with_policy).
            state = {OBS_STATE: observation[OBS_STATE]}
            with torch.no_grad():
                action = postprocessor.process_action(
                    policy.select_action(preprocessor.process_observation(dict(state)))
                )[0]
            observation, reward, terminated, truncated, info = env.step(action)
            step += 1
            online.add(
                state=state,
                action=action,
                reward=reward,
                next_state={OBS_STATE: observation[OBS_STATE]},
                done=terminated,
                truncated=truncated,
            )
            episode_steps += 1
            episode_return += reward
            episode_success = episode_success or info["success"]

            # Learner: one SAC update (utd_ratio critic steps) per env step after the warm-up.
            if len(online) >= policy_config.online_step_before_learning:
                t0 = time.perf_counter()
                if batches is None:
                    raw = algorithm.configure_data_iterator(mixer, loop["batch_size"], async_prefetch=False)
                    batches = (preprocess_rl_batch(preprocessor, batch) for batch in raw)
                stats = algorithm.update(batches)
                n_updates += 1
                update_s += time.perf_counter() - t0

            if terminated or truncated:
                training.append(
                    {
                        "episode": episode,
                        "env_steps": step,
                        "success": episode_success,
                        "steps": episode_steps,
                        "return": episode_return,
                    }
                )
                if progress and (episode + 1) % 20 == 0:
                    recent = training[-20:]
                    rate = sum(e["success"] for e in recent) / len(recent)
                    losses = stats.to_log_dict() if n_updates else {}
                    log(
                        f"episode {episode + 1}, {step} env steps, {n_updates} updates: train success "
                        f"(last 20) {rate:.2f}, loss_critic {losses.get('loss_critic', float('nan')):.4f}, "
                        f"temperature {algorithm.temperature:.4f}"
                    )
                episode += 1
                observation = env.reset(seed=TRAIN_SEED_OFFSET + seed * 100_000 + episode)
                episode_steps, episode_return, episode_success = 0, 0.0, False

            if step in eval_points:
                record_evaluation()

    wall_s = time.perf_counter() - started
    return {
        "method": METHOD,
        "seed": seed,
        "env_step_budget": env_steps,
        "evaluations": evaluations,
        "training": training,
        "wall_s": round(wall_s, 1),
        "timing": {
            "demo_collection_s": round(demo_s, 1),
            "update_s": round(update_s, 1),
            "eval_s": round(eval_s, 1),
            "train_env_s": round(wall_s - demo_s - update_s - eval_s, 1),
            "env_steps_per_s": round(step / (wall_s - demo_s - eval_s), 2),
            "updates_per_s": round(n_updates / update_s, 2) if update_s else None,
        },
        "settings": {
            **loop,
            "updates_per_env_step": 1,
            "max_episode_steps": max_episode_steps,
            "physics_dt": physics_dt,
            "shaping_coef": shaping_coef,
            "shaping_grasp_weight": shaping_grasp_weight,
            "policy_inputs": [OBS_STATE],
            "offline_buffer": {
                "source": "collect_demonstrations(SFTConfig(), chunk_size=1)",
                "episodes": demos.episodes_kept,
                "transitions": len(demos.states),
            },
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
    parser.add_argument("--env-steps", type=int, default=15_000)
    parser.add_argument("--eval-every", type=int, default=5_000, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--max-episode-steps", type=int, default=50)
    parser.add_argument("--physics-dt", type=float, default=PickCubeEnvConfig.physics_dt)
    parser.add_argument("--shaping-coef", type=float, default=0.0)
    parser.add_argument("--progress", action="store_true", help="log progress to stderr")
    args = parser.parse_args()
    eval_at = eval_schedule(args.env_steps, args.eval_every)
    result = run_sac(
        seed=args.seed,
        env_steps=args.env_steps,
        eval_at=eval_at,
        eval_episodes=args.eval_episodes,
        max_episode_steps=args.max_episode_steps,
        progress=args.progress,
        physics_dt=args.physics_dt,
        shaping_coef=args.shaping_coef,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
