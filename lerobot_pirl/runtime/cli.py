"""Command-line front end shared by the learner and actor shims.

``recipe=NAME`` is sugar for LeRobot's ``algorithm.type=NAME``: we take it out of the argv and the
JSON config (stock LeRobot would reject the unknown key) and choose the algorithm config with it, so
checkpoints hold a plain LeRobot config whose ``algorithm.type`` names the recipe.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import LerobotPirlError
from ..recipes.registry import RecipeCatalog, RecipeEntry, installed

DEFAULT_RECIPE = "sac"
THREADS_ENV_VAR = "LEROBOT_PIRL_TORCH_THREADS"


class RecipeSelectionError(LerobotPirlError):
    pass


def pop_option(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """Remove ``--name=value`` or ``--name value`` from ``argv``; return (value, rest)."""
    flag = f"--{name}"
    value: str | None = None
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        elif arg == flag:
            value = next(args, None)
            if value is None:
                raise RecipeSelectionError(f"{flag} needs a value")
        else:
            rest.append(arg)
    return value, rest


def _read_option(argv: Sequence[str], name: str) -> str | None:
    value, _ = pop_option(list(argv), name)
    return value


def select_recipe(argv: Sequence[str], catalog: RecipeCatalog) -> tuple[RecipeEntry, list[str]]:
    """Decide the recipe and return LeRobot-ready argv.

    Precedence: ``--recipe`` on the command line, then the JSON ``recipe`` key, then the JSON
    ``algorithm.type``, then ``sac``. An ``algorithm`` block (JSON or ``--algorithm.type``) that names
    a different algorithm than the chosen recipe is an error rather than a silent override.
    """
    cli_recipe, args = pop_option(list(argv), "recipe")
    config_path = _read_option(args, "config_path")
    data: dict | None = None
    if config_path is not None:
        path = Path(config_path)
        if path.suffix.lower() == ".json" and path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise RecipeSelectionError(f"--config_path={config_path} is not valid JSON: {exc}") from exc
        elif not path.exists():
            raise RecipeSelectionError(f"--config_path={config_path} does not exist")
    json_recipe = data.pop("recipe", None) if isinstance(data, dict) else None
    algorithm_block = data.get("algorithm") if isinstance(data, dict) else None
    json_algorithm = algorithm_block.get("type") if isinstance(algorithm_block, dict) else None
    cli_algorithm = _read_option(args, "algorithm.type")

    name = cli_recipe or json_recipe or cli_algorithm or json_algorithm or DEFAULT_RECIPE
    for source, declared in (
        ("--algorithm.type", cli_algorithm),
        ("the config's algorithm.type", json_algorithm),
    ):
        if declared is not None and declared != name:
            raise RecipeSelectionError(
                f"recipe '{name}' was selected but {source} is '{declared}'. The algorithm block "
                f"configures the recipe: drop it, or set its type to '{name}'."
            )
    entry = catalog.resolve(name)

    if json_recipe is not None and data is not None:
        args = _replace_config_path(args, data)
    if cli_algorithm is None and json_algorithm is None:
        args.append(f"--algorithm.type={name}")
    return entry, args


def _replace_config_path(args: list[str], data: dict) -> list[str]:
    """Write the config without our ``recipe`` key next to nothing the user owns; point argv at it."""
    fd, tmp_path = tempfile.mkstemp(prefix="lerobot_pirl_", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    _, rest = pop_option(args, "config_path")
    return [f"--config_path={tmp_path}", *rest]


def default_torch_threads() -> int:
    """Half the cores, at most 4, shared out among the ranks ``torchrun`` starts on this machine
    (``LOCAL_WORLD_SIZE``); at least 1: actor and learner share small machines."""
    try:
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_ranks = 1
    return max(1, min(4, (os.cpu_count() or 2) // 2) // local_ranks)


def configure_torch_threads(argv: list[str]) -> tuple[int, list[str]]:
    """Apply ``--torch_threads=N`` (or ``$LEROBOT_PIRL_TORCH_THREADS``) before any torch work.

    Default OpenMP threading makes two processes on two cores ~50x slower; every process we start
    sets its thread count deliberately. Under ``torchrun`` the value is per rank.
    """
    value, rest = pop_option(argv, "torch_threads")
    raw = value if value is not None else os.environ.get(THREADS_ENV_VAR)
    if raw is None:
        threads = default_torch_threads()
    else:
        try:
            threads = int(raw)
        except ValueError:
            threads = 0
        if threads < 1:
            raise RecipeSelectionError(f"torch_threads must be a positive integer, got '{raw}'")
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # inherited by spawned processes
    return threads, rest


def require_tracking(cfg: Any) -> None:
    """Refuse ``wandb.enable=true`` without the package or a project before anything starts (LeRobot
    would fail on its import after the learner has built everything)."""
    if not cfg.wandb.enable:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise RecipeSelectionError(
            "wandb.enable=true needs Weights & Biases: pip install 'lerobot-pirl[wandb]' "
            "(LeRobot's 'training' extra), or set wandb.enable=false"
        ) from None
    if not cfg.wandb.project:
        raise RecipeSelectionError("wandb.enable=true needs wandb.project (the W&B project to log to)")


def tls_keygen(out: Path, hosts: list[str]) -> None:
    """``lerobot-pirl tls-keygen``: a self-signed certificate and key for the learner's addresses."""
    from .security import generate_self_signed

    cert, key = generate_self_signed(out, hosts)
    print(f"certificate {cert} (copy to the actors), private key {key} (the learner only)")
    print(f"valid for {', '.join(hosts)}")


def run_main(argv: Sequence[str] | None, run: Callable[[RecipeEntry, list[str]], None], role: str) -> int:
    """Shared body of the console scripts: errors become one clear line and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        _, args = configure_torch_threads(args)
        entry, args = select_recipe(args, installed())
        run(entry, args)
    except LerobotPirlError as exc:  # bad input: one clear line, not a traceback
        print(f"lerobot-pirl-{role}: error: {exc}", file=sys.stderr)
        return 2
    return 0
