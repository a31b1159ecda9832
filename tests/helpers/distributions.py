"""Build real (if minimal) installed distributions on a temporary sys.path entry.

``importlib.metadata`` finds them exactly as it finds pip-installed packages: a ``*.dist-info``
folder with ``METADATA`` and ``entry_points.txt`` next to the module it names.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from lerobot_pirl import ENTRY_POINT_GROUP


def make_distribution(
    site: Path, dist_name: str, modules: dict[str, str], entry_points: dict[str, str]
) -> None:
    """Write modules ``{module_name: source}`` and a dist-info declaring ``entry_points`` (name -> module)."""
    site.mkdir(parents=True, exist_ok=True)
    for module_name, source in modules.items():
        (site / f"{module_name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist_name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def toy_recipe_module(recipe_name: str, config_name: str) -> str:
    """Source of a plugin module registering one minimal recipe called ``recipe_name``."""
    return f"""
        from dataclasses import dataclass

        from lerobot_pirl import BaseRecipe, RecipeConfig, hookimpl


        @dataclass
        class {config_name}(RecipeConfig):
            lr: float = 1e-3


        class Recipe(BaseRecipe):
            name = "{recipe_name}"
            config_class = {config_name}

            def build_optimizers(self):
                return {{}}

            def update_step(self, batches, step):
                return {{"loss_toy": 0.0}}


        @hookimpl
        def lerobot_pirl_register_recipes(registry):
            registry.add(Recipe)
    """
