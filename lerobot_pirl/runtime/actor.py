"""``lerobot-pirl-actor``: the actor for a recipe chosen by name (same config as the learner).

    lerobot-pirl-actor --config_path=train_config.json [--recipe=NAME] [--actor_id=N] [--field=value ...]

On-policy recipes (`OnPolicyRecipe`: pi-rl, and yours) run `lerobot_pirl.runtime.on_policy_actor`;
``--actor_id`` (default 0)
tells several actors of one learner apart. Other recipes run LeRobot's own actor.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..recipes.on_policy import is_on_policy
from ..recipes.registry import RecipeEntry, installed
from . import seam
from .cli import RecipeSelectionError, pop_option, run_main


def _run(entry: RecipeEntry, args: list[str]) -> None:
    raw_actor_id, args = pop_option(args, "actor_id")
    if raw_actor_id is not None and not raw_actor_id.isdigit():
        raise RecipeSelectionError(f"--actor_id must be a non-negative integer, got '{raw_actor_id}'")
    seam.install_recipe_lookup(installed())
    cfg = seam.parse_train_config(args)
    if is_on_policy(entry.recipe_cls):
        from .on_policy_actor import run_on_policy_actor

        run_on_policy_actor(cfg, actor_id=int(raw_actor_id or 0))
    else:
        seam.install_actor_env_path()  # LeRobot's actor, for every env type make_env builds
        seam.run_stock_actor(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(argv, _run, role="actor")


if __name__ == "__main__":
    raise SystemExit(main())
