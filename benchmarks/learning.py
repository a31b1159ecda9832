"""Learning benchmark: success rate vs env steps on gym-hil PandaPickCube, πRL vs LeRobot's SAC.

Methods (same env, same env-step budget, same noisy-expert demonstrations, same evaluation
episodes — block positions seeded identically for every method):

* ``flow_noise`` / ``flow_sde``: ``lerobot-pirl demo`` runs (learner + 2 actors, recipe=pi-rl)
  starting from the shipped tiny XVLA SFT checkpoint (SFT'd on those demonstrations);
* ``sac``: LeRobot's ``SACAlgorithm`` with its ``gaussian_actor`` policy, the demonstrations as its
  offline replay buffer (``benchmarks/sac_pick_cube.py``);
* ``dsrl``: the same SAC steering the frozen SFT checkpoint's initial noise (``recipe=dsrl``,
  ``benchmarks/dsrl_pick_cube.py``).

Each (method, seed) run is saved as its own JSON under ``benchmarks/results/learning/`` and
skipped when it already exists, so the benchmark can be run in pieces; then ``--summarize``
merges them into ``benchmarks/results/learning.json`` (the learning issue's schema) and
``learning.png``. ``--policy smolvla`` starts πRL and DSRL from the shipped tiny SmolVLA SFT
checkpoint instead (runs under ``results/learning_smolvla/``, summary ``learning_smolvla.json``).
At the demo's default budget a πRL run is exactly ``lerobot-pirl demo --seed N`` (same evaluation
schedule); other budgets spread ``--eval-points`` evaluations over the run.
Runs made with an earlier shipped checkpoint are kept in dated folders beside them.

    python benchmarks/learning.py --methods flow_noise flow_sde sac --seeds 0 1 2
    python benchmarks/learning.py --summarize
    python benchmarks/learning.py --policy smolvla --methods flow_sde dsrl --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lerobot_pirl.demo.pi_rl_demo import DemoConfig, run_demo  # noqa: E402
from lerobot_pirl.tasks.machine import machine_info  # noqa: E402

RESULTS = Path(__file__).parent / "results"
POLICIES = {"xvla": "learning", "smolvla": "learning_smolvla"}
"""The starting checkpoint's policy type → the name of its runs folder and summary files."""
METHODS = ("flow_noise", "flow_sde", "sac", "dsrl")
LABELS = {
    "flow_noise": "πRL flow_noise",
    "flow_sde": "πRL flow_sde",
    "sac": "SAC (gaussian_actor)",
    "dsrl": "DSRL (SAC on the frozen policy's noise)",
}


