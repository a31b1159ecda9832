"""Built-in ``sac`` recipe: LeRobot's own `SACAlgorithm`, unchanged, behind the `Recipe` protocol.

It re-implements nothing; every call forwards to a stock ``SACAlgorithm`` so a stock LeRobot SAC
learner config trains exactly as it does in stock LeRobot (pinned by a bitwise parity test).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy
from lerobot.rl.algorithms.configs import TrainingStats
from lerobot.rl.algorithms.sac import SACAlgorithm, SACAlgorithmConfig
from torch.optim import Optimizer

from .hookspecs import hookimpl
from .protocol import Batch
from .registry import RecipeRegistry


class SACRecipe:
    name = "sac"
    config_class = SACAlgorithmConfig

    def __init__(self, policy: GaussianActorPolicy, config: SACAlgorithmConfig) -> None:
        self.sac = SACAlgorithm(policy=policy, config=config)

    def build_optimizers(self) -> dict[str, Optimizer]:
        return self.sac.make_optimizers_and_scheduler()

    def update_step(self, batches: Iterator[Batch], step: int) -> TrainingStats:
        # SAC reads its own counter (policy_update_freq); keep it equal to the learner's step.
        self.sac.optimization_step = step
        return self.sac.update(batches)

    def configure_data_iterator(self, data_mixer: Any, batch_size: int, **kwargs: Any) -> Iterator[Batch]:
        return self.sac.configure_data_iterator(data_mixer, batch_size, **kwargs)

    def actor_weights(self) -> dict[str, Any]:
        return self.sac.get_weights()

    def load_actor_weights(self, weights: dict[str, Any], device: str | torch.device) -> None:
        self.sac.load_weights(weights, device=device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.sac.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], device: str | torch.device) -> None:
        self.sac.load_state_dict(state, device=device)


@hookimpl
def lerobot_pirl_register_recipes(registry: RecipeRegistry) -> None:
    registry.add(SACRecipe)
