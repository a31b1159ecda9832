"""``env.type = "gym_manipulator"``: LeRobot's ``make_robot_env`` + ``make_processors`` behind the
runtime's single-env interface, here on gym-hil's wrapped PandaPickCube (no robot, no teleop)."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_pirl.runtime.envs import make_envs, step_env, task_description
from lerobot_pirl.runtime.processors import PolicyIO


def _config(steps: int):
    from lerobot.envs.configs import HILSerlProcessorConfig, HILSerlRobotEnvConfig, ResetConfig

    # LeRobot's TimeLimitProcessorStep ends an episode after control_time_s · fps steps.
    return HILSerlRobotEnvConfig(
        name="gym_hil",
        task="PandaPickCube-v0",
        fps=10,
        processor=HILSerlProcessorConfig(reset=ResetConfig(control_time_s=steps / 10)),
    )


@pytest.mark.timeout(300)
def test_gym_manipulator_env_steps_through_lerobots_processors_with_same_step_autoreset() -> None:
    config = _config(steps=3)
    [env] = make_envs(config, 1)
    try:
        observation, _ = env.reset(seed=[0])
        # gym_manipulator's env processor already mapped gym-hil's keys and added the batch dim.
        assert observation["observation.state"].shape[0] == 1
        assert observation["observation.images.front"].shape[:2] == (1, 3)
        assert task_description(env) == ""
        action_dims = env.single_action_space.shape[0]
        results = [step_env(env, np.zeros(action_dims, dtype=np.float32)) for _ in range(3)]
        # LeRobot's TimeLimitProcessorStep counts the reset transition as a step too: a limit of
        # 3 ends the episode after 2 env steps; the third step is the next episode's first
        # (the autoreset happened in the step that ended the episode).
        assert [r.truncated for r in results] == [False, True, False]
        assert [r.final_observation is not None for r in results] == [False, True, False]
        assert results[1].info["intervention"] is False
        final = results[1].final_observation["observation.state"]
        assert final.shape == observation["observation.state"].shape
    finally:
        env.close()


def test_policy_io_feeds_gym_manipulator_observations_without_reprocessing() -> None:
    from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config

    policy_config = tiny_xvla_config(18, 4)
    io = PolicyIO.for_policy(policy_config, _config(steps=3))
    assert io.processed_observations
    state = np.linspace(-1, 1, 18, dtype=np.float32)[None]
    image = np.full((1, 3, 16, 16), 0.5, dtype=np.float32)
    batch = io.observation({"observation.state": state, "observation.images.front": image}, "pick")
    # The policy's own preprocessor ran (tokenised task) on the env's keys as they came.
    assert "observation.language.tokens" in batch
    assert batch["observation.state"].shape == (1, 18)
    assert batch["observation.images.front"].shape[:2] == (1, 3)


def _pi_rl_config(tmp_path, **top) -> dict:
    from helpers.configs import free_port

    from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config
    from lerobot_pirl.tasks.pick_cube.configs import learner_config

    # gym-hil's wrapped task through gym_manipulator: 18-D state, two 128 px cameras, 4-D action.
    policy = tiny_xvla_config(
        18, 4, image_size=128, chunk_size=4, n_action_steps=2, num_denoising_steps=3, hidden_size=32, depth=1
    )
    data = learner_config(
        policy,
        tmp_path / "out",
        free_port(),
        noise_method="flow_sde",
        rollout_decisions=4,
        minibatch_size=4,
        max_updates=1000,
        value_hidden_dims=[32, 32],
    )
    data["env"] = {
        "type": "gym_manipulator",
        "name": "gym_hil",
        "task": "PandaPickCube-v0",
        "fps": 10,
        "features": {"action": {"type": "ACTION", "shape": [4]}},
        "features_map": {"action": "action"},
        "processor": {"reset": {"control_time_s": 0.6}},  # LeRobot's time limit: 5-step episodes
    }
    return {**data, **top}


@pytest.mark.integration
def test_a_config_lerobot_cannot_save_is_refused_before_the_learner_starts(tmp_path) -> None:
    from helpers.configs import write_json
    from helpers.learner_process import run_shim

    config = write_json(tmp_path / "c.json", _pi_rl_config(tmp_path))
    result = run_shim("lerobot_pirl.runtime.learner", config)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot save env.processor.reset" in result.stderr and "save_checkpoint=false" in result.stderr


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_pi_rl_trains_on_a_gym_manipulator_env(tmp_path) -> None:
    import re

    from helpers.configs import write_json
    from helpers.learner_process import assert_counts_conserved, train_with_one_actor

    config = write_json(tmp_path / "c.json", _pi_rl_config(tmp_path, save_checkpoint=False))

    def trained(learner_log: str, actor_log: str) -> bool:
        pushed = any(int(v) >= 1 for v in re.findall(r"version=(\d+)", actor_log))
        return "[ON-POLICY LEARNER] update 2:" in learner_log and pushed

    learner_text, actor_text = train_with_one_actor(
        config, tmp_path, trained, "2 updates and an episode sampled with pushed weights"
    )
    updates, *_ = assert_counts_conserved(learner_text, actor_text)
    assert updates >= 2
