"""pi-rl on a second env type (gym-hil PandaArrangeBoxes, ``env.type="pirl_arrange_boxes"``), with its
own XVLA config (21-D state, 7-D action): a real learner and actor over localhost gRPC."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.configs import free_port, write_json
from helpers.learner_process import assert_counts_conserved, checkpoint_steps, train_with_one_actor

from lerobot_pirl.envs.arrange_boxes import ACTION_DIM, STATE_DIM
from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config
from lerobot_pirl.tasks.pick_cube.configs import learner_config


def test_the_arrange_boxes_env_is_built_by_lerobots_factory() -> None:
    import numpy as np

    from lerobot_pirl.envs.arrange_boxes import ArrangeBoxesEnvConfig
    from lerobot_pirl.runtime.envs import SingleEnv, make_envs, task_description

    config = ArrangeBoxesEnvConfig(episode_length=3, physics_dt=0.005)
    [vector_env] = make_envs(config, 1)
    try:
        assert task_description(vector_env) == "arrange the boxes"
        assert vector_env.single_action_space.shape == (ACTION_DIM,)
    finally:
        vector_env.close()
    with SingleEnv.make(config) as env:
        observation = env.reset(seed=0)
        assert observation["observation.state"].shape == (STATE_DIM,)
        assert observation["observation.images.front"].shape == (3, 16, 16)
        tcp = observation["observation.state"][15:18].numpy()
        for step in range(3):
            observation, reward, terminated, truncated, info = env.step(np.zeros(ACTION_DIM))
            assert reward == 0.0 and not terminated
            assert info == {"succeed": False, "is_success": False, "success": False}
            assert truncated == (step == 2)  # gymnasium's TimeLimit at env.episode_length
        # A zero action holds the arm: the TCP stays within a few millimetres.
        assert np.abs(observation["observation.state"][15:18].numpy() - tcp).max() < 5e-3


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_pi_rl_trains_on_a_second_env_type(tmp_path: Path) -> None:
    output_dir = tmp_path / "out"
    policy = tiny_xvla_config(
        STATE_DIM, ACTION_DIM, chunk_size=4, n_action_steps=2, num_denoising_steps=3, hidden_size=32, depth=1
    )
    data = learner_config(
        policy,
        output_dir,
        free_port(),
        noise_method="flow_sde",
        rollout_decisions=10,
        minibatch_size=5,
        max_updates=1000,
        value_hidden_dims=[32, 32],
        envs_per_actor=2,
    )
    data["env"] = {"type": "pirl_arrange_boxes", "episode_length": 10, "physics_dt": 0.005}
    config = write_json(tmp_path / "train_config.json", data)

    def trained(learner_log: str, actor_log: str) -> bool:
        pushed = any(int(v) >= 1 for v in re.findall(r"version=(\d+)", actor_log))
        return 3 in checkpoint_steps(output_dir) and pushed

    learner_text, actor_text = train_with_one_actor(
        config, tmp_path, trained, "3 pi-rl updates and an episode sampled with pushed weights"
    )
    updates, *_ = assert_counts_conserved(learner_text, actor_text)
    assert updates >= 3
    saved = json.loads(
        (output_dir / "checkpoints" / "last" / "pretrained_model" / "train_config.json").read_text()
    )
    assert saved["env"]["type"] == "pirl_arrange_boxes"
