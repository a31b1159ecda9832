"""Start the learner shim as a real subprocess and stop it with a signal, all bounded in time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def start_learner(
    config_path: Path, log_path: Path, *extra_args: str, env: dict | None = None
) -> subprocess.Popen:
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "LEROBOT_PIRL_TORCH_THREADS": "1", **(env or {})}
    log = open(log_path, "w")  # noqa: SIM115 - closed by the OS when the child exits
    return subprocess.Popen(
        [sys.executable, "-m", "lerobot_pirl.runtime.learner", f"--config_path={config_path}", *extra_args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=run_env,
    )


def stop(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM, then wait; SIGKILL only if the learner ignores it (and the test fails on that)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise AssertionError(f"learner did not exit within {timeout}s of SIGTERM") from None


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def checkpoint_steps(output_dir: Path) -> list[int]:
    """Steps of the checkpoints LeRobot's learner wrote under ``output_dir``."""
    return sorted(
        json.loads(path.read_text())["step"]
        for path in (output_dir / "checkpoints").glob("*/training_state/training_step.json")
        if not path.parents[1].name.endswith(".partial")  # a checkpoint still being written
    )


def run_shim(
    module: str, config_path: Path, *args: str, timeout: float = 180.0
) -> subprocess.CompletedProcess:
    """Run ``python -m module --config_path=...`` to completion (for start-up errors), capturing output."""
    return subprocess.run(
        [sys.executable, "-m", module, f"--config_path={config_path}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def at_once[T](*runs: Callable[[], T]) -> list[T]:
    """Independent runs of programs (e.g. `run_shim`s), as many at a time as the machine has cores,
    results in order. A start spends most of its time importing torch and LeRobot on one core, so
    on a 2-core machine two starts take about the time of one."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda run: run(), runs))


def start_actor(config: Path, actor_id: int, log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """``lerobot-pirl-actor`` as a real subprocess (headless MuJoCo, one torch thread)."""
    log = open(log_path, "w")  # noqa: SIM115 - closed by the OS when the child exits
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lerobot_pirl.runtime.actor",
            f"--config_path={config}",
            f"--actor_id={actor_id}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "MUJOCO_GL": "osmesa",
            "PYOPENGL_PLATFORM": "osmesa",
            "OMP_NUM_THREADS": "1",
            "LEROBOT_PIRL_TORCH_THREADS": "1",
            **(env or {}),
        },
    )


def actor_counter(text: str, name: str) -> int:
    """The last value of counter ``name`` an actor logged (its final counters when it stopped)."""
    return int(re.findall(rf"'{name}': (\d+)", text)[-1])


def learner_final_counters(learner_log: str) -> tuple[int, ...]:
    """(updates, received, consumed, dropped, pending, rejected) from the learner's last line."""
    found = re.findall(
        r"stopped after (\d+) updates: received=(\d+) consumed=(\d+) dropped=(\d+) "
        r"pending=(\d+) rejected=(\d+)",
        learner_log,
    )
    return tuple(map(int, found[-1]))


def train_with_one_actor(
    config: Path, tmp_path: Path, trained, what: str, *, env: dict | None = None, timeout: float = 420
) -> tuple[str, str]:
    """A learner and actor 0 on ``config`` until ``trained(learner_log, actor_log)``; then SIGTERM the
    actor and the learner, assert both exited cleanly, and return (learner log, actor log)."""
    learner_log, actor_log = tmp_path / "learner.log", tmp_path / "actor0.log"
    learner = start_learner(config, learner_log, env=env)
    actor = start_actor(config, 0, actor_log, env=env)
    try:

        def done_or_died() -> bool:
            texts = [path.read_text() if path.exists() else "" for path in (learner_log, actor_log)]
            return trained(*texts) or None not in (learner.poll(), actor.poll())

        wait_for(done_or_died, timeout, what)
        assert learner.poll() is None, learner_log.read_text()[-3000:]
        assert actor.poll() is None, actor_log.read_text()[-3000:]
        actor.send_signal(signal.SIGTERM)
        actor_code = actor.wait(timeout=60)
        time.sleep(2)  # what the actor flushed on exit reaches the learner before it stops
    finally:
        if actor.poll() is None:
            actor.kill()
        learner_code = stop(learner, timeout=60)
    learner_text, actor_text = learner_log.read_text(), actor_log.read_text()
    assert actor_code == 0, actor_text[-3000:]
    assert learner_code == 0, learner_text[-3000:]
    return learner_text, actor_text


def assert_counts_conserved(learner_text: str, actor_text: str) -> tuple[int, ...]:
    """After a clean stop: everything the actor queued was delivered and received, nothing was
    rejected, and every received decision is consumed, dropped or pending. Returns the learner's
    final counters."""
    counters = learner_final_counters(learner_text)
    _, received, consumed, dropped, pending, rejected = counters
    queued = actor_counter(actor_text, "decisions_queued")
    assert received == actor_counter(actor_text, "decisions_delivered") == queued and rejected == 0
    assert received == consumed + dropped + pending
    assert actor_counter(actor_text, "weights_loaded") >= 2  # pushed weights reached the actor
    return counters


def wait_all(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    """Each process's exit code, waiting at most ``timeout`` s for each; any still running after
    that (or after a failure here) is killed, so no test leaves a process behind."""
    try:
        return [process.wait(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def install_distribution(site: Path, name: str, source: str) -> None:
    """Module ``name`` with ``source`` and its dist-info metadata under ``site``, as ``pip install``
    leaves a distribution (put ``site`` on PYTHONPATH): what LeRobot's plugin discovery finds."""
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(source)
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
