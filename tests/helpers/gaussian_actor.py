"""A tiny stock LeRobot ``gaussian_actor`` (state in [-1, 1], tanh action) for SAC-based recipe tests."""

from __future__ import annotations

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.gaussian_actor.configuration_gaussian_actor import GaussianActorConfig
from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy


def tiny_gaussian_actor(state_dim: int, action_dim: int) -> GaussianActorPolicy:
    config = GaussianActorConfig(
        input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
        latent_dim=16,
        state_encoder_hidden_dim=16,
        dataset_stats={
            "observation.state": {"min": [-1.0] * state_dim, "max": [1.0] * state_dim},
            "action": {"min": [-1.0] * action_dim, "max": [1.0] * action_dim},
        },
    )
    config.actor_network_kwargs.hidden_dims = [16, 16]
    return GaussianActorPolicy(config)
