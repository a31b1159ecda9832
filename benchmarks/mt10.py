"""MetaWorld MT10 benchmark: πRL and DSRL from the shipped MT10 SFT checkpoint, through the real
learner and actors, success per task before and after.

* ``pi-rl/flow_sde`` (or ``pi-rl/flow_noise``): ``lerobot-pirl demo --env metaworld --seed N`` at
  the given budget (learner + actors, recipe=pi-rl), evaluated on the fixed MT10 evaluation set
  (`lerobot_pirl.tasks.metaworld.evaluate`: deterministic sampler, 50 episodes per task, reset seeds
  1_000_000 + i) as its checkpoints appear;
* ``dsrl``: ``lerobot-pirl demo --recipe dsrl --env metaworld`` (LeRobot's SAC learner and actor):
  a ``gaussian_actor`` steering the frozen checkpoint's start noise, told the task as a one-hot
  appended to its state; its mean noise evaluated on the same set.

Each (method, seed) run is saved under ``benchmarks/results/metaworld/`` and skipped when it exists;
``--summarize`` merges them into ``benchmarks/results/metaworld.json`` and prints the table.
``--policy smolvla`` starts from the shipped tiny SmolVLA MT10 checkpoint instead (runs in
``metaworld_smolvla/``, summary ``metaworld_smolvla.json``), everything else the same.

    python benchmarks/mt10.py --methods pi-rl/flow_sde dsrl --seeds 0 1 2
    python benchmarks/mt10.py --policy smolvla --methods pi-rl/flow_sde dsrl --seeds 0 1 2
    python benchmarks/mt10.py --summarize
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
POLICIES = {"xvla": "metaworld", "smolvla": "metaworld_smolvla"}
"""The starting checkpoint's policy type → the name of its runs folder and summary file."""
METHODS = ("pi-rl/flow_sde", "pi-rl/flow_noise", "dsrl")
PAPER_REFERENCE = {
    "source": "πRL (arXiv 2510.25889), MetaWorld MT50, π0 few-shot SFT then RL",
    "sft_mean_success": 0.508,
    "rl_mean_success": 0.858,
}


