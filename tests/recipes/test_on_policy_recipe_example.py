"""examples/on_policy_recipe: a separately installed on-policy recipe (REINFORCE for gaussian_actor),
run by lerobot-pirl's own learner and actor processes on a real MuJoCo env."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.configs import free_port, write_json
from helpers.learner_process import assert_counts_conserved, checkpoint_steps, train_with_one_actor

from lerobot_pirl import ActorDecision, discover
from lerobot_pirl.envs.pick_cube import STATE_DIM, PickCubeEnvConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "on_policy_recipe"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the example (a real wheel build) into its own site directory."""
    site = tmp_path_factory.mktemp("on_policy_example_site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--target", str(site), str(EXAMPLE)],
        check=True,
        timeout=300,
    )
    return site


def _policy_config():
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import (
        ActorNetworkConfig,
        GaussianActorConfig,
    )

    return GaussianActorConfig(
        input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,))},
        dataset_stats=None,
        latent_dim=32,
        state_encoder_hidden_dim=32,
        actor_network_kwargs=ActorNetworkConfig(hidden_dims=[32, 32]),
    )


def _recipe(module, **config):
    from lerobot.policies import make_policy

    torch.manual_seed(0)
    policy_config = _policy_config()
    policy = make_policy(cfg=policy_config, env_cfg=PickCubeEnvConfig())
    recipe = module.ReinforceRecipe(policy, module.ReinforceConfig(policy_config=policy_config, **config))
    recipe.build_optimizers()
    return recipe


@pytest.fixture
def example(example_site: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(example_site))
    import lerobot_recipe_reinforce

    return lerobot_recipe_reinforce


def test_the_example_registers_as_an_on_policy_recipe(example) -> None:
    from lerobot_pirl.recipes.on_policy import is_on_policy

    entry = discover(blocked=()).resolve("reinforce")
    assert entry.distribution == "lerobot-recipe-reinforce" and is_on_policy(entry.recipe_cls)


def test_discounted_returns_by_hand(example) -> None:
    # G_2 = 4; G_1 = 2 + 0.5·4 = 4; G_0 = 1 + 0.5·4 = 3
    assert example.discounted_returns([1.0, 2.0, 4.0], 0.5).tolist() == [3.0, 4.0, 4.0]


def test_log_prob_is_the_density_the_gaussian_actor_samples_from(example) -> None:
    """The recipe rebuilds LeRobot's tanh-Gaussian from the actor's layers (a reach into
    ``Policy``'s internals): its log-prob of sampled actions must equal the one ``forward`` reports."""
    recipe = _recipe(example)
    observations = {
        "observation.state": torch.randn(64, STATE_DIM, generator=torch.Generator().manual_seed(1))
    }
    with torch.no_grad():
        sampled = recipe.policy.forward(observations)
        rebuilt = recipe.log_prob(observations, sampled["action"])
    torch.testing.assert_close(rebuilt, sampled["log_prob"], atol=2e-3, rtol=1e-4)


def _bandit_episodes(recipe, example, target: torch.Tensor, count: int, generator: torch.Generator) -> float:
    """``count`` one-step episodes through the actor-side sampler and encoder; reward −‖a − target‖²."""
    states = torch.randn(count, STATE_DIM, generator=generator)
    actions, samples = recipe.sampler().act({"observation.state": states})
    rewards = -((actions[:, 0] - target) ** 2).sum(-1)
    for index in range(count):
        observation = {"observation.state": states[index]}
        transition = recipe.encode_decision(
            ActorDecision(
                observation=observation,
                next_observation=observation,
                actions=actions[index],
                rewards=[float(rewards[index])],
                terminated=True,
                truncated=False,
                sample=samples[index],
                policy_version=recipe.policy_version,
                actor_id=0,
                episode_id=index,
                decision_index=0,
            )
        )
        assert recipe.accept(transition)
    return float(rewards.mean())


