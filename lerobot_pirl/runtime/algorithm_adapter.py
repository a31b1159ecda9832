"""Present any `Recipe` to LeRobot as an ``RLAlgorithm``.

LeRobot's learner, trainer, checkpointing and weight push talk to ``RLAlgorithm``; this adapter maps
that interface onto the smaller `Recipe` protocol, one generated subclass per registered recipe.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from lerobot.rl.algorithms.base import RLAlgorithm
from lerobot.rl.algorithms.configs import RLAlgorithmConfig, TrainingStats
from torch import nn
from torch.optim import Optimizer

from lerobot_pirl.errors import RecipeError
from lerobot_pirl.recipes.protocol import Batch, Recipe, to_training_stats
from lerobot_pirl.recipes.registry import RecipeEntry


class RecipeSetupError(RecipeError, ValueError):
    """A recipe refused its policy or config at construction (before any training)."""


class RecipeUpdateError(RuntimeError):
    """An exception raised inside a recipe's ``update_step``, labelled with the recipe's name.

    Not a `RecipeError`: the command line turns those into one-line input errors, while a failure
    during training must keep its traceback.
    """


class RecipeAlgorithm(RLAlgorithm):
    """The ``RLAlgorithm`` LeRobot builds for ``algorithm.type=<recipe name>``."""

    entry: ClassVar[RecipeEntry]

    def __init__(self, policy: nn.Module, config: RLAlgorithmConfig) -> None:
        self.policy = policy
        self.config = config
        try:
            self.recipe: Recipe = self.entry.recipe_cls(policy=policy, config=config)  # type: ignore[call-arg]
        except RecipeError:
            raise
        except (ValueError, TypeError) as exc:  # the recipe rejected this policy/config combination
            raise RecipeSetupError(f"recipe '{self.entry.name}' cannot start: {exc}") from exc
        self.optimizers: dict[str, Optimizer] = {}
        self._optimization_step = 0

    def make_optimizers_and_scheduler(self) -> dict[str, Optimizer]:
        self.optimizers = self.recipe.build_optimizers()
        return self.optimizers

    def get_optimizers(self) -> dict[str, Optimizer]:
        return self.optimizers

    def configure_data_iterator(
        self, data_mixer: Any, batch_size: int, *, async_prefetch: bool = True, queue_size: int = 2
    ) -> Iterator[Batch]:
        custom = getattr(self.recipe, "configure_data_iterator", None)
        if custom is None:
            return super().configure_data_iterator(
                data_mixer, batch_size, async_prefetch=async_prefetch, queue_size=queue_size
            )
        return custom(data_mixer, batch_size, async_prefetch=async_prefetch, queue_size=queue_size)

    def update(self, batch_iterator: Iterator[Batch]) -> TrainingStats:
        step: int = self.optimization_step  # type: ignore[has-type]
        try:
            metrics = self.recipe.update_step(batch_iterator, step)
        except Exception as exc:
            raise RecipeUpdateError(
                f"recipe '{self.entry.name}' (from '{self.entry.distribution}') failed in "
                f"update_step at learner step {step}: {type(exc).__name__}: {exc}"
            ) from exc
        self.optimization_step = step + 1
        return to_training_stats(metrics)

    def get_weights(self) -> dict[str, Any]:
        return self.recipe.actor_weights()

    def load_weights(self, weights: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.recipe.load_actor_weights(weights, device=device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.recipe.state_dict()

    def load_state_dict(
        self, state_dict: dict[str, torch.Tensor], device: str | torch.device = "cpu"
    ) -> None:
        self.recipe.load_state_dict(state_dict, device=device)


@functools.cache
def algorithm_class(entry: RecipeEntry) -> type[RecipeAlgorithm]:
    """The ``RLAlgorithm`` subclass LeRobot instantiates for ``entry`` (one per recipe)."""
    class_name = "".join(part.capitalize() for part in entry.name.replace("_", "-").split("-"))
    return type(
        f"{class_name}RecipeAlgorithm",
        (RecipeAlgorithm,),
        {"entry": entry, "config_class": entry.config_cls, "name": entry.name, "__module__": __name__},
    )
