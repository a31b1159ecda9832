"""Recipe discovery (pluggy over entry points) and resolution by name.

Every recipe, built-in or third-party, arrives the same way: an entry point in the
``lerobot_pirl.recipes`` group names a module whose ``lerobot_pirl_register_recipes`` hook adds
recipe classes to a typed `RecipeRegistry`. Registering a recipe also registers its config class as
a LeRobot ``RLAlgorithmConfig`` choice, so ``algorithm.type=NAME`` parses in learner configs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
from lerobot.rl.algorithms.configs import RLAlgorithmConfig

from ..errors import RecipeError
from ..flow_rl.adapter import FlowAdapterRegistry
from . import hookspecs
from .hookspecs import ENTRY_POINT_GROUP, PROJECT_NAME
from .on_policy import is_on_policy, missing_on_policy_members
from .protocol import Recipe

DISABLE_ENV_VAR = "LEROBOT_PIRL_DISABLE_PLUGINS"
"""Comma-separated entry-point names not to load (like pytest's ``-p no:NAME``)."""

_REQUIRED_METHODS = (
    "build_optimizers",
    "update_step",
    "actor_weights",
    "load_actor_weights",
    "state_dict",
    "load_state_dict",
)


class UnknownRecipeError(RecipeError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DuplicateRecipeError(RecipeError):
    pass


class InvalidRecipeError(RecipeError):
    pass


@dataclass(frozen=True)
class RecipeEntry:
    """One registered recipe and the distribution (pip package) that provided it."""

    name: str
    recipe_cls: type[Recipe]
    config_cls: type[RLAlgorithmConfig]
    distribution: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose hook raised; the others keep working."""

    entry_point: str
    distribution: str
    error: str


class RecipeRegistry:
    """Typed registry passed into the ``lerobot_pirl_register_recipes`` hook."""

    def __init__(self) -> None:
        self._entries: dict[str, RecipeEntry] = {}
        self.conflicts: dict[str, str] = {}
        self._distribution = "<unknown>"

    def add(self, recipe_cls: type[Any]) -> None:
        """Register ``recipe_cls`` under ``recipe_cls.name`` with config ``recipe_cls.config_class``."""
        name = getattr(recipe_cls, "name", None)
        config_cls = getattr(recipe_cls, "config_class", None)
        where = f"{getattr(recipe_cls, '__qualname__', recipe_cls)!s} from '{self._distribution}'"
        if not isinstance(name, str) or not name:
            raise InvalidRecipeError(f"recipe {where} needs a non-empty class attribute `name: str`")
        if not (isinstance(config_cls, type) and issubclass(config_cls, RLAlgorithmConfig)):
            raise InvalidRecipeError(
                f"recipe '{name}' ({where}) needs `config_class`, a dataclass subclassing "
                "lerobot_pirl.RecipeConfig (or LeRobot's RLAlgorithmConfig); got "
                f"{config_cls!r}"
            )
        missing = [m for m in _REQUIRED_METHODS if not callable(getattr(recipe_cls, m, None))]
        if missing:
            raise InvalidRecipeError(
                f"recipe '{name}' ({where}) does not implement {', '.join(missing)} of the "
                "lerobot_pirl.Recipe protocol (subclass lerobot_pirl.BaseRecipe for defaults)"
            )
        if is_on_policy(recipe_cls) and (missing := missing_on_policy_members(recipe_cls)):
            raise InvalidRecipeError(
                f"recipe '{name}' ({where}) has an OnPolicyConfig but does not implement "
                f"{', '.join(missing)} of the lerobot_pirl.OnPolicyRecipe protocol"
            )
        if name in self._entries:
            # Ambiguous: neither wins. Other recipes stay resolvable; resolving this name fails.
            first = self._entries[name]
            self.conflicts[name] = (
                f"recipe '{name}' is registered twice: by distribution '{first.distribution}' "
                f"({first.recipe_cls.__module__}) and by '{self._distribution}' "
                f"({recipe_cls.__module__}). Uninstall one, or block its entry point with "
                f"{DISABLE_ENV_VAR}=<entry-point-name>."
            )
            return
        _register_config_choice(name, config_cls)
        self._entries[name] = RecipeEntry(name, recipe_cls, config_cls, self._distribution)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[RecipeEntry]:
        return [self._entries[name] for name in self.names()]

    def get(self, name: str) -> RecipeEntry | None:
        return self._entries.get(name)


def _register_config_choice(name: str, config_cls: type[RLAlgorithmConfig]) -> None:
    """Make ``algorithm.type=name`` parse into ``config_cls`` (idempotent for the same class)."""
    known = RLAlgorithmConfig.get_known_choices()
    if name in known:
        if known[name] is not config_cls:
            raise DuplicateRecipeError(
                f"algorithm config name '{name}' is already taken by "
                f"{known[name].__module__}.{known[name].__qualname__}; a recipe named '{name}' "
                f"must use that config class or pick another name"
            )
        return
    RLAlgorithmConfig.register_subclass(name)(config_cls)


@dataclass
class RecipeCatalog:
    """What discovery found: the registry plus every plugin that failed to load."""

    registry: RecipeRegistry
    failures: list[PluginFailure] = field(default_factory=list)
    blocked: frozenset[str] = frozenset()
    adapters: FlowAdapterRegistry = field(default_factory=FlowAdapterRegistry)
    """πRL flow-policy adapters by policy type (``lerobot_pirl_register_flow_adapters``)."""

    def resolve(self, name: str) -> RecipeEntry:
        """The recipe called ``name``, or an error that says what is installed instead."""
        if name in self.registry.conflicts:
            raise DuplicateRecipeError(self.registry.conflicts[name])
        entry = self.registry.get(name)
        if entry is not None:
            return entry
        lines = [
            f"unknown recipe '{name}'. Installed recipes: {', '.join(self.registry.names()) or 'none'}.",
            f"A package provides a recipe through an entry point in the '{ENTRY_POINT_GROUP}' group "
            "whose module implements the `lerobot_pirl_register_recipes(registry)` hook.",
        ]
        for failure in self.failures:
            lines.append(
                f"Plugin '{failure.entry_point}' from distribution '{failure.distribution}' failed "
                f"to load: {failure.error}"
            )
        if self.blocked:
            lines.append(f"Blocked by {DISABLE_ENV_VAR}: {', '.join(sorted(self.blocked))}")
        raise UnknownRecipeError("\n".join(lines))


def blocked_from_env() -> frozenset[str]:
    raw = os.environ.get(DISABLE_ENV_VAR, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def discover(
    blocked: Iterable[str] | None = None,
    entry_points: Iterable[metadata.EntryPoint] | None = None,
) -> RecipeCatalog:
    """Load every recipe plugin and collect its recipes.

    Args:
        blocked: entry-point names to skip; defaults to ``$LEROBOT_PIRL_DISABLE_PLUGINS``.
        entry_points: for tests; defaults to the installed ``lerobot_pirl.recipes`` entry points.
    """
    blocked_names = frozenset(blocked) if blocked is not None else blocked_from_env()
    eps = (
        list(entry_points)
        if entry_points is not None
        else list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    )
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    catalog = RecipeCatalog(registry=RecipeRegistry(), blocked=blocked_names)
    sources: dict[str, str] = {}
    for ep in eps:
        distribution = ep.dist.name if ep.dist is not None else "<unknown distribution>"
        if ep.name in blocked_names:
            manager.set_blocked(ep.name)
            continue
        if manager.has_plugin(ep.name):
            catalog.failures.append(
                PluginFailure(
                    ep.name,
                    distribution,
                    f"entry point name '{ep.name}' is also used by "
                    f"'{sources[ep.name]}'; entry point names must be unique",
                )
            )
            continue
        try:
            plugin: ModuleType = ep.load()
            manager.register(plugin, name=ep.name)
        except Exception as exc:  # a broken third-party package must not break the others
            catalog.failures.append(PluginFailure(ep.name, distribution, f"{type(exc).__name__}: {exc}"))
            continue
        sources[ep.name] = distribution
    for hook, registry in (
        ("lerobot_pirl_register_recipes", catalog.registry),
        ("lerobot_pirl_register_flow_adapters", catalog.adapters),
    ):
        for plugin_name, distribution in sources.items():
            others = [p for p in manager.get_plugins() if manager.get_name(p) != plugin_name]
            call_one = manager.subset_hook_caller(hook, remove_plugins=others)
            registry._distribution = distribution
            try:
                call_one(registry=registry)
            except Exception as exc:
                catalog.failures.append(
                    PluginFailure(plugin_name, distribution, f"{type(exc).__name__}: {exc}")
                )
        registry._distribution = "<unknown>"
    return catalog


@functools.cache
def installed() -> RecipeCatalog:
    """The catalog of installed recipes, discovered once per process."""
    return discover()


def resolve_recipe(name: str) -> RecipeEntry:
    """Resolve an installed recipe by name (see `RecipeCatalog.resolve`)."""
    return installed().resolve(name)
