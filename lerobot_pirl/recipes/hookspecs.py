"""The hooks a plugin implements (pluggy project name ``lerobot_pirl``): recipes, flow-policy adapters."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ..flow_rl.adapter import FlowAdapterRegistry
    from .registry import RecipeRegistry

PROJECT_NAME = "lerobot_pirl"
ENTRY_POINT_GROUP = "lerobot_pirl.recipes"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def lerobot_pirl_register_recipes(registry: RecipeRegistry) -> None:
    """Add this plugin's recipes with ``registry.add(RecipeClass)``.

    A plugin is a module named by an entry point in the ``lerobot_pirl.recipes`` group, e.g. in
    ``pyproject.toml``::

        [project.entry-points."lerobot_pirl.recipes"]
        my-recipe = "my_package.recipe"
    """


@hookspec
def lerobot_pirl_register_flow_adapters(registry: FlowAdapterRegistry) -> None:
    """Add πRL policy classes for more LeRobot flow-matching policy types with ``registry.add(cls)``.

    ``cls`` is ``class PiRLFoo(PiRLMixin, FooPolicy)`` whose ``flow_adapter_class`` implements
    ``lerobot_pirl.flow_rl.FlowPolicyAdapter`` for policy type ``foo``; recipe ``pi-rl`` then trains
    ``policy.type=foo``. The module is found through the same ``lerobot_pirl.recipes`` entry points.
    """
