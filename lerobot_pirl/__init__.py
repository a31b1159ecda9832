"""lerobot-pirl: RL recipes (SAC, πRL, and yours) for LeRobot's actor–learner training.

The public surface for recipe authors::

    from lerobot_pirl import BaseRecipe, RecipeConfig, RecipeRegistry, hookimpl
"""

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
