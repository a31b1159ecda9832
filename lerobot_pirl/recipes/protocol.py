"""The `Recipe` contract: what a package implements to add an RL algorithm to LeRobot's learner.

A recipe is a plain object. LeRobot never sees it directly: `lerobot_pirl.runtime.algorithm_adapter` presents
it as an `RLAlgorithm`, so LeRobot's trainer, checkpointing and weight push work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.rl.algorithms.configs import RLAlgorithmConfig, TrainingStats
from lerobot.utils.transition import move_state_dict_to_device
from torch import nn
from torch.optim import Optimizer

type Batch = dict[str, Any]
type Metrics = TrainingStats | Mapping[str, float]


@runtime_checkable
class Recipe(Protocol):
    """An RL algorithm the learner can run.

    Class attributes:
        name: the name users select with ``recipe=NAME``.
        config_class: a draccus dataclass (subclass of LeRobot's ``RLAlgorithmConfig``, usually of
            `RecipeConfig`). It is parsed from the learner JSON's ``algorithm`` block and from
            ``--algorithm.<field>=...`` on the command line, and saved with every checkpoint.

    The learner constructs ``recipe_cls(policy=policy, config=config)`` once, calls
    `build_optimizers` once, then `update_step` once per optimisation step.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[RLAlgorithmConfig]]

    def build_optimizers(self) -> dict[str, Optimizer]:
        """Create every optimizer the recipe steps; they are checkpointed by name."""
        ...

    def update_step(self, batches: Iterator[Batch], step: int) -> Metrics:
        """One optimisation step at learner step ``step``.

        Pull as many batches from ``batches`` as the algorithm needs. Return ``loss_*`` terms plus
        detached diagnostics, either as LeRobot ``TrainingStats`` or a flat mapping of floats
        (keys ``loss_*`` are losses, ``*_grad_norm`` are gradient norms, the rest diagnostics).
        """
        ...

    def actor_weights(self) -> dict[str, Any]:
        """The tensors pushed to actors after updates (CPU state dicts)."""
        ...

    def load_actor_weights(self, weights: dict[str, Any], device: str | torch.device) -> None:
        """Load what `actor_weights` produced, on the actor side."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Recipe-owned tensors that are not policy weights (critics, heads, temperatures)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor], device: str | torch.device) -> None:
        """Restore `state_dict` in place, keeping the identity of parameters optimizers hold."""
        ...


@dataclass
class RecipeConfig(RLAlgorithmConfig):
    """Base for recipe configs: a LeRobot algorithm config that knows its policy config.

    Subclass it as a ``@dataclass`` and document each field with a comment or docstring line; the
    registry registers it under the recipe's name so ``algorithm.type=NAME`` parses it.
    """

    policy_config: PreTrainedConfig | None = None

    @classmethod
    def from_policy_config(cls, policy_cfg: PreTrainedConfig) -> RecipeConfig:
        """Default hyperparameters for ``policy_cfg``; override to adapt them to the policy."""
        return cls(policy_config=policy_cfg)


class BaseRecipe:
    """Convenient defaults so a third-party recipe fits in one short file.

    Pushes the whole policy state dict to actors, owns no extra tensors, and uses LeRobot's standard
    data iterator. Override what your algorithm needs.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[RLAlgorithmConfig]]

    def __init__(self, policy: nn.Module, config: RLAlgorithmConfig) -> None:
        self.policy = policy
        self.config = config

    def actor_weights(self) -> dict[str, Any]:
        return {"policy": move_state_dict_to_device(self.policy.state_dict(), device="cpu")}

    def load_actor_weights(self, weights: dict[str, Any], device: str | torch.device) -> None:
        self.policy.load_state_dict(move_state_dict_to_device(weights["policy"], device=device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: str | torch.device) -> None:
        if state:
            raise ValueError(f"recipe '{self.name}' owns no tensors but was given {sorted(state)}")


def to_training_stats(metrics: Metrics) -> TrainingStats:
    """Normalise a recipe's metrics into LeRobot's `TrainingStats` (what the learner logs)."""
    if isinstance(metrics, TrainingStats):
        return metrics
    stats = TrainingStats()
    for key, value in metrics.items():
        value = float(value)
        if key.startswith("loss_"):
            stats.losses[key] = value
        elif key.endswith("_grad_norm"):
            stats.grad_norms[key.removesuffix("_grad_norm")] = value
        else:
            stats.extra[key] = value
    return stats
