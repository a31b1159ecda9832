"""Choosing a recipe from the learner config or the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.configs import free_port, sac_learner_config, write_json
from helpers.learner_process import run_shim

from lerobot_pirl import UnknownRecipeError, discover
from lerobot_pirl.runtime.cli import RecipeSelectionError, configure_torch_threads, pop_option, select_recipe


@pytest.fixture
def catalog():
    return discover(blocked=())


@pytest.fixture
def config(tmp_path: Path) -> dict:
    return sac_learner_config(tmp_path / "out", free_port())


def test_no_recipe_anywhere_means_sac_and_leaves_the_config_file_alone(tmp_path, catalog, config) -> None:
    path = write_json(tmp_path / "c.json", config)
    entry, args = select_recipe([f"--config_path={path}", "--batch_size=4"], catalog)
    assert entry.name == "sac"
    assert args == [f"--config_path={path}", "--batch_size=4", "--algorithm.type=sac"]


def test_json_recipe_key_is_removed_before_lerobot_parses(tmp_path, catalog, config) -> None:
    path = write_json(tmp_path / "c.json", {**config, "recipe": "sac"})
    entry, args = select_recipe([f"--config_path={path}"], catalog)
    assert entry.name == "sac"
    rewritten = Path(args[0].split("=", 1)[1])
    assert rewritten != path
    assert "recipe" not in json.loads(rewritten.read_text())
    assert json.loads(path.read_text())["recipe"] == "sac"  # the user's file is untouched


def test_cli_recipe_wins_over_json_and_space_form_works(tmp_path, catalog, config) -> None:
    path = write_json(tmp_path / "c.json", {**config, "recipe": "nope"})
    entry, _ = select_recipe(["--config_path", str(path), "--recipe", "sac"], catalog)
    assert entry.name == "sac"


def test_algorithm_block_that_contradicts_the_recipe_is_an_error(tmp_path, catalog, config) -> None:
    path = write_json(tmp_path / "c.json", {**config, "recipe": "sac", "algorithm": {"type": "other"}})
    with pytest.raises(
        RecipeSelectionError, match="recipe 'sac' was selected but the config's algorithm.type is 'other'"
    ):
        select_recipe([f"--config_path={path}"], catalog)


def test_algorithm_type_alone_selects_the_recipe(tmp_path, catalog, config) -> None:
    path = write_json(tmp_path / "c.json", {**config, "algorithm": {"type": "sac", "utd_ratio": 2}})
    entry, args = select_recipe([f"--config_path={path}"], catalog)
    assert entry.name == "sac" and not any(a.startswith("--algorithm.type") for a in args)


def test_unknown_recipe_is_reported_with_the_installed_ones(tmp_path, catalog, config) -> None:
    path = write_json(tmp_path / "c.json", config)
    with pytest.raises(UnknownRecipeError, match="unknown recipe 'sack'. Installed recipes: .*sac"):
        select_recipe([f"--config_path={path}", "--recipe=sack"], catalog)


@pytest.mark.integration
def test_learner_command_fails_fast_and_clearly_on_a_bad_recipe(tmp_path, config) -> None:
    path = write_json(tmp_path / "c.json", config)
    result = run_shim("lerobot_pirl.runtime.learner", path, "--recipe=sack", timeout=120)
    assert result.returncode == 2
    assert "lerobot-pirl-learner: error: unknown recipe 'sack'. Installed recipes:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # failed before touching anything


def test_missing_config_file_is_reported(catalog) -> None:
    with pytest.raises(RecipeSelectionError, match="does not exist"):
        select_recipe(["--config_path=/nonexistent/train.json"], catalog)


def test_pop_option_forms() -> None:
    assert pop_option(["--a=1", "--b", "2", "--c=3"], "b") == ("2", ["--a=1", "--c=3"])
    assert pop_option(["--a=1"], "b") == (None, ["--a=1"])
    with pytest.raises(RecipeSelectionError, match="--b needs a value"):
        pop_option(["--b"], "b")


def test_torch_threads_option(monkeypatch) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        threads, rest = configure_torch_threads(["--torch_threads=1", "--x=2"])
        assert (threads, rest, torch.get_num_threads()) == (1, ["--x=2"], 1)
        with pytest.raises(RecipeSelectionError, match="torch_threads must be a positive integer, got '0'"):
            configure_torch_threads(["--torch_threads=0"])
    finally:
        torch.set_num_threads(before)
