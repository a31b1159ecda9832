"""The README's "Your own env and checkpoint", walked as a new user would: a third-party
``lerobot_env_*`` distribution with its own env type and success key, the README's config and its
commands verbatim (random checkpoint, learner, one actor), and both processes exiting 0 by themselves
after two updates."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.configs import free_port, write_json
from helpers.learner_process import actor_counter, checkpoint_steps, install_distribution, wait_all

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

USER_ENV_PACKAGE = textwrap.dedent(
    '''
    """A user's env: a point on a plane that must reach a target; success is info["reached"]."""
    from dataclasses import dataclass, field

    import gymnasium as gym
    import numpy as np
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.envs.configs import EnvConfig


    class ReachPoint(gym.Env):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

        def __init__(self, render_mode=None):
            self.observation_space = gym.spaces.Dict(
                {
                    "agent_pos": gym.spaces.Box(-1, 1, (4,), np.float32),
                    "pixels": gym.spaces.Dict({"top": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)}),
                }
            )
            self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
            self.task_description = "move to the target"

        def _obs(self):
            state = np.concatenate([self.position, self.target]).astype(np.float32)
            return {"agent_pos": state, "pixels": {"top": np.zeros((16, 16, 3), np.uint8)}}

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.position = self.np_random.uniform(-0.5, 0.5, 2)
            self.target = self.np_random.uniform(-0.5, 0.5, 2)
            return self._obs(), {}

        def step(self, action):
            self.position = np.clip(self.position + 0.1 * np.clip(action, -1, 1), -1, 1)
            reached = bool(np.linalg.norm(self.position - self.target) < 0.15)
            return self._obs(), float(reached), reached, False, {"reached": reached}

        def render(self):
            return np.zeros((16, 16, 3), np.uint8)


    gym.register(id="ReachPoint-v0", entry_point=ReachPoint)


    @EnvConfig.register_subclass("my_env")
    @dataclass
    class ReachPointConfig(EnvConfig):
        task: str | None = "ReachPoint-v0"
        fps: int = 10
        episode_length: int = 30
        features: dict = field(
            default_factory=lambda: {
                "action": PolicyFeature(type=FeatureType.ACTION, shape=(2,)),
                "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(4,)),
                "pixels/top": PolicyFeature(type=FeatureType.VISUAL, shape=(16, 16, 3)),
            }
        )
        features_map: dict = field(
            default_factory=lambda: {
                "action": "action",
                "agent_pos": "observation.state",
                "pixels/top": "observation.images.top",
            }
        )

        @property
        def package_name(self):
            return "lerobot_env_reach_point"

        @property
        def gym_id(self):
            return "ReachPoint-v0"

        @property
        def gym_kwargs(self):
            return {"max_episode_steps": self.episode_length}
    '''
)


def _readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Your own env and checkpoint", 1)[1].split("\n## ", 1)[0]


def _readme_config_and_commands() -> tuple[dict, list[list[str]]]:
    section = _readme_section()
    (config,) = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]
    commands = [
        shlex.split(line)
        for block in re.findall(r"```bash\n(.*?)```", section, re.S)
        for line in textwrap.dedent(block).splitlines()
        if line.startswith("lerobot-pirl")
    ]
    return config, commands


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_readme_path_with_a_third_party_env_trains_and_both_processes_exit_by_themselves(
    tmp_path: Path,
) -> None:
    install_distribution(tmp_path / "site", "lerobot_env_reach_point", USER_ENV_PACKAGE)
    config, commands = _readme_config_and_commands()
    assert [c[0] for c in commands] == ["lerobot-pirl", "lerobot-pirl-learner", "lerobot-pirl-actor"]
    # The README's config, with this test's port and a small budget (two updates of 8 decisions).
    config["algorithm"].update(
        learner_port=free_port(), max_updates=2, rollout_decisions=8, minibatch_size=4, update_epochs=1
    )
    config["env"]["episode_length"] = 10
    write_json(tmp_path / "train_config.json", config)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path / "site"), os.environ.get("PYTHONPATH")) if p),
        "OMP_NUM_THREADS": "1",
        "LEROBOT_PIRL_TORCH_THREADS": "1",
    }

    def start(command: list[str], log: str) -> subprocess.Popen:
        out = open(tmp_path / log, "w")  # noqa: SIM115 - closed by the OS when the child exits
        return subprocess.Popen(
            [str(BIN / command[0]), *command[1:]], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )

    checkpoint = start(commands[0], "checkpoint.log")
    assert checkpoint.wait(timeout=180) == 0, (tmp_path / "checkpoint.log").read_text()[-3000:]
    learner = start(commands[1], "learner.log")
    actor = start(commands[2], "actor.log")
    codes = wait_all([learner, actor], timeout=420)
    learner_log, actor_log = (tmp_path / "learner.log").read_text(), (tmp_path / "actor.log").read_text()
    assert codes == [0, 0], learner_log[-2500:] + "\n\n" + actor_log[-2500:]

    output_dir = tmp_path / config["output_dir"]
    assert 2 in checkpoint_steps(output_dir)
    saved = json.loads((output_dir / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())
    assert saved["input_features"]["observation.images.top"]["shape"] == [3, 16, 16]
    assert saved["output_features"]["action"]["shape"] == [2]
    assert "lerobot-pirl-actor: the learner finished training after 2 updates" in actor_log
    assert actor_counter(actor_log, "weights_loaded") >= 1
    assert "reports no success" not in actor_log  # success_key "reached" is read, not warned about
    for log in (learner_log, actor_log):
        assert "Traceback" not in log and "Try one of the following" not in log
