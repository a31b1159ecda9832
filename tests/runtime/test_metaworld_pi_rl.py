"""πRL on MetaWorld through the real learner and one actor: two tasks spread over the actor's envs,
the lean camera on (the pixels path), two updates, both processes exiting 0 by themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.configs import free_port, write_json
from helpers.learner_process import checkpoint_steps, start_actor, start_learner, wait_all

from lerobot_pirl.envs.metaworld import MetaWorldEnvConfig
from lerobot_pirl.runtime.random_checkpoint import random_checkpoint


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_pi_rl_trains_on_two_metaworld_tasks_with_the_camera(tmp_path: Path) -> None:
    env = {
        "type": "pirl_metaworld",
        "task": "reach-v3,push-v3",
        "obs_type": "pixels_agent_pos",
        "episode_length": 10,
    }
    checkpoint = random_checkpoint(
        MetaWorldEnvConfig(task=env["task"], obs_type=env["obs_type"]), tmp_path / "ckpt", seed=1
    )
    config = {
        "output_dir": str(tmp_path / "out"),
        "recipe": "pi-rl",
        "seed": 0,
        "save_freq": 1,
        "policy": {"type": "xvla", "pretrained_path": str(checkpoint)},
        "env": env,
        "algorithm": {
            "learner_port": free_port(),
            "envs_per_actor": 2,
            "rollout_decisions": 8,
            "minibatch_size": 4,
            "update_epochs": 1,
            "max_updates": 2,
        },
    }
    path = write_json(tmp_path / "train_config.json", config)
    learner = start_learner(path, tmp_path / "learner.log")
    actor = start_actor(path, 0, tmp_path / "actor.log")
    codes = wait_all([learner, actor], timeout=420)
    learner_log, actor_log = (tmp_path / "learner.log").read_text(), (tmp_path / "actor.log").read_text()
    assert codes == [0, 0], learner_log[-2500:] + "\n\n" + actor_log[-2500:]
    assert 2 in checkpoint_steps(tmp_path / "out")
    assert "the learner finished training after 2 updates" in actor_log
    updates = [
        json.loads(line) for line in (tmp_path / "out" / "logs" / "metrics.jsonl").read_text().splitlines()
    ]
    from lerobot.envs.metaworld import TASK_DESCRIPTIONS

    per_task = {key for update in updates for key in update if key.startswith("success_rate/")}
    assert per_task == {f"success_rate/{TASK_DESCRIPTIONS[t]}" for t in ("reach-v3", "push-v3")}
    saved = json.loads(
        (tmp_path / "out" / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text()
    )
    assert saved["input_features"]["observation.images.front"]["shape"] == [3, 64, 64]
