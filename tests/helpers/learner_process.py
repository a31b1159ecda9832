"""Start the learner shim as a real subprocess and stop it with a signal, all bounded in time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def start_learner(config_path: Path, log_path: Path, *extra_args: str, env: dict | None = None) -> subprocess.Popen:
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
