"""lerobot-pirl: RL recipes (SAC, πRL, and yours) for LeRobot's actor–learner training.

The public surface for recipe authors::

    from lerobot_pirl import BaseRecipe, RecipeConfig, RecipeRegistry, hookimpl

on-policy recipes (trained on fresh episodes by lerobot_pirl's own learner loop and actor)::

    from lerobot_pirl import ActorDecision, ActorSampler, OnPolicyConfig, OnPolicyRecipe

and for πRL adapters of more flow-matching policies (``lerobot_pirl.policies.PiRLMixin`` is the
policy-side mixin)::

    from lerobot_pirl import FlowAdapterRegistry, FlowPolicyAdapter, hookimpl
"""

from .startup_noise import quiet_lerobot_import

quiet_lerobot_import()  # before anything imports LeRobot

from .errors import LerobotPirlError, RecipeError
from .flow_rl.adapter import FlowAdapterRegistry, FlowPolicyAdapter
from .recipes.hookspecs import ENTRY_POINT_GROUP, hookimpl
from .recipes.on_policy import (
    ActorDecision,
    ActorSampler,
    OnPolicyConfig,
    OnPolicyRecipe,
    TransitionRejectedError,
)
from .recipes.protocol import BaseRecipe, Recipe, RecipeConfig
from .recipes.registry import (
    DuplicateRecipeError,
    InvalidRecipeError,
    RecipeRegistry,
    UnknownRecipeError,
    discover,
    resolve_recipe,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActorDecision",
    "ActorSampler",
    "BaseRecipe",
    "DuplicateRecipeError",
    "FlowAdapterRegistry",
    "FlowPolicyAdapter",
    "InvalidRecipeError",
    "LerobotPirlError",
    "OnPolicyConfig",
    "OnPolicyRecipe",
    "Recipe",
    "RecipeConfig",
    "RecipeError",
    "RecipeRegistry",
    "TransitionRejectedError",
    "UnknownRecipeError",
    "discover",
    "hookimpl",
    "resolve_recipe",
]
