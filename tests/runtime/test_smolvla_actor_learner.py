"""πRL on a SmolVLA checkpoint through the real learner and one actor: the same runtime as XVLA's
(policy from ``pretrained_path``, its own LeRobot processors, weights pushed over gRPC), two
updates, and a checkpoint stock LeRobot loads back as a ``SmolVLAPolicy``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.configs import free_port, write_json
from helpers.learner_process import checkpoint_steps, start_actor, start_learner, wait_all
from helpers.tiny_smolvla import tiny_smolvla_checkpoint

from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_pi_rl_trains_a_smolvla_with_the_learner_and_an_actor(tmp_path: Path) -> None:
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    env = {"type": "pirl_pick_cube", "episode_length": 8}
    checkpoint = tiny_smolvla_checkpoint(PickCubeEnvConfig(episode_length=8), tmp_path / "ckpt")
    config = {
        "output_dir": str(tmp_path / "out"),
        "recipe": "pi-rl",
        "seed": 0,
        "save_freq": 1,
        "policy": {"type": "smolvla", "pretrained_path": str(checkpoint)},
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

    saved = tmp_path / "out" / "checkpoints" / "last" / "pretrained_model"
    assert json.loads((saved / "config.json").read_text())["type"] == "smolvla"
    trained = SmolVLAPolicy.from_pretrained(str(saved))  # stock class, strict load
    start = SmolVLAPolicy.from_pretrained(str(checkpoint))
    trained_state, start_state = trained.state_dict(), start.state_dict()
    assert trained_state.keys() == start_state.keys()
    changed = [k for k in start_state if not torch.equal(start_state[k], trained_state[k])]
    frozen_vlm = [k for k in changed if ".vlm." in k and "lm_expert" not in k]
    assert changed and not frozen_vlm  # the update moved weights, never the frozen VLM's

    # Stock LeRobot deploys it: its processors load from the checkpoint offline, and stock
    # predict_action_chunk from zero noise gives the actor's deterministic actions.
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_pirl.runtime.envs import make_envs, task_description
    from lerobot_pirl.runtime.flow_policy import load_flow_policy

    preprocessor, postprocessor = make_pre_post_processors(trained.config, pretrained_path=str(saved))
    actor_policy, io = load_flow_policy(saved, PickCubeEnvConfig(episode_length=8))
    [inner] = make_envs(PickCubeEnvConfig(episode_length=8), 1)
    try:
        raw, _ = inner.reset(seed=[3])
        task = task_description(inner)
        zeros = torch.zeros(1, trained.config.chunk_size, trained.config.max_action_dim)
        with torch.no_grad():
            stock_batch = preprocessor({**preprocess_observation(raw), "task": [task]})
            stock = postprocessor(trained.eval().predict_action_chunk(stock_batch, noise=zeros))[0]
            chunk, _ = actor_policy.sample_actions(
                io.observation(raw, task), mode="deterministic", initial_noise=zeros
            )
    finally:
        inner.close()
    torch.testing.assert_close(torch.as_tensor(io.env_actions(chunk[0])), stock.float(), rtol=0, atol=1e-5)
