"""Pins the LeRobot 0.6 internals `lerobot_pirl.runtime.seam` relies on.

If one of these fails after a LeRobot upgrade, the seam (and only the seam) needs attention.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.configs import free_port, sac_learner_config, write_json
from lerobot.configs.default import DatasetConfig
from lerobot.rl import actor, learner
from lerobot.rl.algorithms import factory
from lerobot.rl.train_rl import TrainRLServerPipelineConfig

from lerobot_pirl import discover
from lerobot_pirl.runtime import seam
from lerobot_pirl.runtime.adapter import RecipeAlgorithm
from lerobot_pirl.runtime.cli import select_recipe


@pytest.fixture
def recipe_lookup():
    seam.install_recipe_lookup(discover(blocked=()))
    yield
    seam.uninstall_recipe_lookup()


def test_stock_factory_only_knows_sac() -> None:
    # Why the seam exists: registering a config is not enough for LeRobot to build an algorithm.
    assert seam._STOCK_GET_ALGORITHM_CLASS("sac").__name__ == "SACAlgorithm"
    with pytest.raises(ValueError, match="not available"):
        seam._STOCK_GET_ALGORITHM_CLASS("pi-rl")


def test_make_algorithm_looks_the_class_up_at_call_time(recipe_lookup, tmp_path: Path) -> None:
    from lerobot.policies import make_policy

    cfg = _parsed_config(tmp_path)
    cfg.validate()
    algorithm = factory.make_algorithm(cfg.algorithm, make_policy(cfg.policy, env_cfg=cfg.env))
    assert isinstance(algorithm, RecipeAlgorithm)
    assert algorithm.entry.name == "sac"
    # The learner and actor modules import make_algorithm from the factory, not get_algorithm_class.
    assert learner.make_algorithm is factory.make_algorithm
    assert actor.make_algorithm is factory.make_algorithm


def test_uninstall_restores_stock_lookup(recipe_lookup) -> None:
    seam.uninstall_recipe_lookup()
    assert factory.get_algorithm_class is seam._STOCK_GET_ALGORITHM_CLASS


def test_stock_validate_still_crashes_without_dataset_and_ours_does_not(tmp_path: Path) -> None:
    data = sac_learner_config(tmp_path / "out", free_port())
    with pytest.raises(AttributeError, match="repo_id"):
        TrainRLServerPipelineConfig.validate(_parsed_config(tmp_path, data))  # the stock method
    ours = _parsed_config(tmp_path, data)
    ours.validate()
    assert ours.dataset is None
    assert ours.algorithm.type == "sac" and ours.algorithm.policy_config is ours.policy


def test_validate_with_a_dataset_is_stock(tmp_path: Path) -> None:
    ours = _parsed_config(tmp_path)
    ours.dataset = DatasetConfig(repo_id="user/demos")
    ours.validate()
    assert ours.dataset.repo_id == "user/demos"


def test_saved_config_is_a_plain_lerobot_config(tmp_path: Path) -> None:
    cfg = _parsed_config(tmp_path)
    cfg.validate()
    cfg._save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "train_config.json").read_text())
    assert "recipe" not in saved and saved["algorithm"]["type"] == "sac"
    reloaded = TrainRLServerPipelineConfig.from_pretrained(tmp_path / "train_config.json")
    assert reloaded.algorithm.type == "sac"


def test_actor_cli_keeps_the_undecorated_function() -> None:
    assert callable(actor.actor_cli.__wrapped__)
    assert callable(learner.train)


def _parsed_config(tmp_path: Path, data: dict | None = None) -> seam.RecipeTrainConfig:
    data = data or sac_learner_config(tmp_path / "out", free_port())
    path = write_json(tmp_path / "train_config.json", {**data, "recipe": "sac"})
    _, args = select_recipe([f"--config_path={path}"], discover(blocked=()))
    return seam.parse_train_config(args)


def test_actor_validation_accepts_the_learners_existing_output_dir(tmp_path: Path) -> None:
    cfg = _parsed_config(tmp_path)
    Path(cfg.output_dir).mkdir(parents=True)
    with pytest.raises(FileExistsError):  # what a stock validate() does to every actor
        _parsed_config(tmp_path).validate()
    seam.validate_for_actor(cfg)
    assert Path(cfg.output_dir) == tmp_path / "out" and cfg.algorithm.policy_config is cfg.policy
