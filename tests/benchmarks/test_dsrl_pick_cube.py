"""Smoke tests of the DSRL benchmark (benchmarks/dsrl_pick_cube.py) and its lever study
(benchmarks/dsrl_levers.py): tiny runs end to end, in seconds."""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers.benchmarks import load_benchmark

from lerobot_pirl.tasks.pick_cube.configs import DSRL_SETTINGS

TINY = {
    "batch_size": 8,
    "latent_dim": 16,
    "state_encoder_hidden_dim": 16,
    "actor_network_kwargs": {"hidden_dims": [16, 16]},
    "critic_network_kwargs": {"hidden_dims": [16, 16]},
    "online_step_before_learning": 4,
}


def test_tiny_dsrl_run_records_diagnostics_and_the_demo_settings() -> None:
    dsrl = load_benchmark("dsrl_pick_cube")
    result = dsrl.run_dsrl(
        seed=0, env_steps=20, eval_at=[20], eval_episodes=1, max_episode_steps=10, diagnostics_every=3, **TINY
    )

    executed = result["settings"]["executed_steps_per_decision"]
    decisions = result["timing"]["decisions"]
    assert decisions == -(-20 // executed)  # the budget in env steps, decisions of H' steps each
    updates = decisions - TINY["online_step_before_learning"] + 1  # one per decision once learning starts
    assert [p["update"] for p in result["evaluations"]] == [0, updates]
    # A diagnostics row per 3 updates: SAC's own stats and the noise actions' size.
    rows = result["diagnostics"]
    assert [row["update"] for row in rows] == list(range(3, updates + 1, 3))
    for row in rows:
        assert row["loss_critic"] >= 0 and row["temperature"] > 0
        assert 0 <= row["action_saturated"] <= 1 and 0 < row["action_abs_mean"] <= 1
    # The demo's DSRL settings are the benchmark's, unless overridden.
    assert result["settings"]["algorithm"]["discount"] == DSRL_SETTINGS["discount"] == 0.9
    assert result["settings"]["algorithm"]["temperature_init"] == DSRL_SETTINGS["temperature_init"]
    assert result["machine"]["cores"] >= 1
    json.dumps(result)


@pytest.mark.integration
def test_a_lever_runs_through_the_benchmark_command_line(tmp_path) -> None:
    levers = load_benchmark("dsrl_levers")
    command = levers.command("discount0.99_scale1.0_sparse_reward")
    assert "--noise-scale=1.0" in command and "--shaping-coef=0.0" in command
    assert json.loads(command[command.index("--sac") + 1]) == {"discount": 0.99}

    # The same command, shrunk to a few env steps, parses and runs as the study would run it.
    tiny = [arg for arg in command if not arg.startswith(("--env-steps", "--eval-every", "--eval-episodes"))]
    tiny[tiny.index("--sac") + 1] = json.dumps({"discount": 0.99, **TINY})
    tiny += ["--env-steps=8", "--eval-every=8", "--eval-episodes=1"]
    out = subprocess.run(tiny, capture_output=True, text=True, timeout=300, check=True).stdout
    run = json.loads(out)
    assert run["settings"]["algorithm"]["discount"] == 0.99
    assert run["settings"]["shaping_coef"] == 0.0
    assert run["settings"]["noise_layout"]["noise_scale"] == 1.0
    assert [e["env_steps"] for e in run["evaluations"]] == [0, 8]  # H' = 2 divides 8: no overshoot

    # The summary reads saved runs (here: that one) into the study's table.
    levers.RESULTS = tmp_path
    (tmp_path / "discount0.99_scale1.0_sparse_reward.json").write_text(out)
    summary = levers.summarize()
    row = summary["levers"]["discount0.99_scale1.0_sparse_reward"]
    assert row["final"] == run["evaluations"][-1]["success_rate"]
    assert "discount0.99_scale1.0_sparse_reward" in levers.markdown_table(summary)
    assert summary["machine"] == run["machine"]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
