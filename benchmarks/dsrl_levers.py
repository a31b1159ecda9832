"""DSRL lever study: why LeRobot's SAC unlearned the frozen XVLA's good noise, and what fixes it.

Each lever is one ``benchmarks/dsrl_pick_cube.py`` run (seed 0, 12 000 env steps, 50 evaluation
episodes every 3 000 env steps, the demo's env options and shaped reward unless the lever says
otherwise), two at a time, one core each. Its JSON goes to ``benchmarks/results/dsrl_levers/<name>.json``
(curve, training episodes, and per-500-update diagnostics: SAC's losses, the temperature, the size
of the executed noise actions); a run whose JSON exists is skipped. Then the summary — final and
best evaluation, the training success per 40 episodes — goes to ``summary.json`` and a markdown
table to stdout.

    python benchmarks/dsrl_levers.py              # run the missing levers, then summarize
    python benchmarks/dsrl_levers.py --summarize  # only summarize the saved runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "dsrl_levers"
LEVERS: dict[str, dict[str, Any]] = {
    # name: dsrl_pick_cube.py flags; "sac" holds SAC overrides. discount 0.99 is LeRobot's default.
    "discount0.99_scale1.5": {"sac": {"discount": 0.99}},
    "discount0.99_scale1.0": {"noise_scale": 1.0, "sac": {"discount": 0.99}},
    "discount0.99_scale1.0_sparse_reward": {
        "noise_scale": 1.0,
        "shaping_coef": 0.0,
        "sac": {"discount": 0.99},
    },
    "discount0.99_scale1.0_temperature0.001": {
        "noise_scale": 1.0,
        "sac": {"discount": 0.99, "temperature_init": 0.001},
    },
    "discount0.99_scale1.0_actor_lr3e-5": {"noise_scale": 1.0, "sac": {"discount": 0.99, "actor_lr": 3e-5}},
    "discount0.99_scale1.0_actor_lr0": {"noise_scale": 1.0, "sac": {"discount": 0.99, "actor_lr": 0.0}},
    "discount0.99_scale1.0_10_critics": {
        "noise_scale": 1.0,
        "sac": {"discount": 0.99, "num_critics": 10, "num_subsample_critics": 2},
    },
    "discount0.99_scale1.0_no_backup_entropy": {
        "noise_scale": 1.0,
        "sac": {"discount": 0.99, "use_backup_entropy": False},
    },
    "discount0.9_scale1.0": {"noise_scale": 1.0, "sac": {"discount": 0.9}},
    "discount0.9_scale1.5": {"sac": {"discount": 0.9}},
}
RUN = {"seed": 0, "env_steps": 12_000, "eval_every": 3_000, "eval_episodes": 50}


def command(name: str) -> list[str]:
    lever = LEVERS[name]
    args = [sys.executable, str(Path(__file__).parent / "dsrl_pick_cube.py")]
    args += [f"--{key.replace('_', '-')}={value}" for key, value in RUN.items()]
    if "noise_scale" in lever:
        args.append(f"--noise-scale={lever['noise_scale']}")
    if "shaping_coef" in lever:
        args.append(f"--shaping-coef={lever['shaping_coef']}")
    return [*args, "--sac", json.dumps(lever.get("sac", {}))]


def run_missing(parallel: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    todo = [name for name in LEVERS if not (RESULTS / f"{name}.json").exists()]
    for start in range(0, len(todo), parallel):
        batch = todo[start : start + parallel]
        running = [
            (name, subprocess.Popen(command(name), stdout=subprocess.PIPE, text=True)) for name in batch
        ]
        for name, process in running:
            out, _ = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"lever {name} failed (exit {process.returncode})")
            (RESULTS / f"{name}.json").write_text(out)


def summarize() -> dict[str, Any]:
    rows, machine = {}, None
    for name in LEVERS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        run = json.loads(path.read_text())
        machine = machine or run["machine"]
        curve = [[e["env_steps"], e["success_rate"]] for e in run["evaluations"]]
        episodes = [e["success"] for e in run["training"]]
        rows[name] = {
            "lever": LEVERS[name],
            "curve": curve,
            "best": max(rate for _, rate in curve[1:]),
            "final": curve[-1][1],
            "train_success_per_40_episodes": [
                round(sum(episodes[i : i + 40]) / len(episodes[i : i + 40]), 2)
                for i in range(0, len(episodes), 40)
            ],
            "temperature_final": run["diagnostics"][-1]["temperature"] if run["diagnostics"] else None,
        }
    summary = {"run": RUN, "machine": machine, "levers": rows}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def markdown_table(summary: dict[str, Any]) -> str:
    lines = ["| lever | evaluations (env steps: success) | final |", "|---|---|---|"]
    for name, row in summary["levers"].items():
        points = ", ".join(f"{steps // 1000}k: {rate:.2f}" for steps, rate in row["curve"])
        lines.append(f"| `{name}` | {points} | {row['final']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--summarize", action="store_true", help="only summarize the saved runs")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one core each)")
    args = parser.parse_args()
    if not args.summarize:
        run_missing(args.parallel)
    summary = summarize()
    print(json.dumps(summary, indent=2))
    print(markdown_table(summary))


if __name__ == "__main__":
    main()
