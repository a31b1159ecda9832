"""examples/custom_recipe: a separately installed package that adds `recipe=bc`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.configs import ACTION_DIM, STATE_DIM, free_port, sac_learner_config, write_json
from helpers.grpc_client import LearnerClient, random_episode
from helpers.learner_process import checkpoint_steps, start_learner, stop, wait_for
from safetensors.torch import load_file

from lerobot_pirl import discover
from lerobot_pirl.runtime.cli import select_recipe

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_recipe"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the example (a real wheel build) into its own site directory."""
    site = tmp_path_factory.mktemp("example_site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        timeout=300,
    )
    return site


@pytest.mark.integration
def test_example_is_discovered_and_selected_from_a_learner_config(
    installed_example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(installed_example))
    catalog = discover(blocked=())
    entry = catalog.resolve("bc")
    assert entry.distribution == "lerobot-recipe-bc"
    path = write_json(
        tmp_path / "c.json", {**sac_learner_config(tmp_path / "out", free_port()), "recipe": "bc"}
    )
    selected, args = select_recipe([f"--config_path={path}"], catalog)
    assert selected is entry and "--algorithm.type=bc" in args


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_learner_runs_the_example_update_step(installed_example: Path, tmp_path: Path) -> None:
    port = free_port()
    output_dir = tmp_path / "out"
    config = write_json(tmp_path / "c.json", {**sac_learner_config(output_dir, port), "recipe": "bc"})
    learner = start_learner(config, tmp_path / "learner.log", env={"PYTHONPATH": str(installed_example)})
    client = LearnerClient(port)
    try:
        assert client.connect(attempts=30), (tmp_path / "learner.log").read_text()[-3000:]
        client.start()
        initial = client.next_parameters(timeout=60)["policy"]
        for seed in range(3):
            client.send(random_episode(8, STATE_DIM, ACTION_DIM, seed=seed))
        wait_for(lambda: 8 in checkpoint_steps(output_dir), 120, "the step-8 checkpoint")
        latest = client.next_parameters(timeout=30)["policy"]
    finally:
        client.close()
        code = stop(learner)
    assert code == 0, (tmp_path / "learner.log").read_text()[-3000:]
    step8 = output_dir / "checkpoints" / "000008" / "algorithm"
    assert json.loads((step8 / "config.json").read_text())["type"] == "bc"
    # The recipe's own counter, checkpointed through its state_dict: one update_step per learner step.
    assert int(load_file(str(step8 / "model.safetensors"))["updates"]) == 8
    assert any(not torch.equal(initial[k], latest[k]) for k in initial)
