"""Stock inference vs the sampler πRL trains: what a user who deploys with LeRobot gets.

Every success rate in this project comes from ``lerobot_pirl.tasks.pick_cube.evaluate``: the deterministic
Euler/x̂₁ chain πRL trains, from seeded start noise. A user who deploys the checkpoint runs stock
``select_action`` (XVLA's own sampler: x_t = t·x₁ + (1 − t)·x̂₀ with the fixed start noise x₁),
through LeRobot's evaluator. For each checkpoint this measures, on the same env settings:

* ``ours_deterministic``: our evaluator, the chain πRL trains (the project's figure);
* ``ours_native``: our evaluator, XVLA's own sampler (same episodes and start noise);
* ``stock_sampler_success``: LeRobot's ``eval_policy`` (stock class, its processors,
  ``select_action``) on the same reset seeds, and ``stock_sampler_success_unseen`` on seeds
  from 2 000 000 (never used by any evaluation or training here).

    python benchmarks/stock_inference.py --checkpoint sft=lerobot_pirl/tasks/pick_cube/assets/pick_cube_sft \\
        --checkpoint demo=outputs/pi_rl_demo/learner/checkpoints/last/pretrained_model
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from lerobot_pirl.runtime.flow_policy import load_flow_policy  # noqa: E402
from lerobot_pirl.runtime.lerobot_eval import eval_checkpoint  # noqa: E402
from lerobot_pirl.tasks.machine import machine_info  # noqa: E402
from lerobot_pirl.tasks.pick_cube.configs import ENV_SETTINGS  # noqa: E402
from lerobot_pirl.tasks.pick_cube.evaluate import (  # noqa: E402
    EVAL_SEED_OFFSET,
    evaluate_policy,
    evaluation_env,
)

RESULT = Path(__file__).parent / "results" / "stock_inference.json"
UNSEEN_SEED_OFFSET = 2_000_000


def measure(checkpoint: Path, episodes: int) -> dict[str, float]:
    env = evaluation_env(episode_length=ENV_SETTINGS["episode_length"], physics_dt=ENV_SETTINGS["physics_dt"])
    policy, io = load_flow_policy(checkpoint, env)
    result: dict[str, float] = {}
    for sampler in ("deterministic", "native"):
        result[f"ours_{sampler}"] = evaluate_policy(
            policy, io, env, episodes=episodes, sampler=sampler
        ).success_rate
    for key, seed in (
        ("stock_sampler_success", EVAL_SEED_OFFSET),
        ("stock_sampler_success_unseen", UNSEEN_SEED_OFFSET),
    ):
        torch.manual_seed(0)  # select_action draws its start noise from the global RNG
        stock = eval_checkpoint(checkpoint, env, n_episodes=episodes, start_seed=seed)
        result[key] = stock["pc_success"] / 100
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="LABEL=pretrained_model folder")
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    checkpoints = {}
    for item in args.checkpoint:
        label, path = item.split("=", 1)
        checkpoints[label] = {"path": path, **measure(Path(path), args.episodes)}
        print(json.dumps({label: checkpoints[label]}), flush=True)
    summary = {
        "machine": machine_info(),
        "date": machine_info()["date"],
        "episodes": args.episodes,
        "env": {"episode_length": ENV_SETTINGS["episode_length"], "physics_dt": ENV_SETTINGS["physics_dt"]},
        "seeds": {"ours_and_stock": EVAL_SEED_OFFSET, "stock_unseen": UNSEEN_SEED_OFFSET},
        "checkpoints": checkpoints,
        "wall_s": round(time.time() - started, 1),
    }
    RESULT.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
