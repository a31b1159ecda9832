"""lerobot-pirl: RL recipes (SAC, πRL, and yours) for LeRobot's actor–learner training.

The public surface for recipe authors::

    from lerobot_pirl import BaseRecipe, RecipeConfig, RecipeRegistry, hookimpl

and for πRL adapters of more flow-matching policies (``lerobot_pirl.policies.PiRLMixin`` is the
policy-side mixin)::

    from lerobot_pirl import FlowAdapterRegistry, FlowPolicyAdapter, hookimpl
"""

from .flow_rl.adapter import FlowAdapterRegistry, FlowPolicyAdapter
from .recipes.hookspecs import ENTRY_POINT_GROUP, hookimpl
from .recipes.protocol import BaseRecipe, Recipe, RecipeConfig
from .recipes.registry import (
    DuplicateRecipeError,
    InvalidRecipeError,
    RecipeError,
    RecipeRegistry,
    UnknownRecipeError,
    discover,
    resolve_recipe,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseRecipe",
    "DuplicateRecipeError",
    "FlowAdapterRegistry",
    "FlowPolicyAdapter",
    "InvalidRecipeError",
    "Recipe",
    "RecipeConfig",
    "RecipeError",
    "RecipeRegistry",
    "UnknownRecipeError",
    "discover",
    "hookimpl",
    "resolve_recipe",
]
