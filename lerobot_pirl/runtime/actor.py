"""``lerobot-pirl-actor``: LeRobot's actor with a recipe chosen by name (same config as the learner).

lerobot-pirl-actor --config_path=train_config.json [--recipe=NAME] [--field=value ...]
"""

from __future__ import annotations

from collections.abc import Sequence

from ..recipes.registry import RecipeEntry, installed
from . import seam
from .cli import run_main


def _run(entry: RecipeEntry, args: list[str]) -> None:
    seam.install_recipe_lookup(installed())
    cfg = seam.parse_train_config(args)
    seam.run_stock_actor(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(argv, _run, role="actor")


if __name__ == "__main__":
    raise SystemExit(main())
