"""``lerobot-pirl-learner``: LeRobot's learner with a recipe chosen by name.

    lerobot-pirl-learner --config_path=train_config.json [--recipe=NAME] [--field=value ...]
    python -m lerobot_pirl.runtime.learner --config_path=...

Takes a stock LeRobot 0.6 learner config; ``recipe`` (JSON key or ``--recipe``) defaults to
``sac``. On-policy recipes (config subclassing `OnPolicyConfig`: pi-rl, and yours) run in
`lerobot_pirl.runtime.on_policy_learner`; all others in LeRobot's own learner loop.
``--torch_threads=N`` sets this process's torch threads.

On-policy recipes also run data-parallel over several ranks when started by ``torchrun``
(``torchrun --nproc_per_node=N -m lerobot_pirl.runtime.learner --config_path=...``;
`lerobot_pirl.runtime.distributed`, ``docs/multi_gpu.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..recipes.on_policy import is_on_policy
from ..recipes.registry import RecipeEntry, installed
from . import distributed, seam
from .cli import require_tracking, run_main


def _run(entry: RecipeEntry, args: list[str]) -> None:
    launch = distributed.detect()  # torchrun's variables; None for a plain launch
    if launch is not None and not is_on_policy(entry.recipe_cls):
        raise distributed.DistributedLaunchError(
            f"recipe '{entry.name}' runs in LeRobot's own learner loop, which has no multi-rank mode: "
            "launch it without torchrun"
        )
    seam.install_recipe_lookup(installed())
    cfg = seam.parse_train_config(args)
    require_tracking(cfg)
    if is_on_policy(entry.recipe_cls):
        from .on_policy_learner import run_on_policy_learner

        run_on_policy_learner(cfg, launch, entry.recipe_cls)
    else:
        seam.run_stock_learner(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(argv, _run, role="learner")


if __name__ == "__main__":
    raise SystemExit(main())
