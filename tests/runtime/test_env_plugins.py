"""Env types reach the runtime through LeRobot's registry: our entry points and LeRobot's own
discovery of third-party ``lerobot_env_*`` packages, both run before a config is parsed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.configs import free_port, pi_rl_learner_config, write_json
from helpers.learner_process import install_distribution

PLUGIN = textwrap.dedent(
    '''
    from dataclasses import dataclass

    from lerobot.envs.configs import EnvConfig

    from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig


    @EnvConfig.register_subclass("third_party_pick_cube")
    @dataclass
    class ThirdPartyPickCube(PickCubeEnvConfig):
        """A third party's env type (here the same gym env under another name)."""
    '''
)

PARSE = (  # what the learner and actor shims do before they run anything
    "import sys; from lerobot_pirl.recipes.registry import installed; from lerobot_pirl.runtime import seam; "
    "from lerobot_pirl.runtime.cli import select_recipe; _, args = select_recipe(sys.argv[1:], installed()); "
    "cfg = seam.parse_train_config(args); "
    "print(type(cfg.env).__module__, cfg.env.type, cfg.env.episode_length)"
)


def _install_fake_plugin(root: Path) -> None:
    """A ``lerobot_env_*`` distribution on PYTHONPATH, as ``pip install`` would leave it."""
    install_distribution(root, "lerobot_env_pirl_fake", PLUGIN)


def _parse(config: dict, tmp_path: Path, pythonpath: str = "") -> subprocess.CompletedProcess:
    path = write_json(tmp_path / "config.json", config)
    return subprocess.run(
        [sys.executable, "-c", PARSE, f"--config_path={path}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH")) if p),
        },
    )


@pytest.mark.integration
def test_our_env_type_parses_in_a_fresh_process_through_the_entry_point(tmp_path: Path) -> None:
    config = pi_rl_learner_config(
        tmp_path / "out", free_port(), state_dim=21, action_dim=4, env={"episode_length": 7}
    )
    result = _parse(config, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["lerobot_pirl.envs.pick_cube", "pirl_pick_cube", "7"]


@pytest.mark.integration
def test_a_third_party_lerobot_env_package_is_discovered_by_lerobots_plugin_loader(tmp_path: Path) -> None:
    _install_fake_plugin(tmp_path / "site")
    config = pi_rl_learner_config(tmp_path / "out", free_port(), state_dim=21, action_dim=4)
    config["env"] = {"type": "third_party_pick_cube", "episode_length": 9}
    unknown = _parse(config, tmp_path)
    assert unknown.returncode != 0  # not installed: LeRobot's parser does not know the type
    result = _parse(config, tmp_path, pythonpath=str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["lerobot_env_pirl_fake", "third_party_pick_cube", "9"]
    assert json.loads(json.dumps(config))["env"]["type"] == "third_party_pick_cube"
