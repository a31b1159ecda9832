"""Start the learner shim as a real subprocess and stop it with a signal, all bounded in time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
