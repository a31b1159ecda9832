"""Learning benchmark: success rate vs env steps on gym-hil PandaPickCube, πRL vs LeRobot's SAC.

Methods (same env, same env-step budget, same 20 noisy-expert demonstrations, same evaluation
episodes — block positions seeded identically for every method):

* ``flow_noise`` / ``flow_sde``: ``lerobot-pirl demo`` runs (learner + 2 actors, recipe=pi-rl)
  starting from the shipped tiny XVLA SFT checkpoint (SFT'd on those demonstrations);
* ``sac``: LeRobot's ``SACAlgorithm`` with its ``gaussian_actor`` policy, the demonstrations as its
  offline replay buffer (``benchmarks/sac_pick_cube.py``).

Each (method, seed) run is saved as its own JSON under ``benchmarks/results/learning/`` and
skipped when it already exists, so the benchmark can be run in pieces and in parallel; then
``--summarize`` merges them into ``benchmarks/results/learning.json`` and ``learning.png``.

    python benchmarks/learning.py --methods flow_noise flow_sde sac --seeds 0 1 2
    python benchmarks/learning.py --summarize
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lerobot_pirl.demo.machine import machine_info  # noqa: E402
from lerobot_pirl.demo.run import DemoConfig, run_demo  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "learning"
METHODS = ("flow_noise", "flow_sde", "sac")
LABELS = {"flow_noise": "πRL flow_noise", "flow_sde": "πRL flow_sde", "sac": "SAC (gaussian_actor)"}


def run_one(method: str, seed: int, env_steps: int, eval_points: int, eval_episodes: int) -> dict[str, Any]:
    if method == "sac":
        sys.path.insert(0, str(Path(__file__).parent))
        from sac_pick_cube import run_sac

        from lerobot_pirl.demo.run import DEMO_ALGORITHM

        eval_at = [round(env_steps * (i + 1) / eval_points) for i in range(eval_points)]
        return run_sac(  # the env options and training reward of the πRL runs
            seed=seed,
            env_steps=env_steps,
            eval_at=eval_at,
            eval_episodes=eval_episodes,
            physics_dt=DEMO_ALGORITHM["env_physics_dt"],
            shaping_coef=DEMO_ALGORITHM["env_shaping_coef"],
        )
    workdir = Path(tempfile.mkdtemp(prefix=f"learning_{method}_{seed}_"))
    try:
        config = DemoConfig(
            noise_method=method,
            env_steps=env_steps,
            seed=seed,
            eval_episodes=eval_episodes,
            output_dir=workdir / "run",
            progress=False,
        )
        config.eval_every_updates = max(1, _expected_updates(config) // eval_points)
        return run_demo(config)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _expected_updates(config: DemoConfig) -> int:
    """Updates the budget buys: ~2 env steps per decision (H'=2) minus early episode ends."""
    from lerobot_pirl.demo.run import DEMO_ALGORITHM

    decisions = {**DEMO_ALGORITHM, **config.algorithm}["rollout_decisions"]
    return max(1, config.env_steps // (2 * decisions))


def summarize(budget: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(RUNS.glob("*.json")):
        run = json.loads(path.read_text())
        runs.setdefault(run["benchmark_method"], []).append(run)
    grid = np.linspace(0, budget, 5)
    table = {}
    for method, method_runs in runs.items():
        curves = np.array(
            [
                np.interp(
                    grid,
                    [p["env_steps"] for p in r["evaluations"]],
                    [p["success_rate"] for p in r["evaluations"]],
                )
                for r in method_runs
            ]
        )
        start = [r["evaluations"][0]["success_rate"] for r in method_runs]
        final = [r["evaluations"][-1]["success_rate"] for r in method_runs]
        table[method] = {
            "seeds": [r["seed"] for r in method_runs],
            "start_success": _mean_std(start),
            "final_success": _mean_std(final),
            "final_env_steps": [r["evaluations"][-1]["env_steps"] for r in method_runs],
            "eval_episodes_per_point": min(p["episodes"] for r in method_runs for p in r["evaluations"]),
            "curve_env_steps": grid.tolist(),
            "curve_success_mean": curves.mean(axis=0).round(4).tolist(),
            "curve_success_std": curves.std(axis=0).round(4).tolist(),
            "wall_s_per_run": _mean_std([r["wall_s"] for r in method_runs]),
        }
    for method in ("flow_noise", "flow_sde"):
        if method in table:
            start, final = table[method]["start_success"]["mean"], table[method]["final_success"]["mean"]
            table[method]["gap_closed"] = round((final - start) / (1 - start), 4) if start < 1 else None
    summary = {"budget_env_steps": budget, "methods": table, "machine": machine_info()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learning.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_summary(runs, table, budget, RESULTS / "learning.png")
    return summary


def plot_summary(
    runs: dict[str, list[dict[str, Any]]], table: dict[str, Any], budget: int, path: Path
) -> None:
    """Mean ± std over seeds per method (interpolated on a common grid), each seed's points faint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for color, method in zip(("C0", "C1", "C2"), METHODS, strict=True):
        if method not in table:
            continue
        entry = table[method]
        x, mean, std = (
            np.array(entry[k]) for k in ("curve_env_steps", "curve_success_mean", "curve_success_std")
        )
        axis.plot(x, mean, color=color, marker="o", label=f"{LABELS[method]} ({len(entry['seeds'])} seeds)")
        axis.fill_between(x, mean - std, mean + std, color=color, alpha=0.15)
        for run in runs[method]:
            points = run["evaluations"]
            axis.plot(
                [p["env_steps"] for p in points],
                [p["success_rate"] for p in points],
                ".",
                color=color,
                alpha=0.35,
            )
    axis.set_xlabel("env steps")
    axis.set_ylabel("success rate (100 deterministic episodes)")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.set_title(f"PandaPickCube, {budget} env-step budget")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown_table(summary: dict[str, Any]) -> str:
    """The README table: success at the start, halfway and at the budget (mean ± std over seeds)."""
    grid = None
    rows = []
    for method in METHODS:
        entry = summary["methods"].get(method)
        if entry is None:
            continue
        grid = entry["curve_env_steps"]
        curve = [
            f"{m:.2f} ± {s:.2f}"
            for m, s in zip(entry["curve_success_mean"], entry["curve_success_std"], strict=True)
        ]
        gap = entry.get("gap_closed")
        rows.append(
            f"| {LABELS[method]} | {len(entry['seeds'])} | "
            + " | ".join(curve)
            + f" | {'' if gap is None else f'{100 * gap:.0f} %'} |"
        )
    header = "| method | seeds | " + " | ".join(f"{int(x)} steps" for x in grid or []) + " | gap closed |"
    rule = "|---|---|" + "---|" * len(grid or []) + "---|"
    return "\n".join([header, rule, *rows])


def _mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "std": round(float(np.std(values)), 4),
        "n": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env-steps", type=int, default=DemoConfig().env_steps)
    parser.add_argument("--eval-points", type=int, default=4, help="evaluations after the start one")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--summarize", action="store_true", help="only merge saved runs into learning.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    RUNS.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for seed in args.seeds:
            for method in args.methods:
                path = RUNS / f"{method}_seed{seed}.json"
                if path.exists():
                    print(f"skip {path.name} (exists)")
                    continue
                result = run_one(method, seed, args.env_steps, args.eval_points, args.eval_episodes)
                result["benchmark_method"] = method
                path.write_text(json.dumps(result, indent=2) + "\n")
                print(json.dumps({"method": method, "seed": seed, "evaluations": result["evaluations"]}))
    summary = summarize(args.env_steps)
    print(json.dumps(summary, indent=2))
    print(markdown_table(summary))


if __name__ == "__main__":
    main()
