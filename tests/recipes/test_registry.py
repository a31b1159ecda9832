"""Recipe discovery through real entry points, and resolution errors that say what to do."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from helpers.distributions import make_distribution, toy_recipe_module
from lerobot.rl.algorithms.configs import RLAlgorithmConfig

from lerobot_pirl import ENTRY_POINT_GROUP, DuplicateRecipeError, UnknownRecipeError, discover
from lerobot_pirl.recipes.registry import DISABLE_ENV_VAR
from lerobot_pirl.recipes.sac import SACRecipe


def test_builtin_sac_comes_through_our_own_entry_point() -> None:
    ours = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist.name == "lerobot-pirl"]
    assert {ep.name: ep.value for ep in ours}["sac"] == "lerobot_pirl.recipes.sac"
    entry = discover(blocked=()).resolve("sac")
    assert entry.recipe_cls is SACRecipe
    assert entry.distribution == "lerobot-pirl"


def test_unknown_recipe_lists_installed_recipes_and_the_group() -> None:
    with pytest.raises(UnknownRecipeError) as err:
        discover(blocked=()).resolve("ppo-typo")
    message = str(err.value)
    assert "unknown recipe 'ppo-typo'" in message
    assert "Installed recipes: " in message and "sac" in message
    assert ENTRY_POINT_GROUP in message


def test_third_party_recipe_is_discovered_and_its_config_parses(site: Path) -> None:
    make_distribution(
        site,
        "acme-rl",
        {"acme_rl_plugin": toy_recipe_module("acme", "AcmeConfig")},
        {"acme": "acme_rl_plugin"},
    )
    catalog = discover(blocked=())
    entry = catalog.resolve("acme")
    assert entry.distribution == "acme-rl"
    assert entry.recipe_cls.__module__ == "acme_rl_plugin"
    assert RLAlgorithmConfig.get_choice_class("acme") is entry.config_cls
    assert catalog.resolve("sac").recipe_cls is SACRecipe


def test_duplicate_name_names_both_distributions_and_leaves_others_working(site: Path) -> None:
    make_distribution(
        site, "twin-one", {"twin_one": toy_recipe_module("twin", "TwinOneConfig")}, {"t1": "twin_one"}
    )
    make_distribution(
        site, "twin-two", {"twin_two": toy_recipe_module("twin", "TwinTwoConfig")}, {"t2": "twin_two"}
    )
    catalog = discover(blocked=())
    with pytest.raises(DuplicateRecipeError) as err:
        catalog.resolve("twin")
    assert "twin-one" in str(err.value) and "twin-two" in str(err.value)
    assert catalog.resolve("sac").recipe_cls is SACRecipe


def test_plugin_raising_on_import_is_named_and_others_still_resolve(site: Path) -> None:
    make_distribution(
        site,
        "broken-rl",
        {"broken_rl_plugin": "raise ImportError('needs libfoo >= 2')\n"},
        {"broken": "broken_rl_plugin"},
    )
    make_distribution(
        site,
        "fine-rl",
        {"fine_rl_plugin": toy_recipe_module("fine", "FineConfig")},
        {"fine": "fine_rl_plugin"},
    )
    catalog = discover(blocked=())
    assert catalog.resolve("fine").distribution == "fine-rl"
    assert catalog.resolve("sac").recipe_cls is SACRecipe
    [failure] = catalog.failures
    assert (failure.entry_point, failure.distribution) == ("broken", "broken-rl")
    with pytest.raises(UnknownRecipeError) as err:
        catalog.resolve("broken")
    assert "broken-rl" in str(err.value) and "needs libfoo >= 2" in str(err.value)


def test_blocking_a_plugin_by_env_var(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(
        site,
        "blocky",
        {"blocky_plugin": toy_recipe_module("blocky", "BlockyConfig")},
        {"blocky": "blocky_plugin"},
    )
    assert discover().resolve("blocky").distribution == "blocky"
    monkeypatch.setenv(DISABLE_ENV_VAR, "blocky, other")
    catalog = discover()
    with pytest.raises(UnknownRecipeError) as err:
        catalog.resolve("blocky")
    assert f"Blocked by {DISABLE_ENV_VAR}: blocky" in str(err.value)
    assert catalog.resolve("sac").recipe_cls is SACRecipe


def test_recipe_missing_protocol_methods_is_reported_precisely(site: Path) -> None:
    source = toy_recipe_module("halfdone", "HalfDoneConfig").replace("def update_step", "def update_stop")
    make_distribution(site, "half-done", {"half_done_plugin": source}, {"halfdone": "half_done_plugin"})
    catalog = discover(blocked=())
    [failure] = catalog.failures
    assert failure.distribution == "half-done"
    assert "does not implement update_step" in failure.error
    assert "lerobot_pirl.Recipe protocol" in failure.error


def test_an_on_policy_recipe_missing_protocol_members_is_refused_naming_them() -> None:
    from dataclasses import dataclass

    from lerobot_pirl import BaseRecipe, InvalidRecipeError, OnPolicyConfig, RecipeRegistry

    @dataclass
    class HalfOnPolicyConfig(OnPolicyConfig):
        pass

    class HalfOnPolicy(BaseRecipe):
        name = "half-on-policy"
        config_class = HalfOnPolicyConfig

        def build_optimizers(self):
            return {}

        def update_step(self, batches, step):
            return {}

        def accept(self, transition):
            return True

    with pytest.raises(InvalidRecipeError) as error:
        RecipeRegistry().add(HalfOnPolicy)
    message = str(error.value)
    assert "has an OnPolicyConfig but does not implement" in message
    for member in (
        "rollout_ready",
        "take_rollout",
        "data_counters",
        "sampler",
        "encode_decision",
        "policy_version",
    ):
        assert member in message
    assert "accept" not in message.split("implement", 1)[1]