def test_reinforce_learns_a_bandit_through_the_actor_and_learner_halves(example) -> None:
    recipe = _recipe(example, lr=3e-3, episodes_per_update=32)
    target = torch.tensor([0.5, -0.5, 0.3, 0.0])
    generator = torch.Generator().manual_seed(2)
    first = [_bandit_episodes(recipe, example, target, 32, generator)]
    rewards = []
    for step in range(80):
        assert recipe.rollout_ready()
        metrics = recipe.update_step(iter([recipe.take_rollout()]), step)
        assert metrics["policy_version"] == step + 1
        rewards.append(_bandit_episodes(recipe, example, target, 32, generator))
    start, end = sum(first) / len(first), sum(rewards[-10:]) / 10
    assert end > start + 0.3 and end > -0.3, (start, end)
    assert recipe.data_counters() == {"received": 81 * 32, "consumed": 80 * 32, "dropped": 0, "pending": 32}


def test_malformed_and_stale_transitions_are_rejected_or_dropped(example) -> None:
    from lerobot_pirl import TransitionRejectedError

    recipe = _recipe(example)
    good = recipe.encode_decision(
        ActorDecision(
            observation={"observation.state": torch.zeros(STATE_DIM)},
            next_observation={"observation.state": torch.zeros(STATE_DIM)},
            actions=torch.zeros(1, 4),
            rewards=[0.0],
            terminated=False,
            truncated=False,
            sample=None,
            policy_version=0,
            actor_id=0,
            episode_id=0,
            decision_index=0,
        )
    )
    with pytest.raises(TransitionRejectedError, match=r"action must be a tensor of shape \(4,\)"):
        recipe.accept({**good, "action": torch.zeros(3)})
    with pytest.raises(TransitionRejectedError, match=r"contains NaN or inf"):
        recipe.accept({**good, "state": {"observation.state": torch.full((STATE_DIM,), float("nan"))}})
    with pytest.raises(TransitionRejectedError, match=r"must be 4 finite values"):
        recipe.accept({**good, "complementary_info": {}})
    stale = {**good, "complementary_info": {example.META: torch.tensor([3.0, 0.0, 1.0, 0.0])}}
    assert not recipe.accept(stale) and recipe.data_counters()["dropped"] == 1


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_example_trains_in_the_real_learner_and_actor_processes(
    example_site: Path, tmp_path: Path
) -> None:
    import os

    from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy

    from lerobot_pirl.tasks.pick_cube.configs import learner_config

    output_dir = tmp_path / "out"
    data = learner_config(_policy_config(), output_dir, free_port(), env={"episode_length": 10})
    data["recipe"] = "reinforce"
    data["algorithm"] = {
        "type": "reinforce",
        "learner_port": data["algorithm"]["learner_port"],
        "episodes_per_update": 4,
        "envs_per_actor": 2,
        "max_updates": 1000,
        "lr": 1e-3,
    }
    config = write_json(tmp_path / "train_config.json", data)
    env = {"PYTHONPATH": os.pathsep.join([str(example_site), os.environ.get("PYTHONPATH", "")])}

    def trained(learner_log: str, actor_log: str) -> bool:
        pushed = any(int(v) >= 1 for v in re.findall(r"version=(\d+)", actor_log))
        return 3 in checkpoint_steps(output_dir) and pushed

    learner_text, actor_text = train_with_one_actor(
        config, tmp_path, trained, "3 reinforce updates and an episode sampled with pushed weights", env=env
    )
    assert "loss_actor=" in learner_text and "episode_return_mean=" in learner_text
    _, _, consumed, *_ = assert_counts_conserved(learner_text, actor_text)
    assert consumed >= 3 * 4 * 10  # three updates of four 10-step episodes
    # The checkpoint is a stock gaussian_actor checkpoint (plus the recipe's version counter).
    policy = GaussianActorPolicy.from_pretrained(output_dir / "checkpoints" / "last" / "pretrained_model")
    assert policy.config.type == "gaussian_actor"
