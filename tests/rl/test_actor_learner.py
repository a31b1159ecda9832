"""End to end over gRPC: the learner shim as a real process, an actor stand-in using LeRobot transport."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from helpers.configs import ACTION_DIM, STATE_DIM, free_port, sac_learner_config, write_json
from helpers.grpc_client import LearnerClient, random_episode
from helpers.learner_process import start_learner, stop


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _checkpoint_steps(output_dir: Path) -> list[int]:
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    steps = []
    for step_file in root.glob("*/training_state/training_step.json"):
        steps.append(json.loads(step_file.read_text())["step"])
    return sorted(steps)


@pytest.mark.timeout(240)
def test_learner_trains_sac_over_grpc(tmp_path: Path) -> None:
    port = free_port()
    output_dir = tmp_path / "out"
    config = write_json(tmp_path / "train_config.json", sac_learner_config(output_dir, port))
    learner = start_learner(config, tmp_path / "learner.log", "--recipe=sac")
    client = LearnerClient(port)
    try:
        assert client.connect(attempts=30), (tmp_path / "learner.log").read_text()[-3000:]
        client.start()
        initial = client.next_parameters(timeout=60)["policy"]
        episodes = [random_episode(8, STATE_DIM, ACTION_DIM, seed=s) for s in range(3)]
        for episode in episodes:
            client.send(episode)

        # Checkpoints are written at steps 4 and 8 (save_freq=4, online_steps=8).
        _wait_for(lambda: 8 in _checkpoint_steps(output_dir), 120, "the step-8 checkpoint")
        latest = client.next_parameters(timeout=30)["policy"]
        changed = [k for k in initial if not torch.equal(initial[k], latest[k])]
        assert changed, "pushed actor parameters never changed: no SAC update reached the actors"

        info = json.loads((output_dir / "dataset" / "meta" / "info.json").read_text())
        assert info["total_frames"] == sum(len(e) for e in episodes)  # every transition received
        algorithm_config = json.loads(
            (output_dir / "checkpoints" / "last" / "algorithm" / "config.json").read_text()
        )
        assert algorithm_config["type"] == "sac"
    finally:
        client.close()
        code = stop(learner)
    log = (tmp_path / "learner.log").read_text()
    assert code == 0, log[-3000:]
    assert "Number of optimization step: 8" in log
