"""πRL lever study on PandaPickCube, in one process: the recipe's own update on the actor's own episodes.

The same parts as a ``lerobot-pirl demo`` run — the shipped SFT checkpoint, ``PiRLRecipe.update_step``,
the actor's multi-env loop (``BatchedEpisodes``) and its transition encoding, the shared
deterministic evaluation — minus the processes and the gRPC transport: decisions go straight into
``recipe.accept`` and every update trains on a rollout sampled by the current policy (staleness 0).
One run uses one core, so two settings can be compared side by side on the 2-core box. Use it to
choose settings; the demo and ``benchmarks/learning.py`` measure them through the real runtime.

    python benchmarks/pi_rl_ablation.py --name lr3e-5 --algorithm '{"actor_lr": 3e-5}'

Writes ``benchmarks/results/ablation/<name>.json``: settings, the evaluation curve and per-update
diagnostics (approx_kl, clip fraction, explained variance, sampled success, minibatch steps).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig  # noqa: E402
from lerobot_pirl.recipes.pi_rl.config import PiRLConfig  # noqa: E402
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe  # noqa: E402
from lerobot_pirl.runtime.envs import make_envs  # noqa: E402
from lerobot_pirl.runtime.on_policy_actor import ENV_SEED_STRIDE, BatchedEpisodes  # noqa: E402
from lerobot_pirl.runtime.processors import PolicyIO  # noqa: E402
from lerobot_pirl.tasks.machine import machine_info  # noqa: E402
from lerobot_pirl.tasks.pick_cube.configs import ENV_SETTINGS, PI_RL_SETTINGS  # noqa: E402
from lerobot_pirl.tasks.pick_cube.evaluate import evaluate_policy, evaluation_env  # noqa: E402
from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ablation"
DIAGNOSTICS = (
    "approx_kl",
    "clip_frac",
    "explained_variance_rollout",
    "minibatch_steps",
    "loss_value",
    "ratio_max",
)


def run(
    name: str,
    algorithm: dict[str, Any],
    env: dict[str, Any],
    env_steps: int,
    envs: int,
    eval_every: int,
    eval_episodes: int,
    seed: int,
    checkpoint: Path = SHIPPED_CHECKPOINT,
) -> dict[str, Any]:
    from lerobot_pirl.policies import PiRLXVLAPolicy

    torch.manual_seed(seed)
    settings = {**PI_RL_SETTINGS, **algorithm}
    settings.pop("torch_threads", None)
    env_settings = {**ENV_SETTINGS, **env}
    policy = PiRLXVLAPolicy.from_pretrained(str(checkpoint))
    policy.config.pretrained_path = checkpoint
    recipe = PiRLRecipe(policy, PiRLConfig(policy_config=policy.config, **settings))
    settings["noise_method"] = recipe.config.noise_method  # recorded even when left to the default
    recipe.build_optimizers()
    train_env = PickCubeEnvConfig(**env_settings)
    eval_env = evaluation_env(episode_length=train_env.episode_length, physics_dt=train_env.physics_dt)
    io = PolicyIO.for_policy(policy.config, train_env)  # the checkpoint's own processors
    env_list = make_envs(train_env, envs)

    def evaluate() -> float:
        return evaluate_policy(recipe.policy, io, eval_env, episodes=eval_episodes).success_rate

    started = time.monotonic()
    curve = [{"update": 0, "env_steps": 0, "success_rate": evaluate(), "wall_s": 0.0}]
    print(json.dumps(curve[-1]), flush=True)
    seeds = [seed + ENV_SEED_STRIDE * i for i in range(envs)]
    runner = BatchedEpisodes(env_list, io, recipe, actor_id=0, seeds=seeds)
    updates: list[dict[str, Any]] = []
    episodes: list[Any] = []
    steps = 0
    try:
        while steps < env_steps:
            for episode in runner.step():
                episodes.append(episode)
                steps += episode.env_steps
                for transition in episode.decisions:
                    recipe.accept(transition)
            if not recipe.rollout_ready():
                continue
            metrics = recipe.update_step(iter([recipe.take_rollout()]), step=len(updates))
            row = {"update": len(updates) + 1, "env_steps": steps, "episodes": len(episodes)}
            row["sampled_success"] = sum(e.success for e in episodes) / max(len(episodes), 1)
            row.update({k: metrics[k] for k in DIAGNOSTICS if k in metrics})
            updates.append(row)
            print(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )
            episodes = []
            if row["update"] % eval_every == 0:
                point = {"update": row["update"], "env_steps": steps, "success_rate": evaluate()}
                point["wall_s"] = round(time.monotonic() - started, 1)
                curve.append(point)
                print(json.dumps(point), flush=True)
        if curve[-1]["update"] != len(updates):
            curve.append(
                {
                    "update": len(updates),
                    "env_steps": steps,
                    "success_rate": evaluate(),
                    "wall_s": round(time.monotonic() - started, 1),
                }
            )
            print(json.dumps(curve[-1]), flush=True)
    finally:
        for env in env_list:
            env.close()
    return {
        "name": name,
        "seed": seed,
        "checkpoint": str(checkpoint),
        "algorithm": settings,
        "env": env_settings,
        "envs": envs,
        "eval_episodes": eval_episodes,
        "env_steps": steps,
        "wall_s": round(time.monotonic() - started, 1),
        "sft_success_rate": curve[0]["success_rate"],
        "final_success_rate": curve[-1]["success_rate"],
        "best_success_rate": max(p["success_rate"] for p in curve),
        "curve": curve,
        "updates": updates,
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--algorithm", type=json.loads, default={}, help="PiRLConfig overrides (JSON)")
    parser.add_argument("--env", type=json.loads, default={}, help="PickCubeEnvConfig overrides (JSON)")
    parser.add_argument("--env-steps", type=int, default=40_000)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=10, help="evaluate every N updates")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint", type=Path, default=SHIPPED_CHECKPOINT, help="an XVLA pretrained_model folder"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run(
        args.name,
        args.algorithm,
        args.env,
        args.env_steps,
        args.envs,
        args.eval_every,
        args.eval_episodes,
        args.seed,
        args.checkpoint,
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("name", "sft_success_rate", "final_success_rate", "wall_s")}))


if __name__ == "__main__":
    main()
