"""End to end over gRPC: the learner shim as a real process, an actor stand-in using LeRobot transport."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.configs import ACTION_DIM, STATE_DIM, free_port, sac_learner_config, write_json
from helpers.grpc_client import LearnerClient, random_episode
from helpers.learner_process import checkpoint_steps, start_learner, stop, wait_for


@pytest.mark.integration
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


@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.parametrize("noise_method", ["flow_noise", "flow_sde"])
def test_pi_rl_learner_trains_xvla_from_actor_decisions_over_grpc(
    tmp_path: Path, noise_method: str, device: str
) -> None:
    """The pi-rl learner process (its policy on ``device``): decisions in over gRPC, PPO updates,
    versioned weights out (always as CPU tensors)."""
    from helpers.configs import pi_rl_learner_config
    from helpers.pi_rl_decisions import record_episode
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
    from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe

    port = free_port()
    output_dir = tmp_path / "out"
    data = pi_rl_learner_config(output_dir, port, policy={"device": device}, noise_method=noise_method)
    config = write_json(tmp_path / "train_config.json", data)
    learner = start_learner(config, tmp_path / "learner.log")
    client = LearnerClient(port)

    # The actor's copy of the policy: same architecture, weights only from the learner's pushes.
    torch.manual_seed(1234)
    local_policy = XVLAPolicy(tiny_config_from(data))
    algo = {k: v for k, v in data["algorithm"].items() if k != "type"}
    local = PiRLRecipe(local_policy, PiRLConfig(policy_config=local_policy.config, **algo))
    pushed_versions, pushed_policies = [], []
    try:
        assert client.connect(attempts=30), (tmp_path / "learner.log").read_text()[-3000:]
        client.start()
        for update in range(3):
            weights = client.next_parameters(timeout=120)
            local.load_actor_weights(weights, device="cpu")
            pushed_versions.append(int(weights["policy_version"]))
            pushed_policies.append(weights["policy"])
            for actor_episode in range(2):
                gen = torch.Generator().manual_seed(10 * update + actor_episode)
                states = torch.rand(4, 3, generator=gen) * 2 - 1
                client.send(
                    record_episode(
                        local,
                        states,
                        actor_id=actor_episode,
                        episode_id=update,
                        seed=10 * update + actor_episode,
                    )
                )
        final = client.next_parameters(timeout=120)
        assert learner.wait(timeout=120) == 0, (tmp_path / "learner.log").read_text()[-3000:]
    finally:
        client.close()
        stop(learner)

    assert pushed_versions == [0, 1, 2] and int(final["policy_version"]) == 3
    first, last = pushed_policies[0], final["policy"]
    assert any(not torch.equal(first[k], last[k]) for k in first if k.startswith("model.transformer"))
    assert all(torch.equal(first[k], last[k]) for k in first if k.startswith("model.vlm"))  # frozen
    assert {value.device.type for value in last.values()} == {"cpu"}  # actors need no GPU

    checkpoint = output_dir / "checkpoints" / "000003"
    step = json.loads((checkpoint / "training_state" / "training_step.json").read_text())
    metrics = step["metrics"]
    assert step["step"] == 3
    assert metrics["decisions_consumed_total"] == 24 and metrics["decisions_received_total"] == 24
    assert metrics["dropped_stale_total"] == 0 and metrics["rejected_transitions_total"] == 0
    for key in (
        "loss_actor",
        "loss_value",
        "approx_kl",
        "clip_frac",
        "explained_variance",
        "pi_rl_grad_norm",
    ):
        assert key in metrics, key
    # The policy checkpoint is a stock XVLA checkpoint, equal to the weights pushed last.
    stock = XVLAPolicy.from_pretrained(checkpoint / "pretrained_model")
    assert stock.config.type == "xvla"
    assert all(torch.equal(v, last[k]) for k, v in stock.state_dict().items())
    log = (tmp_path / "learner.log").read_text()
    assert "[ON-POLICY LEARNER] update 3:" in log and "loss_actor=" in log


def tiny_config_from(data: dict):
    """Decode the policy block of a learner config into an XVLAConfig (what the learner builds)."""
    import draccus
    from lerobot.configs.policies import PreTrainedConfig

    with draccus.config_type("json"):
        return draccus.decode(PreTrainedConfig, data["policy"])
