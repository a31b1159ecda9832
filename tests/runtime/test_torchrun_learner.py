"""``lerobot-pirl-learner`` under ``torchrun --nproc_per_node=2`` (gloo): an actor trains it as it
trains one process, its checkpoints resume in one process and back, and a dying rank stops the run
with the rank named and the last checkpoint intact."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.configs import free_port, pi_rl_learner_config, write_json
from helpers.grpc_client import LearnerClient
from helpers.learner_process import checkpoint_steps, start_actor, start_learner, stop, wait_all, wait_for
from helpers.pi_rl_decisions import record_episode

from lerobot_pirl.envs.pick_cube import ACTION_DIM, STATE_DIM
from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe

RANK_1 = "[ON-POLICY LEARNER rank 1/2]"


def start_torchrun_learner(config: Path, log_path: Path, *extra_args: str) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=2 -m lerobot_pirl.runtime.learner`` (one thread per rank)."""
    log = open(log_path, "w")  # noqa: SIM115 - closed by the OS when the child exits
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "lerobot_pirl.runtime.learner", f"--config_path={config}", *extra_args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "LEROBOT_PIRL_TORCH_THREADS": "1"},
    )


def _config(tmp_path: Path, name: str, output_dir: Path, port: int, **fields) -> tuple[Path, dict]:
    data = pi_rl_learner_config(
        output_dir,
        port,
        state_dim=STATE_DIM,
        action_dim=ACTION_DIM,
        noise_method="flow_sde",
        rollout_decisions=8,
        minibatch_size=4,
        env={"episode_length": 16, "physics_dt": 0.005},
        **fields,
    )
    return write_json(tmp_path / name, data), data


def _local_actor(data: dict) -> PiRLRecipe:
    """The test's stand-in actor: the config's policy, weights only from the learner's pushes."""
    import draccus
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    with draccus.config_type("json"):
        policy = XVLAPolicy(draccus.decode(PreTrainedConfig, data["policy"]))
    algo = {k: v for k, v in data["algorithm"].items() if k != "type"}
    return PiRLRecipe(policy, PiRLConfig(policy_config=policy.config, **algo))


def _drive_one_update(port: int, local: PiRLRecipe, log: Path, seed: int) -> int:
    """Connect as two actors, load the pushed weights, send one rollout (2 × 4 decisions) and wait
    for the weights of the update it made; returns the version of the weights received first."""
    client = LearnerClient(port)
    try:
        assert client.connect(attempts=60), log.read_text()[-3000:]
        client.start()
        weights = client.next_parameters(timeout=180)
        version = int(weights["policy_version"])
        local.load_actor_weights(weights, device="cpu")
        for actor in range(2):
            gen = torch.Generator().manual_seed(seed + actor)
            states = torch.rand(4, STATE_DIM, generator=gen) * 2 - 1
            client.send(record_episode(local, states, actor_id=actor, episode_id=seed, seed=seed + actor))
        updated = client.next_parameters(timeout=180)  # the client stays open until both arrived
        assert int(updated["policy_version"]) == version + 1, log.read_text()[-3000:]
        return version
    finally:
        client.close()


