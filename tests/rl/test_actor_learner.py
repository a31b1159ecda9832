"""End to end over gRPC: the learner shim as a real process, an actor stand-in using LeRobot transport."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.configs import ACTION_DIM, STATE_DIM, free_port, sac_learner_config, write_json
from helpers.grpc_client import LearnerClient, random_episode
from helpers.learner_process import checkpoint_steps, start_learner, stop, wait_for


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
        wait_for(lambda: 8 in checkpoint_steps(output_dir), 120, "the step-8 checkpoint")
        latest = client.next_parameters(timeout=30)["policy"]
        changed = [k for k in initial if not torch.equal(initial[k], latest[k])]
        assert changed, "pushed actor parameters never changed: no SAC update reached the actors"

    finally:
        client.close()
        code = stop(learner)
    log = (tmp_path / "learner.log").read_text()
    assert code == 0, log[-3000:]
    # The learner saves its replay buffer with each checkpoint: every transition sent was received.
    info = json.loads((output_dir / "dataset" / "meta" / "info.json").read_text())
    assert info["total_frames"] == sum(len(e) for e in episodes)
    algorithm_config = json.loads(
        (output_dir / "checkpoints" / "000008" / "algorithm" / "config.json").read_text()
    )
    assert algorithm_config["type"] == "sac"
    assert "Number of optimization step: 8" in log
