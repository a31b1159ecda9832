"""The one hook a recipe plugin implements (pluggy project name ``lerobot_pirl``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
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
