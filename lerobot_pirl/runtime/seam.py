"""The one place that reaches into LeRobot internals.

Everything here depends on LeRobot 0.6 behaviour that is not a public API; `tests/runtime/test_seam.py`
pins each point so a LeRobot upgrade breaks loudly here and nowhere else:

- ``lerobot.rl.algorithms.factory.get_algorithm_class`` is a hard-coded ``if name == "sac"``, and
  ``make_algorithm`` looks it up in the factory module at call time. Replacing that one function
  lets our registry answer for LeRobot's own learner and actor loops.
- ``TrainPipelineConfig.validate`` dereferences ``dataset.repo_id`` although RL configs may omit
  the dataset; `RecipeTrainConfig` keeps that crash away from users.
- ``lerobot.configs.parser.wrap`` reads ``sys.argv``; `parse_train_config` feeds it ours.
- ``TrainPipelineConfig.validate`` resolves ``--policy.path`` in ``_resolve_pretrained_from_cli``
  from ``sys.argv`` at validation time; `parse_train_config` resolves the policy at parse time
  instead (`policy_from_checkpoint`, also for ``policy.pretrained_path`` alone), and
  `RecipeTrainConfig` skips LeRobot's second resolution of it.
- ``lerobot.rl.actor`` builds its env through ``make_robot_env`` / ``make_processors`` looked up in
  its module at call time; `install_actor_env_path` answers for env types other than
  ``gym_manipulator`` there.
- ``lerobot.scripts.lerobot_eval.eval_main`` calls ``make_pre_post_processors`` and
  ``make_env_pre_post_processors`` through its module's namespace at call time;
  `install_eval_processors` answers there (bundled tokenizers, XVLA's LIBERO steps for non-LIBERO
  envs: ``runtime.lerobot_eval``).
- ``lerobot.policies.pretrained._build_card_context`` fills LeRobot's model-card template
  (``generate_model_card`` would also validate the card online); `model_card_context` calls it.

The gRPC transport (``runtime.transport``) builds on LeRobot's ``LearnerService`` constructor, its
message-size limits and chunked streams; `tests/runtime/test_seam.py` pins those too.
"""

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lerobot.configs import parser
from lerobot.configs.default import DatasetConfig
from lerobot.envs.configs import HILSerlRobotEnvConfig
from lerobot.rl.algorithms import factory
from lerobot.rl.algorithms.base import RLAlgorithm
from lerobot.rl.train_rl import TrainRLServerPipelineConfig

from ..errors import LerobotPirlError
from ..recipes.registry import RecipeCatalog
from .algorithm_adapter import algorithm_class
from .processors import load_policy_config

_STOCK_GET_ALGORITHM_CLASS = factory.get_algorithm_class


_stock_actor_env: tuple[Any, Any] | None = None


def _stock_actor_env_path() -> tuple[Any, Any]:
    """LeRobot's own ``(make_robot_env, make_processors)`` of its actor module, read before any
    install replaces them (importing the actor module is slow: not at our import)."""
    global _stock_actor_env
    if _stock_actor_env is None:
        from lerobot.rl import actor

        _stock_actor_env = (actor.make_robot_env, actor.make_processors)
    return _stock_actor_env


class InvalidConfigError(LerobotPirlError, ValueError):
    """The learner config parsed but a value is not acceptable; the message names it."""


def install_recipe_lookup(catalog: RecipeCatalog) -> None:
    """Make LeRobot's ``make_algorithm`` build every algorithm through the recipe registry."""

    def get_algorithm_class(name: str) -> type[RLAlgorithm]:
        return algorithm_class(catalog.resolve(name))

    factory.get_algorithm_class = get_algorithm_class


def uninstall_recipe_lookup() -> None:
    factory.get_algorithm_class = _STOCK_GET_ALGORITHM_CLASS


_stock_eval_processors: tuple[Any, Any] | None = None


