"""The demo's child processes: how they are started, watched and stopped, and the errors that end
a demo (shared by the πRL and DSRL demos and the soak benchmark)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig
from lerobot_pirl.tasks.pick_cube.sft import PROVENANCE_FILE


class DemoError(RuntimeError):
    """A demo that cannot start or whose processes failed; the message names the log to read."""


def child_env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "LEROBOT_PIRL_TORCH_THREADS": "1",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa"),
        "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "osmesa"),
        "HF_HUB_OFFLINE": "1",
    }


TRAINING_NICENESS = 5
"""Learner and actors run this much nicer than the evaluator: on a machine with fewer cores than
processes, an evaluation then takes about one core and its result shows soon after its checkpoint,
instead of queueing behind training (the total work, hence the run's length, is the same)."""


def spawn(args: list[str], log_path: Path, niceness: int = 0) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(),
        preexec_fn=(lambda: os.nice(niceness)) if niceness else None,  # in the child, before exec
    )


def terminate(processes: list[subprocess.Popen], timeout: float = 30.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def recorded_evaluation(
    checkpoint: Path, episodes: int, max_episode_steps: int, physics_dt: float
) -> dict[str, Any] | None:
    """The checkpoint's provenance evaluation, if it is exactly the one the demo would run."""
    path = checkpoint / PROVENANCE_FILE
    if not path.is_file():
        return None
    evaluation = json.loads(path.read_text()).get("evaluation", {})
    recorded = (
        evaluation.get("episodes"),
        evaluation.get("max_episode_steps"),
        evaluation.get("physics_dt", PickCubeEnvConfig.physics_dt),
    )
    return evaluation if recorded == (episodes, max_episode_steps, physics_dt) else None


def supervise(learner: subprocess.Popen, actors: list[subprocess.Popen], out: Path) -> None:
    """Stop the actors once the learner is done; raise if any process died on its own."""
    if learner.poll() is not None and any(a.poll() is None for a in actors):
        terminate(actors)  # the learner reached its budget: stop acting
    if learner.poll() not in (None, 0):
        raise DemoError(f"the learner exited with code {learner.returncode}; see {out / 'learner.log'}")
    for i, actor in enumerate(actors):  # an actor exits 0 by itself once the learner announces the end
        if learner.poll() is None and actor.poll() not in (None, 0):
            raise DemoError(f"actor {i} exited with code {actor.returncode}; see {out / f'actor_{i}.log'}")