def run_one(
    method: str, seed: int, env_steps: int | None, eval_points: int, policy: str = "xvla"
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"metaworld_{policy}_{method.replace('/', '_')}_{seed}_"))
    try:
        config = DemoConfig(
            task="metaworld",
            policy=policy,
            noise_method=method.removeprefix("pi-rl/") if method.startswith("pi-rl/") else "flow_sde",
            env_steps=env_steps,
            seed=seed,
            output_dir=workdir / "run",
            progress=False,
        )
        if method == "dsrl":
            from lerobot_pirl.demo.dsrl_demo import run_dsrl_demo

            config.actors = 1
            return run_dsrl_demo(config, eval_points=eval_points)
        return run_demo(config)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def summarize(policy: str = "xvla") -> dict[str, Any]:
    """The saved runs in the MT10 issue's schema (``benchmarks/results/metaworld.json``;
    ``metaworld_smolvla.json`` for ``policy="smolvla"``)."""
    name = POLICIES[policy]
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((RESULTS / name).glob("*.json")):
        run = json.loads(path.read_text())
        runs.setdefault(run["benchmark_method"], []).append(run)
    methods: dict[str, Any] = {}
    episodes_per_task = None
    for method, method_runs in runs.items():
        method_runs.sort(key=lambda r: r["seed"])
        first, finals = method_runs[0]["evaluations"][0], [r["evaluations"][-1] for r in method_runs]
        episodes_per_task = first["episodes_per_task"]
        tasks = list(first["per_task"])
        budget = min(f["env_steps"] for f in finals)
        grid = np.linspace(0, budget, 6)
        curves = np.array(
            [
                np.interp(
                    grid,
                    [p["env_steps"] for p in r["evaluations"] if p["env_steps"] is not None],
                    [p["success_rate"] for p in r["evaluations"] if p["env_steps"] is not None],
                )
                for r in method_runs
            ]
        )
        sft = first["success_rate"]
        final = [f["success_rate"] for f in finals]
        methods[method] = {
            "sft_mean_success": sft,
            "final_mean_success": final,
            "per_task": {
                task: {"sft": first["per_task"][task], "final": [f["per_task"][task] for f in finals]}
                for task in tasks
            },
            "wall_s": [r["wall_s"] for r in method_runs],
            "env_steps": [f["env_steps"] for f in finals],
            "curve": [
                {"env_steps": int(x), "mean_success": round(float(y), 4)}
                for x, y in zip(grid, curves.mean(axis=0), strict=True)
            ],
            "seeds": [r["seed"] for r in method_runs],
            "median_final_mean_success": float(np.median(final)),
            "target_mean_success": round(sft + 0.8 * (1 - sft), 4),
            "gap_closed": round((float(np.median(final)) - sft) / (1 - sft), 4),
            "training_diagnostics": [r.get("diagnostics") for r in method_runs],
        }
    summary = {
        "machine": machine_info(),
        "date": max((r.get("date", "") for rs in runs.values() for r in rs), default=""),
        "suite": "MT10",
        "policy": policy,
        "episodes_per_task": episodes_per_task,
        "sampler": "deterministic (πRL: Euler chain from seeded start noise; DSRL: agent mean noise)",
        "reference": PAPER_REFERENCE,
        "methods": methods,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def diagnostics(run: dict[str, Any]) -> dict[str, Any] | None:
    """Per-task sampled success over the first and last tenth of a πRL run's updates, and the mean
    explained variance and approx_kl of the last tenth (from its training log)."""
    training = run.get("training")
    if not training:
        return None
    tenth = max(1, len(training) // 10)

    def mean(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
        return round(float(np.mean(values)), 4) if values else None

    keys = sorted({k for r in training for k in r if k.startswith("success_rate/")})
    return {
        "sampled_success_first_tenth": {
            k.removeprefix("success_rate/"): mean(training[:tenth], k) for k in keys
        },
        "sampled_success_last_tenth": {
            k.removeprefix("success_rate/"): mean(training[-tenth:], k) for k in keys
        },
        "explained_variance_last_tenth": mean(training[-tenth:], "explained_variance"),
        "approx_kl_last_tenth": mean(training[-tenth:], "approx_kl"),
    }


def markdown_table(summary: dict[str, Any]) -> str:
    """One row per method in the πRL paper's MetaWorld layout: SFT → RL per task and on average
    (RL: the median over seeds)."""
    methods = summary["methods"]
    if not methods:
        return ""
    tasks = list(next(iter(methods.values()))["per_task"])
    header = "| method | " + " | ".join(t.removesuffix("-v3") for t in tasks) + " | average |"
    rule = "|---|" + "---|" * (len(tasks) + 1)
    rows = []
    for method, entry in methods.items():
        cells = [
            f"{entry['per_task'][t]['sft']:.2f} → {float(np.median(entry['per_task'][t]['final'])):.2f}"
            for t in tasks
        ]
        average = f"{entry['sft_mean_success']:.2f} → {entry['median_final_mean_success']:.2f}"
        rows.append(f"| {method} ({len(entry['seeds'])} seeds) | " + " | ".join(cells) + f" | {average} |")
    return "\n".join([header, rule, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy", choices=list(POLICIES), default="xvla", help="the shipped SFT checkpoint")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["pi-rl/flow_sde", "dsrl"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env-steps", type=int, default=None, help="default: the MT10 demo's budget")
    parser.add_argument("--eval-points", type=int, default=3, help="DSRL: evaluated checkpoints")
    parser.add_argument("--summarize", action="store_true", help="only merge saved runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = RESULTS / POLICIES[args.policy]
    runs.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for seed in args.seeds:
            for method in args.methods:
                path = runs / f"{method.replace('/', '_')}_seed{seed}.json"
                if path.exists():
                    print(f"skip {path.name} (exists)")
                    continue
                result = run_one(method, seed, args.env_steps, args.eval_points, args.policy)
                result["benchmark_method"] = method
                result["diagnostics"] = diagnostics(result)
                result.setdefault("date", time.strftime("%Y-%m-%d"))
                path.write_text(json.dumps(result, indent=2) + "\n")
                print(json.dumps({"method": method, "seed": seed, "final": result["final_success_rate"]}))
    summary = summarize(args.policy)
    print(json.dumps(summary, indent=2))
    print(markdown_table(summary))


if __name__ == "__main__":
    main()