def install_eval_processors(policy_processors: Any, env_processors: Any) -> None:
    """Make ``lerobot-eval``'s ``eval_main`` build its policy processors with ``policy_processors``
    and its env processors with ``env_processors`` (both same signature as LeRobot's)."""
    global _stock_eval_processors
    from lerobot.scripts import lerobot_eval

    if _stock_eval_processors is None:
        _stock_eval_processors = (
            lerobot_eval.make_pre_post_processors,
            lerobot_eval.make_env_pre_post_processors,
        )
    lerobot_eval.make_pre_post_processors = policy_processors
    lerobot_eval.make_env_pre_post_processors = env_processors


def uninstall_eval_processors() -> None:
    from lerobot.scripts import lerobot_eval

    if _stock_eval_processors is not None:
        lerobot_eval.make_pre_post_processors, lerobot_eval.make_env_pre_post_processors = (
            _stock_eval_processors
        )


def model_card_context(policy_cfg: Any) -> dict[str, Any]:
    """The context LeRobot's ``generate_model_card`` renders its template with, for a policy
    trained without a dataset (RL)."""
    from lerobot.policies.pretrained import _build_card_context

    context = _build_card_context(None, None, policy_cfg.input_features, policy_cfg.output_features)
    context["policy_repo_id"] = getattr(policy_cfg, "repo_id", None)
    context["base_model"] = None
    return context


@dataclass(kw_only=True)
class RecipeTrainConfig(TrainRLServerPipelineConfig):
    """LeRobot's RL pipeline config, unchanged on disk, whose ``validate`` accepts ``dataset: null``,
    an output folder left by a start that failed before its first checkpoint, and a policy
    already resolved from its checkpoint by `parse_train_config`."""

    def _resolve_pretrained_from_cli(self) -> None:
        # Not a dataclass field: the saved train_config.json stays one stock LeRobot parses.
        if getattr(self, "_policy_resolved", False):  # `policy_from_checkpoint` did it already
            return
        super()._resolve_pretrained_from_cli()

    def validate(self) -> None:
        output_dir = self.output_dir
        leftover = not self.resume and isinstance(output_dir, Path) and output_dir.is_dir()
        if leftover and checkpoint_steps_in(output_dir):
            raise InvalidConfigError(
                f"output_dir={output_dir} holds a run with checkpoints (last at step "
                f"{max(checkpoint_steps_in(output_dir))}) and resume is false: set resume=true to "
                "continue it, or choose another output_dir"
            )
        if leftover:  # only what a failed start wrote (logs): start over in it
            self.output_dir = None
        try:
            self._validate_without_dataset()
        finally:
            if leftover:
                self.output_dir = output_dir

    def _validate_without_dataset(self) -> None:
        if self.dataset is not None:  # type: ignore[has-type]
            super().validate()
            return
        # Stock validate reads dataset.repo_id / dataset.eval_split unconditionally; give it an
        # inert stand-in for the duration of the call and put the real value (None) back.
        self.dataset = DatasetConfig(repo_id="")  # type: ignore[has-type]
        try:
            super().validate()
        finally:
            self.dataset = None


def checkpoint_steps_in(output_dir: Path) -> list[int]:
    """Steps of the checkpoints LeRobot's layout holds under ``output_dir/checkpoints``."""
    folder = output_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]


DEPLOYMENT_FIELDS = frozenset({"device", "use_amp", "push_to_hub", "repo_id", "private", "tags", "license"})
"""Policy fields a config may set apart from its checkpoint: where the policy runs and where it is
published, not what it is."""