def _metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "logs" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_an_actor_trains_a_two_rank_learner_whose_checkpoints_resume_in_one_process_and_back(
    tmp_path: Path,
) -> None:
    output_dir = tmp_path / "out"
    port = free_port()
    config, data = _config(tmp_path, "train.json", output_dir, port, max_updates=2)

    # An actor process and a 2-rank learner, as with a 1-process learner: 2 updates, both exit 0.
    learner = start_torchrun_learner(config, tmp_path / "learner.log")
    actor = start_actor(config, 0, tmp_path / "actor.log")
    codes = wait_all([learner, actor], timeout=480)
    learner_log, actor_log = (tmp_path / "learner.log").read_text(), (tmp_path / "actor.log").read_text()
    assert codes == [0, 0], learner_log[-3000:] + "\n\n" + actor_log[-3000:]
    assert "lerobot-pirl-actor: the learner finished training after 2 updates" in actor_log
    assert "data-parallel over 2 ranks (gloo)" in learner_log
    assert f"{RANK_1} pid" in learner_log and f"{RANK_1} stopped after 2 updates" in learner_log
    assert sorted(set(checkpoint_steps(output_dir))) == [1, 2]  # ("last" links to 2)
    updates = _metrics(output_dir)
    assert [u["update"] for u in updates] == [1, 2]
    assert all(key in updates[-1] for key in ("loss_actor", "approx_kl", "clip_frac", "explained_variance"))
    # Rank 1 wrote nothing: the run's files are rank 0's logs and checkpoints.
    assert sorted(p.name for p in output_dir.iterdir()) == ["checkpoints", "logs"]
    logs = sorted(p.name for p in (output_dir / "logs").iterdir())
    assert logs == ["actor_0.log", "learner.log", "metrics.jsonl"]  # the actor's, and rank 0's

    # The 2-rank checkpoint resumes in one process (update 3) ...
    local = _local_actor(data)
    config, _ = _config(tmp_path, "resume3.json", output_dir, port, max_updates=3)
    learner = start_learner(config, tmp_path / "learner3.log", "--resume=true")
    try:
        assert _drive_one_update(port, local, tmp_path / "learner3.log", seed=30) == 2
        assert learner.wait(timeout=180) == 0, (tmp_path / "learner3.log").read_text()[-3000:]
    finally:
        stop(learner)
    assert "resumed from" in (tmp_path / "learner3.log").read_text()
    assert 3 in checkpoint_steps(output_dir)

    # ... and that checkpoint in two ranks again (update 4).
    config, _ = _config(tmp_path, "resume4.json", output_dir, port, max_updates=4)
    learner = start_torchrun_learner(config, tmp_path / "learner4.log", "--resume=true")
    try:
        assert _drive_one_update(port, local, tmp_path / "learner4.log", seed=40) == 3
        assert learner.wait(timeout=180) == 0, (tmp_path / "learner4.log").read_text()[-3000:]
    finally:
        stop(learner)
    log4 = (tmp_path / "learner4.log").read_text()
    assert "at update 3" in log4 and f"{RANK_1} stopped after 1 updates" in log4
    assert 4 in checkpoint_steps(output_dir)
    step_4 = json.loads(
        (output_dir / "checkpoints" / "000004" / "training_state" / "training_step.json").read_text()
    )
    assert step_4["metrics"]["policy_version"] == 4.0


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_rank_that_dies_stops_the_learner_and_leaves_the_last_checkpoint_resumable(tmp_path: Path) -> None:
    from lerobot_pirl.runtime.on_policy_learner import _check_checkpoint

    output_dir = tmp_path / "out"
    port = free_port()
    config, data = _config(tmp_path, "train.json", output_dir, port, max_updates=100)
    log = tmp_path / "learner.log"
    learner = start_torchrun_learner(config, log)
    try:
        assert _drive_one_update(port, _local_actor(data), log, seed=10) == 0
        wait_for(lambda: 1 in checkpoint_steps(output_dir), 180, "checkpoint 1")
        wait_for(lambda: f"{RANK_1} pid" in log.read_text(), 60, "rank 1's pid line")
        rank_1 = int(re.search(re.escape(RANK_1) + r" pid (\d+)", log.read_text()).group(1))
        os.kill(rank_1, signal.SIGKILL)
        code = learner.wait(timeout=120)  # torchrun ends rank 0 and exits
    finally:
        stop(learner)
    text = log.read_text()
    assert code != 0, text[-3000:]
    assert "local_rank: 1" in text and "Signal 9 (SIGKILL)" in text, text[-3000:]
    last = output_dir / "checkpoints" / "last"
    assert last.resolve().name == "000001"
    _check_checkpoint(last)  # complete: resume=true would start from it
    assert not list((output_dir / "checkpoints").glob("*.partial"))
