"""Soak: one pi-rl learner and 4 actors for a long run, one actor SIGKILLed and restarted every
2 minutes. Checks that training never stalls, that the learner's memory stays flat after warm-up,
and that the delivery counters are conserved.

    python benchmarks/soak.py [--duration-s 1200] [--kill-every-s 120] [--actors 4]

Writes ``benchmarks/results/soak.json``: ``duration_s``, ``actor_kills``, ``updates``,
``rss_slope_kb_per_min`` (least squares over the samples after ``--warmup-s``), ``conserved``
(what the learner received equals what it consumed, dropped and holds; nothing rejected; it
received at least what the cleanly stopped actor lives delivered and at most what all lives
queued), plus the longest gap between updates, the RSS samples and the counters.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lerobot_pirl.demo.processes import child_env
from lerobot_pirl.tasks.machine import free_port, machine_info
from lerobot_pirl.tasks.pick_cube.configs import ENV_SETTINGS, PI_RL_SETTINGS, pretrained_pi_rl_config
from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT

RESULTS = Path(__file__).parent / "results"
FINAL = re.compile(
    r"stopped after (\d+) updates: received=(\d+) consumed=(\d+) dropped=(\d+) "
    r"pending=(\d+) rejected=(\d+)"
)


def _spawn(module: str, args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=child_env(),
    )


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _updates(metrics: Path) -> list[dict[str, Any]]:
    if not metrics.exists():
        return []
    return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]


def _last_counter(log_text: str, name: str) -> int:
    found = re.findall(rf"'{name}': (\d+)", log_text)
    return int(found[-1]) if found else 0


def _slope_per_min(samples: list[tuple[float, int]]) -> float:
    n = len(samples)
    if n < 2:
        return float("nan")
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return cov / var * 60.0


def soak(out: Path, duration_s: float, kill_every_s: float, actors: int, warmup_s: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    learner_dir = out / "learner"
    algorithm = {**PI_RL_SETTINGS, "max_actors": actors, "envs_per_actor": 2, "rollout_decisions": 256}
    config = pretrained_pi_rl_config(
        SHIPPED_CHECKPOINT, learner_dir, free_port(), env=ENV_SETTINGS, max_updates=10**6, **algorithm
    )
    config["save_freq"] = 10**6  # checkpoints are not what this measures (the final one is written)
    config_path = out / "train_config.json"
    config_path.write_text(json.dumps(config, indent=2))

    learner = _spawn("lerobot_pirl.runtime.learner", [f"--config_path={config_path}"], out / "learner.log")
    lives: dict[int, list[Path]] = {i: [] for i in range(actors)}
    running: dict[int, subprocess.Popen] = {}

    def start_actor(i: int) -> None:
        log = out / f"actor{i}_life{len(lives[i])}.log"
        lives[i].append(log)
        running[i] = _spawn(
            "lerobot_pirl.runtime.actor", [f"--config_path={config_path}", f"--actor_id={i}"], log
        )

    for i in range(actors):
        start_actor(i)
    started = time.monotonic()
    rss: list[tuple[float, int]] = []
    kills, next_kill, victim = 0, kill_every_s, 1
    try:
        while (now := time.monotonic() - started) < duration_s:
            if learner.poll() is not None:
                raise RuntimeError(f"the learner exited with {learner.returncode}; see {out / 'learner.log'}")
            rss.append((now, _rss_kb(learner.pid)))
            if now >= next_kill and now < duration_s - 60:  # every life at the end ran ≥ 60 s
                running[victim].send_signal(signal.SIGKILL)
                running[victim].wait(timeout=300)  # a loaded machine can take a while to reap it
                kills += 1
                start_actor(victim)
                victim = 1 + victim % (actors - 1)  # actor 0 is never killed: one clean life to check
                next_kill += kill_every_s
            time.sleep(10)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {i: p.wait(timeout=120) for i, p in running.items()}
        time.sleep(3)
        learner.send_signal(signal.SIGTERM)
        learner_code = learner.wait(timeout=120)

    final = FINAL.findall((out / "learner.log").read_text())
    updates_done, received, consumed, dropped, pending, rejected = map(int, final[-1])
    last_lives = [lives[i][-1].read_text() for i in range(actors)]  # stopped by SIGTERM
    all_lives = [log.read_text() for logs in lives.values() for log in logs]
    delivered_clean = sum(_last_counter(text, "decisions_delivered") for text in last_lives)
    queued_all = sum(
        max(map(int, re.findall(r"decisions_queued_total=(\d+)", t)), default=0) for t in all_lives
    )
    conserved = (
        received == consumed + dropped + pending
        and rejected == 0
        and delivered_clean <= received <= queued_all
        and learner_code == 0
        and all(code == 0 for code in codes.values())
    )
    update_times = [u["wall_s"] for u in _updates(learner_dir / "logs" / "metrics.jsonl")]
    gaps = [b - a for a, b in zip(update_times, update_times[1:], strict=False)]
    after_warmup = [(t, r) for t, r in rss if t >= warmup_s]
    return {
        "benchmark": "soak",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(),
        "duration_s": round(duration_s, 1),
        "actors": actors,
        "kill_every_s": kill_every_s,
        "actor_kills": kills,
        "updates": updates_done,
        "max_update_gap_s": round(max(gaps), 1) if gaps else None,
        "rss_slope_kb_per_min": round(_slope_per_min(after_warmup), 1),
        "rss_after_warmup_kb": {"first": after_warmup[0][1], "last": after_warmup[-1][1]}
        if after_warmup
        else None,
        "warmup_s": warmup_s,
        "conserved": conserved,
        "counters": {
            "received": received,
            "consumed": consumed,
            "dropped_stale": dropped,
            "pending": pending,
            "rejected": rejected,
            "delivered_by_clean_lives": delivered_clean,
            "queued_by_all_lives": queued_all,
        },
        "exit_codes": {"learner": learner_code, **{f"actor{i}": c for i, c in codes.items()}},
        "rss_samples_kb": [[round(t, 1), r] for t, r in rss],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-s", type=float, default=1200.0)
    parser.add_argument("--kill-every-s", type=float, default=120.0)
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--warmup-s", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=Path("outputs/soak"))
    parser.add_argument("--result", default="soak.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    if args.actors < 2:
        parser.error("--actors must be at least 2 (actor 0 is never killed)")
    result = soak(args.out, args.duration_s, args.kill_every_s, args.actors, args.warmup_s)
    (RESULTS / args.result).write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k not in ("rss_samples_kb", "machine")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