def policy_from_checkpoint(cfg: RecipeTrainConfig, argv: Sequence[str]) -> None:
    """Build ``cfg.policy`` from its checkpoint's own ``config.json``, as LeRobot's ``--policy.path``
    does: for ``--policy.path=CKPT`` (or ``policy.path`` in the JSON) and for
    ``policy.pretrained_path`` alone. ``--policy.FIELD=...`` overrides apply on top, as in LeRobot.
    The config file's policy block may repeat the checkpoint's values and set
    `DEPLOYMENT_FIELDS`; any other field that differs is refused, named, before anything starts (a
    block of another architecture would build that architecture and fail on the weights)."""
    if cfg.resume:
        return  # LeRobot's resume route: the run's own checkpoint holds the policy
    path = parser.get_path_arg("policy", argv)
    source = "--policy.path" if path else "policy.pretrained_path"
    path = path or (
        str(cfg.policy.pretrained_path) if cfg.policy is not None and cfg.policy.pretrained_path else None
    )
    if path is None:
        return
    if not (Path(path) / "config.json").is_file():
        if parser.get_path_arg("policy", argv):
            return  # not a local folder (a Hub id): LeRobot's own resolution handles it
        raise InvalidConfigError(
            f"{source}={path} is not a policy checkpoint folder (no config.json in it); give a "
            "pretrained_model folder saved by LeRobot or by this learner"
        )
    overrides = parser.get_yaml_overrides("policy") + (parser.get_cli_overrides("policy", argv) or [])
    checkpoint = load_policy_config(path, cli_overrides=overrides)
    block = _config_policy_block(argv)
    if cfg.policy is not None and block:
        if block.get("type", checkpoint.type) != checkpoint.type:
            raise InvalidConfigError(
                f"the config's policy block is type '{block['type']}' but {source}={path} is a "
                f"'{checkpoint.type}' checkpoint: drop the policy block's fields, or fix the path"
            )
        differing = []
        for name in sorted(set(block) - {"type", "pretrained_path", "path"}):
            if not hasattr(checkpoint, name):
                continue  # draccus already refused unknown fields
            ours = getattr(cfg.policy, name)
            if name in DEPLOYMENT_FIELDS:
                setattr(checkpoint, name, ours)
            elif _plain(ours) != _plain(getattr(checkpoint, name)):
                differing.append(name)
        if differing:
            raise InvalidConfigError(
                f"the config's policy block contradicts the checkpoint {source}={path} in "
                f"{', '.join(differing)}: the checkpoint's own config builds the policy, so drop these "
                "fields from the block (or override them with --policy.FIELD=..., as with --policy.path)"
            )
    checkpoint.pretrained_path = Path(path)
    cfg.policy = checkpoint
    cfg._policy_resolved = True  # type: ignore[attr-defined]


def _config_policy_block(argv: Sequence[str]) -> dict[str, Any]:
    config_path = parser.parse_arg("config_path", argv)
    if not config_path or not config_path.endswith(".json") or not Path(config_path).is_file():
        return {}
    block = json.loads(Path(config_path).read_text()).get("policy")
    return block if isinstance(block, dict) else {}


def _plain(value: Any) -> Any:
    """A value as JSON would hold it, so a decoded block and a checkpoint compare field by field."""
    import draccus

    try:
        return json.loads(json.dumps(draccus.encode(value), default=str))
    except Exception:  # noqa: BLE001 - a value draccus cannot encode compares as itself
        return value


def validate_for_actor(cfg: RecipeTrainConfig) -> None:
    """``validate()`` for an actor sharing the learner's config and output directory.

    Stock validation refuses an existing ``output_dir`` (unless resuming, which has other effects),
    but an actor always starts after its learner created it: validate without the directory, then
    put it back.
    """
    output_dir = cfg.output_dir
    cfg.output_dir = None
    try:
        cfg.validate()
    finally:
        cfg.output_dir = output_dir


def parse_train_config(argv: Sequence[str]) -> RecipeTrainConfig:
    """Parse ``--config_path=... --field=...`` exactly as LeRobot's ``parser.wrap`` does."""

    from .envs import register_env_plugins

    register_env_plugins()  # env types from plugins must be known before draccus reads `env`

    @parser.wrap()
    def capture(cfg: RecipeTrainConfig) -> RecipeTrainConfig:
        return cfg

    saved = sys.argv
    sys.argv = [saved[0] if saved else "lerobot-pirl", *argv]
    try:
        cfg = capture()
        policy_from_checkpoint(cfg, argv)
        validate_algorithm = getattr(cfg.algorithm, "validate", None)
        if callable(validate_algorithm):
            validate_algorithm()  # e.g. PiRLConfig: every bad field, before anything starts
        validate_train_config = getattr(cfg.algorithm, "validate_train_config", None)
        if callable(validate_train_config):
            validate_train_config(cfg)  # e.g. DSRLConfig: the policy and env it needs
        return cfg
    except ValueError as exc:
        raise InvalidConfigError(str(exc)) from exc
    finally:
        sys.argv = saved


