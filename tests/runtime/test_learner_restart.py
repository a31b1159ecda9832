"""A pi-rl learner killed with SIGKILL resumes from its last checkpoint with identical recipe state."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from helpers.configs import free_port, pi_rl_learner_config, write_json
from helpers.grpc_client import LearnerClient
from helpers.learner_process import run_shim, start_learner, stop, wait_for
from helpers.pi_rl_decisions import record_episode
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy
from safetensors.torch import load_file

from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe


def _local_actor(data: dict) -> PiRLRecipe:
    import draccus
    from lerobot.configs.policies import PreTrainedConfig

    with draccus.config_type("json"):
        policy = XVLAPolicy(draccus.decode(PreTrainedConfig, data["policy"]))
    algo = {k: v for k, v in data["algorithm"].items() if k != "type"}
    return PiRLRecipe(policy, PiRLConfig(policy_config=policy.config, **algo))


def _drive(port: int, local: PiRLRecipe, updates: int, log: Path, first_episode: int) -> list[int]:
    """Act as two actors for ``updates`` rollouts; returns the policy versions received."""
    client = LearnerClient(port)
    versions = []
    try:
        assert client.connect(attempts=30), log.read_text()[-3000:]
        client.start()
        for update in range(updates):
            weights = client.next_parameters(timeout=120)
            local.load_actor_weights(weights, device="cpu")
            versions.append(int(weights["policy_version"]))
            for actor in range(2):
                seed = 10 * (first_episode + update) + actor
                states = torch.rand(4, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1
                client.send(
                    record_episode(
                        local, states, actor_id=actor, episode_id=first_episode + update, seed=seed
                    )
                )
        versions.append(int(client.next_parameters(timeout=120)["policy_version"]))
    finally:
        client.close()
    return versions


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_learner_killed_and_resumed_continues_from_its_checkpoint(tmp_path: Path) -> None:
    output_dir = tmp_path / "out"
    port = free_port()
    data = pi_rl_learner_config(output_dir, port, max_updates=4)
    config = write_json(tmp_path / "train_config.json", data)
    local = _local_actor(data)

    learner = start_learner(config, tmp_path / "learner1.log")
    try:
        assert _drive(port, local, 2, tmp_path / "learner1.log", first_episode=0) == [0, 1, 2]
        last = output_dir / "checkpoints" / "last"
        wait_for(lambda: last.is_symlink() and last.resolve().name == "000002", 60, "checkpoint 2 as last")
        learner.send_signal(signal.SIGKILL)
        learner.wait(timeout=30)
    finally:
        stop(learner)
    counters = load_file(str(output_dir / "checkpoints" / "last" / "algorithm" / "model.safetensors"))[
        "counters"
    ]
    assert counters.tolist() == [2, 16, 0, 16]  # version, received, dropped, consumed

    learner = start_learner(config, tmp_path / "learner2.log", "--resume=true")
    try:
        # The resumed learner pushes version 2 (not 0) and trains on: updates 3 and 4.
        assert _drive(port, local, 2, tmp_path / "learner2.log", first_episode=2) == [2, 3, 4]
        assert learner.wait(timeout=120) == 0
    finally:
        stop(learner)
    log = (tmp_path / "learner2.log").read_text()
    assert "resumed from" in log and "at update 2" in log
    step_4 = json.loads(
        (output_dir / "checkpoints" / "000004" / "training_state" / "training_step.json").read_text()
    )
    assert step_4["metrics"]["decisions_consumed_total"] == 32  # counters carried over the restart
    # Bitwise equality of the resumed update itself: tests/recipes/test_pi_rl_recipe.py.


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    data = pi_rl_learner_config(tmp_path / "out", free_port())
    (tmp_path / "out").mkdir()
    config = write_json(tmp_path / "train_config.json", data)
    result = run_shim("lerobot_pirl.runtime.learner", config, "--resume=true", timeout=100)
    assert result.returncode == 2
    assert "lerobot-pirl-learner: error: resume=true but there is no checkpoint at" in result.stderr


def test_env_step_counter_resumes_from_the_checkpoint_metrics(tmp_path: Path) -> None:
    """``max_env_steps`` budgets survive a restart: the counter comes back from training_step.json."""
    from lerobot_pirl.runtime.on_policy_learner import _restored_env_steps

    state_dir = tmp_path / "training_state"
    state_dir.mkdir()
    (state_dir / "training_step.json").write_text(
        json.dumps({"step": 3, "metrics": {"env_steps_total": 1234.0}})
    )
    assert _restored_env_steps(tmp_path) == 1234
    (state_dir / "training_step.json").write_text(json.dumps({"step": 3, "metrics": {}}))
    assert _restored_env_steps(tmp_path) == 0  # checkpoints written before the counter existed


def test_the_update_log_has_each_instructions_sampled_success_for_a_multi_task_env() -> None:
    from lerobot_pirl.runtime.on_policy_learner import _episode_summary

    messages = [
        {"Episodic reward": 1.0, "success": 1.0, "task": "reach"},
        {"Episodic reward": 0.0, "success": 0.0, "task": "reach"},
        {"Episodic reward": 0.0, "success": 0.0, "task": "reach"},
        {"Episodic reward": 1.0, "success": 1.0, "task": "push"},
    ]
    summary = _episode_summary(messages)
    assert summary["success_rate"] == 0.5 and summary["episodes"] == 4.0
    assert summary["success_rate/reach"] == pytest.approx(1 / 3) and summary["success_rate/push"] == 1.0
    single = _episode_summary([{**m, "task": "reach"} for m in messages])
    assert not [key for key in single if key.startswith("success_rate/")]  # one task: no split
