"""Smoke test of the SAC baseline (benchmarks/sac_pick_cube.py): a tiny run end to end, in seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import sac_pick_cube  # noqa: E402

from lerobot_pirl.tasks.pick_cube.sft import SFTConfig, collect_demonstrations  # noqa: E402

TINY = {
    "batch_size": 16,
    "latent_dim": 16,
    "state_encoder_hidden_dim": 16,
    "actor_network_kwargs": {"hidden_dims": [16, 16]},
    "critic_network_kwargs": {"hidden_dims": [16, 16]},
    "online_step_before_learning": 10,
    "utd_ratio": 2,
}


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown SAC setting"):
        sac_pick_cube.run_sac(seed=0, env_steps=10, eval_at=[10], eval_episodes=1, not_a_setting=1)
    with pytest.raises(ValueError, match="eval_at"):
        sac_pick_cube.run_sac(seed=0, env_steps=10, eval_at=[11], eval_episodes=1)


def test_tiny_sac_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # One demonstration instead of twenty keep the test fast; the wiring is the same.
    demos = collect_demonstrations(SFTConfig(demonstrations=1), chunk_size=1)
    monkeypatch.setattr(sac_pick_cube, "collect_demonstrations", lambda config, chunk_size: demos)

    result = sac_pick_cube.run_sac(
        seed=0, env_steps=40, eval_at=[20, 40], eval_episodes=1, max_episode_steps=15, **TINY
    )

    assert result["method"] == "sac/gaussian_actor"
    assert result["env_step_budget"] == 40
    points = result["evaluations"]
    assert [p["env_steps"] for p in points] == [0, 20, 40]
    # One update per env step once the online buffer holds online_step_before_learning transitions.
    assert [p["update"] for p in points] == [0, 20 - 10 + 1, 40 - 10 + 1]
    for point in points:
        assert point["episodes"] == 1
        assert 0.0 <= point["success_rate"] <= 1.0
        assert 1 <= point["mean_episode_steps"] <= 15
    assert sum(e["steps"] for e in result["training"]) <= 40
    settings = result["settings"]
    assert settings["algorithm"]["utd_ratio"] == 2
    assert settings["algorithm"]["temperature_init"] == 0.01  # our documented change
    assert settings["batch_size"] == 16
    assert settings["policy"]["latent_dim"] == 16
    json.dumps(result)  # the result is plain JSON