def run_stock_learner(cfg: TrainRLServerPipelineConfig) -> None:
    """LeRobot's learner (``lerobot.rl.learner.train_cli`` minus its argv parsing)."""
    from lerobot.rl import learner
    from lerobot.utils.import_utils import require_package
    from lerobot.utils.process import ensure_multiprocessing_start_method

    require_package("grpcio", extra="hilserl", import_name="grpc")
    if not learner.use_threads(cfg):
        ensure_multiprocessing_start_method(cfg.policy.concurrency.multiprocessing_context)
    learner.train(cfg, job_name=cfg.job_name)


def install_actor_env_path() -> None:
    """Let LeRobot's actor drive any ``EnvConfig`` type, not only ``gym_manipulator``.

    ``lerobot.rl.actor.act_with_policy`` builds its env with ``make_robot_env(cfg.env)`` and
    ``make_processors(...)``, names it imports from ``gym_manipulator`` and looks up in its own
    module when it runs; both know only ``gym_manipulator`` configs (a real robot or gym-hil).
    For those they stay LeRobot's. For every other env type the env is the one env of LeRobot's
    ``make_env(cfg.env, n_envs=1)`` without its vector wrapper, with no teleop, and the processors
    are LeRobot's own steps for a simulated env (those of its gym-hil pipeline that do not assume
    gym-hil's info keys): actions torch → numpy through the intervention step (which records the
    executed action where the actor reads it), observations numpy → torch in policy keys with a
    batch dim on the policy's device.
    """
    from lerobot.rl import actor

    stock_env, stock_processors = _stock_actor_env_path()

    def make_robot_env(cfg: Any) -> tuple[Any, Any]:
        if isinstance(cfg, HILSerlRobotEnvConfig):
            return stock_env(cfg)
        from lerobot.envs import make_env

        [vector_env] = [env for tasks in make_env(cfg, n_envs=1).values() for env in tasks.values()]
        return vector_env.envs[0], None

    def make_processors(env: Any, teleop: Any, cfg: Any, device: str = "cpu") -> tuple[Any, Any]:
        if isinstance(cfg, HILSerlRobotEnvConfig):
            return stock_processors(env, teleop, cfg, device)
        from lerobot.processor import (
            AddBatchDimensionProcessorStep,
            DataProcessorPipeline,
            DeviceProcessorStep,
            InterventionActionProcessorStep,
            Numpy2TorchActionProcessorStep,
            Torch2NumpyActionProcessorStep,
            VanillaObservationProcessorStep,
            identity_transition,
        )

        env_steps = [
            Numpy2TorchActionProcessorStep(),
            VanillaObservationProcessorStep(),
            AddBatchDimensionProcessorStep(),
            DeviceProcessorStep(device=device),
        ]
        action_steps = [InterventionActionProcessorStep(), Torch2NumpyActionProcessorStep()]
        return (
            DataProcessorPipeline(
                steps=env_steps, to_transition=identity_transition, to_output=identity_transition
            ),
            DataProcessorPipeline(
                steps=action_steps, to_transition=identity_transition, to_output=identity_transition
            ),
        )

    actor.make_robot_env = make_robot_env
    actor.make_processors = make_processors


def uninstall_actor_env_path() -> None:
    from lerobot.rl import actor

    actor.make_robot_env, actor.make_processors = _stock_actor_env_path()


def run_stock_actor(cfg: RecipeTrainConfig) -> None:
    """LeRobot's actor (``lerobot.rl.actor.actor_cli``), called with an already parsed config.

    ``actor_cli`` starts with ``cfg.validate()``, which refuses the output directory its learner
    has already created; the config is validated as an actor's (`validate_for_actor`) instead.
    """
    from lerobot.rl import actor

    validate_for_actor(cfg)
    cfg.validate = lambda: None  # type: ignore[method-assign]  # done above, as an actor's
    actor.actor_cli.__wrapped__(cfg)  # parser.wrap keeps the undecorated function here
