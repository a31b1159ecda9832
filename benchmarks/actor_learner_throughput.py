"""Throughput of the pi-rl learner with 1, 2 and 4 actor processes on gym-hil PandaPickCube.

Every process runs with one torch thread (the thread policy for small machines). Each setting runs
for ``--seconds`` of actor time; reported: env steps/s and decisions/s summed over actors, learner
updates/s, and their ratio to the single-actor run (measured side by side in one invocation).

    .venv/bin/python benchmarks/actor_learner_throughput.py [--seconds 40] [--actors 1 2 4]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lerobot_pirl.demo.configs import tiny_pi_rl_config
from lerobot_pirl.demo.machine import free_port, machine_info

RESULTS = Path(__file__).parent / "results"


def run(n_actors: int, seconds: float, noise_method: str, workdir: Path) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "LEROBOT_PIRL_TORCH_THREADS": "1",
        "MUJOCO_GL": "osmesa",
        "PYOPENGL_PLATFORM": "osmesa",
    }
    out = workdir / f"actors_{n_actors}"
    config = workdir / f"config_{n_actors}.json"
    data = tiny_pi_rl_config(
        out,
        free_port(),
        noise_method=noise_method,
        rollout_decisions=32,
        minibatch_size=16,
        max_updates=100000,
        env={"episode_length": 50},
    )
    data["save_freq"] = 100000  # no checkpoints inside the timed window
    config.write_text(json.dumps(data))
    cmd = [sys.executable, "-m"]
    logs = [open(workdir / f"learner_{n_actors}.log", "w")]  # noqa: SIM115
    learner = subprocess.Popen(
        [*cmd, "lerobot_pirl.runtime.learner", f"--config_path={config}"],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        env=env,
    )
    actors = []
    for i in range(n_actors):
        logs.append(open(workdir / f"actor_{n_actors}_{i}.log", "w"))  # noqa: SIM115
        actors.append(
            subprocess.Popen(
                [*cmd, "lerobot_pirl.runtime.actor", f"--config_path={config}", f"--actor_id={i}"],
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
    time.sleep(seconds + 15)  # ~15 s of process start-up (imports, model build) before acting
    for process in actors:
        process.send_signal(signal.SIGTERM)
    for process in actors:
        process.wait(timeout=60)
    time.sleep(2)
    learner.send_signal(signal.SIGTERM)
    learner.wait(timeout=60)
    actor_logs = [(workdir / f"actor_{n_actors}_{i}.log").read_text() for i in range(n_actors)]
    learner_log = (workdir / f"learner_{n_actors}.log").read_text()
    for log in [learner_log, *actor_logs]:
        if "stopped" not in log:
            raise RuntimeError(f"a process of the {n_actors}-actor run failed:\n{log[-3000:]}")
    env_steps_per_s = sum(float(re.findall(r"env_steps_per_s=([\d.]+)", log)[-1]) for log in actor_logs)
    decisions = sum(int(re.findall(r"'decisions_queued': (\d+)", log)[-1]) for log in actor_logs)
    env_steps = sum(int(re.findall(r"'env_steps': (\d+)", log)[-1]) for log in actor_logs)
    updates = [float(v) for v in re.findall(r"update_seconds=([\d.e-]+)", learner_log)]
    stamps = re.findall(r"INFO (\S+ \S+) .*\[ON-POLICY LEARNER\] update \d+:", learner_log)
    span = (
        datetime.datetime.fromisoformat(stamps[-1]) - datetime.datetime.fromisoformat(stamps[0])
    ).total_seconds()
    return {
        "actors": n_actors,
        "env_steps_per_s": round(env_steps_per_s, 1),
        "decisions_per_s": round(env_steps_per_s * decisions / env_steps, 1),
        "learner_updates": len(updates),
        "learner_updates_per_s": round((len(updates) - 1) / span, 2) if span > 0 else None,
        "update_seconds_mean": round(sum(updates) / len(updates), 4) if updates else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(  # the demo's default
        "--noise_method", default="flow_sde", choices=["flow_noise", "flow_sde"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(n, args.seconds, args.noise_method, Path(tmp)) for n in args.actors]
    base = rows[0]["env_steps_per_s"]
    for row in rows:
        row["env_steps_ratio_vs_first"] = round(row["env_steps_per_s"] / base, 2)
    result = {
        "benchmark": "actor_learner_throughput",
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "setup": {
            "policy": "tiny XVLA (hidden 32, depth 1, chunk 4, H'=2, K=3)",
            "env": "PandaPickCubeBase-v0, state obs",
            "noise_method": args.noise_method,
            "torch_threads_per_process": 1,
            "seconds": args.seconds,
        },
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "actor_learner_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
