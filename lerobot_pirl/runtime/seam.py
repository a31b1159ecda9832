"""The one place that reaches into LeRobot internals.

Everything here depends on LeRobot 0.6 behaviour that is not a public API; `tests/rl/test_seam.py`
pins each point so a LeRobot upgrade breaks loudly here and nowhere else:

- ``lerobot.rl.algorithms.factory.get_algorithm_class`` is a hard-coded ``if name == "sac"``, and
  ``make_algorithm`` looks it up in the factory module at call time. Replacing that one function
  lets our registry answer for LeRobot's own learner and actor loops.
- ``TrainPipelineConfig.validate`` dereferences ``dataset.repo_id`` although RL configs may omit
  the dataset; `RecipeTrainConfig` keeps that crash away from users.
- ``lerobot.configs.parser.wrap`` reads ``sys.argv``; `parse_train_config` feeds it ours.
- ``LearnerService``'s constructor and LeRobot's gRPC message-size limits, which
  `start_learner_server` assembles into a server (the stock ``start_learner`` reads SAC-only policy
  fields for the same values).
"""

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lerobot.configs import parser
from lerobot.configs.default import DatasetConfig
from lerobot.rl.algorithms import factory
from lerobot.rl.algorithms.base import RLAlgorithm
from lerobot.rl.train_rl import TrainRLServerPipelineConfig

from ..recipes.registry import RecipeCatalog
from .adapter import algorithm_class

_STOCK_GET_ALGORITHM_CLASS = factory.get_algorithm_class


def install_recipe_lookup(catalog: RecipeCatalog) -> None:
    """Make LeRobot's ``make_algorithm`` build every algorithm through the recipe registry."""

    def get_algorithm_class(name: str) -> type[RLAlgorithm]:
        return algorithm_class(catalog.resolve(name))

    factory.get_algorithm_class = get_algorithm_class


def uninstall_recipe_lookup() -> None:
    factory.get_algorithm_class = _STOCK_GET_ALGORITHM_CLASS


@dataclass(kw_only=True)
class RecipeTrainConfig(TrainRLServerPipelineConfig):
    """LeRobot's RL pipeline config, unchanged on disk, whose ``validate`` accepts ``dataset: null``."""

    def validate(self) -> None:
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


def parse_train_config(argv: Sequence[str]) -> RecipeTrainConfig:
    """Parse ``--config_path=... --field=...`` exactly as LeRobot's ``parser.wrap`` does."""

    @parser.wrap()
    def capture(cfg: RecipeTrainConfig) -> RecipeTrainConfig:
        return cfg

    saved = sys.argv
    sys.argv = [saved[0] if saved else "lerobot-pirl", *argv]
    try:
        return capture()
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


def run_stock_actor(cfg: TrainRLServerPipelineConfig) -> None:
    """LeRobot's actor (``lerobot.rl.actor.actor_cli``), called with an already parsed config."""
    from lerobot.rl import actor

    actor.actor_cli.__wrapped__(cfg)  # parser.wrap keeps the undecorated function here


def start_learner_server(
    host: str,
    port: int,
    *,
    shutdown_event: Any,
    parameters_queue: Any,
    transition_queue: Any,
    interaction_queue: Any,
    seconds_between_pushes: float,
    queue_get_timeout: float,
    max_actors: int = 4,
) -> Any:
    """LeRobot's gRPC ``LearnerService`` on ``host:port``, served from a thread pool.

    Each actor holds three streams (parameters, transitions, interactions); the pool is sized for
    ``max_actors`` of them so one actor cannot starve the next.
    """
    import grpc
    from lerobot.rl.learner_service import LearnerService
    from lerobot.transport import services_pb2_grpc
    from lerobot.transport.utils import MAX_MESSAGE_SIZE

    service = LearnerService(
        shutdown_event=shutdown_event,
        parameters_queue=parameters_queue,
        seconds_between_pushes=seconds_between_pushes,
        transition_queue=transition_queue,
        interaction_message_queue=interaction_queue,
        queue_get_timeout=queue_get_timeout,
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=3 * max_actors),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
        ],
    )
    services_pb2_grpc.add_LearnerServiceServicer_to_server(service, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"learner could not bind {host}:{port} (in use?)")
    server.start()
    return server