def run_one(
    method: str, seed: int, env_steps: int, eval_points: int, eval_episodes: int, policy: str = "xvla"
) -> dict[str, Any]:
    if method in ("sac", "dsrl"):  # in one process; the env options and training reward of πRL's runs
        sys.path.insert(0, str(Path(__file__).parent))
        from dsrl_pick_cube import run_dsrl
        from sac_pick_cube import run_sac

        from lerobot_pirl.tasks.pick_cube.configs import ENV_SETTINGS
        from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINTS

        if method == "sac" and policy != "xvla":
            raise ValueError("sac trains a gaussian_actor from scratch: it has no --policy")
        frozen = {"checkpoint": SHIPPED_CHECKPOINTS[policy]} if method == "dsrl" else {}
        return (run_sac if method == "sac" else run_dsrl)(
            seed=seed,
            env_steps=env_steps,
            eval_at=[round(env_steps * (i + 1) / eval_points) for i in range(eval_points)],
            eval_episodes=eval_episodes,
            max_episode_steps=ENV_SETTINGS["episode_length"],
            physics_dt=ENV_SETTINGS["physics_dt"],
            shaping_coef=ENV_SETTINGS["shaping_coef"],
            **frozen,
        )
    workdir = Path(tempfile.mkdtemp(prefix=f"learning_{method}_{seed}_"))
    try:
        config = DemoConfig(
            policy=policy,
            noise_method=method,
            env_steps=env_steps,
            seed=seed,
            eval_episodes=eval_episodes,
            output_dir=workdir / "run",
            progress=False,
        )
        if env_steps != DemoConfig().env_steps:
            config.eval_every_updates = max(1, _expected_updates(config) // eval_points)
        result = run_demo(config)
        final = config.output_dir / "learner" / "checkpoints" / "last" / "pretrained_model"
        result["stock_sampler_success"] = stock_sampler_success(final, eval_episodes)
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def stock_sampler_success(checkpoint: Path, episodes: int) -> float:
    """The checkpoint's success with stock ``select_action`` (XVLA's own sampler, random start
    noise) through LeRobot's evaluator, on the evaluation set's reset seeds: what a user who
    deploys it with LeRobot gets."""
    from lerobot_pirl.runtime.lerobot_eval import eval_checkpoint
    from lerobot_pirl.tasks.pick_cube.configs import ENV_SETTINGS
    from lerobot_pirl.tasks.pick_cube.evaluate import EVAL_SEED_OFFSET, evaluation_env

    env = evaluation_env(episode_length=ENV_SETTINGS["episode_length"], physics_dt=ENV_SETTINGS["physics_dt"])
    torch.manual_seed(0)  # select_action draws its start noise from the global RNG
    return (
        eval_checkpoint(checkpoint, env, n_episodes=episodes, start_seed=EVAL_SEED_OFFSET)["pc_success"] / 100
    )


def _expected_updates(config: DemoConfig) -> int:
    """Updates the budget buys: ~2 env steps per decision (H'=2) minus early episode ends."""
    from lerobot_pirl.tasks.pick_cube.configs import PI_RL_SETTINGS

    decisions = {**PI_RL_SETTINGS, **config.algorithm}["rollout_decisions"]
    return max(1, config.env_steps // (2 * decisions))


METHOD_NAMES = {"flow_noise": "pi-rl/flow_noise", "flow_sde": "pi-rl/flow_sde", "sac": "sac", "dsrl": "dsrl"}
"""The keys of ``methods`` in learning.json (πRL variants start with ``pi-rl/``)."""


def summarize(budget: int, policy: str = "xvla") -> dict[str, Any]:
    """Merge the saved runs into the learning issue's schema (``benchmarks/results/learning.json``;
    ``learning_smolvla.json`` for ``policy="smolvla"``)."""
    name = POLICIES[policy]
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((RESULTS / name).glob("*.json")):
        run = json.loads(path.read_text())
        runs.setdefault(run["benchmark_method"], []).append(run)
    methods = {}
    for method, method_runs in runs.items():
        # Each method on its own budget: a baseline that cannot reach πRL's env steps within the
        # run's wall-clock limit is reported over the steps it ran, never extrapolated.
        method_budget = min(budget, min(r["evaluations"][-1]["env_steps"] for r in method_runs))
        grid = np.linspace(0, method_budget, 5)
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
        sft = float(np.median([r["evaluations"][0]["success_rate"] for r in method_runs]))
        final = [r["evaluations"][-1]["success_rate"] for r in method_runs]
        target = sft + 0.8 * (1 - sft)
        methods[METHOD_NAMES[method]] = {
            "env_step_budget": int(max(r.get("env_step_budget", method_budget) for r in method_runs)),
            "sft_success_rate": sft,
            "final_success_rate": final,
            "seeds": [r["seed"] for r in method_runs],
            "wall_s": [round(r["wall_s"], 1) for r in method_runs],
            "env_steps": [r["evaluations"][-1]["env_steps"] for r in method_runs],
            "curve": [
                {"env_steps": int(x), "success_rate": round(float(y), 4)}
                for x, y in zip(grid, curves.mean(axis=0), strict=True)
            ],
            "curve_std": [round(float(y), 4) for y in curves.std(axis=0)],
            "median_final_success_rate": float(np.median(final)),
            # πRL runs: the final checkpoints with stock select_action through LeRobot's evaluator.
            **(
                {"stock_sampler_success": [r["stock_sampler_success"] for r in method_runs]}
                if all("stock_sampler_success" in r for r in method_runs)
                else {}
            ),
            "gap_closed": round((float(np.median(final)) - sft) / (1 - sft), 4) if sft < 1 else None,
            "target_success_rate": round(target, 4),
            "eval_episodes_per_point": min(p["episodes"] for r in method_runs for p in r["evaluations"]),
        }
    walls = [w for entry in methods.values() for w in entry["wall_s"]]
    summary = {
        "policy": policy,
        "machine": machine_info(),
        "date": max((r.get("date", "") for rs in runs.values() for r in rs), default=""),
        "budget": {"wall_s_per_run": max(walls, default=0.0), "env_steps_per_run": budget},
        "methods": methods,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_summary(runs, methods, budget, RESULTS / f"{name}.png", policy)
    return summary


def plot_summary(
    runs: dict[str, list[dict[str, Any]]], table: dict[str, Any], budget: int, path: Path, policy: str
) -> None:
    """Mean ± std over seeds per method (interpolated on a common grid), each seed's points faint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for color, method in zip(("C0", "C1", "C2", "C3"), METHODS, strict=True):
        if METHOD_NAMES[method] not in table:
            continue
        entry = table[METHOD_NAMES[method]]
        x = np.array([p["env_steps"] for p in entry["curve"]])
        mean = np.array([p["success_rate"] for p in entry["curve"]])
        std = np.array(entry["curve_std"])
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
    axis.set_title(f"PandaPickCube, tiny {policy} SFT start, {budget} env-step budget")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown_table(summary: dict[str, Any]) -> str:
    """The README tables: mean success over seeds on each method's curve grid, each seed's final,
    gap closed; one table per distinct grid (a method on a smaller budget gets its own)."""
    tables: dict[tuple[int, ...], list[str]] = {}
    for method in METHODS:
        entry = summary["methods"].get(METHOD_NAMES[method])
        if entry is None:
            continue
        grid = tuple(int(p["env_steps"]) for p in entry["curve"])
        curve = [
            f"{p['success_rate']:.2f} ± {s:.2f}"
            for p, s in zip(entry["curve"], entry["curve_std"], strict=True)
        ]
        finals = ", ".join(f"{f:.2f}" for f in entry["final_success_rate"])
        gap = entry["gap_closed"]
        tables.setdefault(grid, []).append(
            f"| {LABELS[method]} | {len(entry['seeds'])} | "
            + " | ".join(curve)
            + f" | {finals} | {'' if gap is None else f'{100 * gap:.0f} %'} |"
        )
    out = []
    for grid, rows in tables.items():
        header = (
            "| method | seeds | "
            + " | ".join(f"{x} steps" for x in grid)
            + " | final per seed | gap closed (median) |"
        )
        rule = "|---|---|" + "---|" * len(grid) + "---|---|"
        out.append("\n".join([header, rule, *rows]))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy", choices=list(POLICIES), default="xvla", help="the shipped SFT checkpoint")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env-steps", type=int, default=DemoConfig().env_steps)
    parser.add_argument("--eval-points", type=int, default=4, help="evaluations after the start one")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--summarize", action="store_true", help="only merge saved runs into learning.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = RESULTS / POLICIES[args.policy]
    runs.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for seed in args.seeds:
            for method in args.methods:
                path = runs / f"{method}_seed{seed}.json"
                if path.exists():
                    print(f"skip {path.name} (exists)")
                    continue
                result = run_one(
                    method, seed, args.env_steps, args.eval_points, args.eval_episodes, args.policy
                )
                result["benchmark_method"] = method
                result.setdefault("date", time.strftime("%Y-%m-%d"))
                path.write_text(json.dumps(result, indent=2) + "\n")
                print(json.dumps({"method": method, "seed": seed, "evaluations": result["evaluations"]}))
    summary = summarize(args.env_steps, args.policy)
    print(json.dumps(summary, indent=2))
    print(markdown_table(summary))


if __name__ == "__main__":
    main()
