"""The one place that reaches into LeRobot internals.

Everything here depends on LeRobot 0.6 behaviour that is not a public API; `tests/rl/test_seam.py`
pins each point so a LeRobot upgrade breaks loudly here and nowhere else:

- ``lerobot.rl.algorithms.factory.get_algorithm_class`` is a hard-coded ``if name == "sac"``, and
  ``make_algorithm`` looks it up in the factory module at call time. Replacing that one function
  lets our registry answer for LeRobot's own learner and actor loops.
- ``TrainPipelineConfig.validate`` dereferences ``dataset.repo_id`` although RL configs may omit
  the dataset; `RecipeTrainConfig` keeps that crash away from users.
- ``lerobot.configs.parser.wrap`` reads ``sys.argv``; `parse_train_config` feeds it ours.
- ``lerobot.rl.actor`` builds its env through ``make_robot_env`` / ``make_processors`` looked up in
  its module at call time; `install_actor_env_path` answers for env types other than
  ``gym_manipulator`` there.
- ``lerobot.scripts.lerobot_eval.eval_main`` calls ``make_pre_post_processors`` and
  ``make_env_pre_post_processors`` through its module's namespace at call time;
  `install_eval_processors` answers there (bundled tokenizers, XVLA's LIBERO steps for non-LIBERO
  envs: ``runtime.lerobot_eval``).
- ``lerobot.policies.pretrained._build_card_context`` fills LeRobot's model-card template
  (``generate_model_card`` would also validate the card online); `model_card_context` calls it.
- ``LearnerService``'s constructor and LeRobot's gRPC message-size limits, which
  `start_learner_server` assembles into a server (the stock ``start_learner`` reads SAC-only policy
  fields for the same values).
"""

import logging
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lerobot.configs import parser
from lerobot.configs.default import DatasetConfig
from lerobot.envs.configs import HILSerlRobotEnvConfig
from lerobot.rl.algorithms import factory
from lerobot.rl.algorithms.base import RLAlgorithm
from lerobot.rl.train_rl import TrainRLServerPipelineConfig

from ..recipes.registry import RecipeCatalog, RecipeError
from .adapter import algorithm_class

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


class InvalidConfigError(RecipeError, ValueError):
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


class LatestWeights:
    """The newest serialized weights and their version, for every actor stream to pick up."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._version = -1
        self._payload: bytes | None = None

    def publish(self, payload: bytes) -> int:
        with self._condition:
            self._version += 1
            self._payload = payload
            self._condition.notify_all()
            return self._version

    def newer_than(self, version: int, timeout: float) -> tuple[int, bytes | None]:
        with self._condition:
            self._condition.wait_for(lambda: self._version > version, timeout=timeout)
            if self._version > version:
                return self._version, self._payload
            return version, None


SPARE_RPC_WORKERS = 4
"""gRPC workers beyond the three per admitted actor: ``Ready`` calls and refusals never wait."""


class _Admission:
    """A count of open parameter streams, bounded by ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        return self.open >= self.limit

    def admit(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.open -= 1


class LearnerUnavailableError(RecipeError, ConnectionError):
    """No learner answered within the configured attempts (or the actor was stopped meanwhile)."""


class LearnerRefusedError(RecipeError, ConnectionError):
    """The learner answered but will not serve this actor; the message says why and what to change."""


def start_learner_server(
    host: str,
    port: int,
    *,
    shutdown_event: Any,
    weights: LatestWeights,
    transition_queue: Any,
    interaction_queue: Any,
    queue_get_timeout: float,
    max_actors: int,
    security: Any = None,
) -> Any:
    """LeRobot's gRPC ``LearnerService`` on ``host:port``, pushing every weight update to every actor.

    Stock ``StreamParameters`` drains one shared queue, so with several actors each push reaches only
    one of them; the subclass below serves the latest weights to each stream instead. Each actor
    holds three streams (parameters, transitions, interactions). The worker pool fits
    ``max_actors`` of them plus spares, and gRPC refuses RPCs beyond the pool
    (``maximum_concurrent_rpcs``) instead of queueing them. An actor's parameter stream is its
    admission: once ``max_actors`` are open, ``Ready`` and further parameter streams are refused
    with RESOURCE_EXHAUSTED and a message naming ``algorithm.max_actors``; a stream's slot is
    released when its RPC ends (the actor stopped, died or disconnected). ``security``
    (`runtime.security.TransportSecurity`) adds TLS and the token check.
    """
    from .security import TokenInterceptor, TransportSecurity, server_credentials

    security = security or TransportSecurity()
    import grpc
    from lerobot.rl.learner_service import LearnerService
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import MAX_MESSAGE_SIZE, send_bytes_in_chunks
    from torch.multiprocessing import Queue

    admission = _Admission(max_actors)
    refusal = (
        f"it already serves algorithm.max_actors={max_actors} actors; "
        "raise max_actors in the learner's config or stop an actor"
    )

    class BroadcastLearnerService(LearnerService):
        def Ready(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
            if admission.full:  # a hint only: the parameter stream is the real admission
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
            return services_pb2.Empty()

        def StreamParameters(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
            if not admission.admit():
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
            context.add_callback(admission.release)  # runs once, when the RPC ends for any reason
            sent = -1
            while not self.shutdown_event.is_set() and context.is_active():
                version, payload = weights.newer_than(sent, timeout=self.queue_get_timeout)
                if payload is None:
                    continue
                yield from send_bytes_in_chunks(payload, services_pb2.Parameters, silent=True)
                sent = version
            return services_pb2.Empty()

    service = BroadcastLearnerService(
        shutdown_event=shutdown_event,
        parameters_queue=Queue(),  # unused: weights are served from `weights`
        seconds_between_pushes=0.0,
        transition_queue=transition_queue,
        interaction_message_queue=interaction_queue,
        queue_get_timeout=queue_get_timeout,
    )
    workers = 3 * max_actors + SPARE_RPC_WORKERS
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
        ],
        maximum_concurrent_rpcs=workers,
        interceptors=[TokenInterceptor(security.token)] if security.token else None,
    )
    services_pb2_grpc.add_LearnerServiceServicer_to_server(service, server)
    credentials = server_credentials(security)
    bound = (
        server.add_insecure_port(f"{host}:{port}")
        if credentials is None
        else server.add_secure_port(f"{host}:{port}", credentials)
    )
    if bound == 0:
        raise OSError(f"learner could not bind {host}:{port} (in use?)")
    server.start()
    return server


@dataclass
class ActorLink:
    """An actor's three gRPC streams to the learner, fed and drained through queues.

    ``transitions_handed_over`` counts the payloads put on ``transitions`` whose last chunk gRPC
    has taken from the stream (it asks for the next message only once it has written the previous
    one to the call). That is "handed to the gRPC call", not an acknowledgement: a process killed
    right after can still lose what the transport had buffered.

    The two sending streams stop on ``senders_stop``, not on the actor's shutdown event: a SIGTERM
    stops acting at once, while what is already queued still goes out (`stop_senders` after it).
    """

    parameters: Any
    transitions: Any
    interactions: Any
    threads: list[Any]
    senders_stop: Any
    transitions_handed_over: int = 0
    refusal: str | None = None
    """Set when the learner refused this actor's parameter stream (e.g. ``max_actors`` reached)."""

    @property
    def sender_threads(self) -> list[Any]:
        """The transitions and interactions streams' threads (they end after `stop_senders`)."""
        return self.threads[1:]

    def broken(self) -> bool:
        """A stream ended although the actor did not stop it: the learner went away."""
        return not self.senders_stop.is_set() and any(not thread.is_alive() for thread in self.threads)

    def take_unsent(self, timeout: float = 0.5) -> tuple[list[bytes], list[bytes]]:
        """Stop the streams and return the payloads still queued (transitions, interactions), in
        order, so a new link can send them."""
        self.stop_senders()
        for thread in self.sender_threads:
            thread.join(timeout=5.0)
        unsent: tuple[list[bytes], list[bytes]] = ([], [])
        for q, items in ((self.transitions, unsent[0]), (self.interactions, unsent[1])):
            while True:
                try:  # a short wait: a put may still be in the queue's feeder thread
                    items.append(q.get(timeout=timeout))
                except Exception:  # queue.Empty
                    break
            q.cancel_join_thread()
        self.parameters.cancel_join_thread()
        return unsent

    def stop_senders(self) -> None:
        self.senders_stop.set()


def connect_actor(
    host: str,
    port: int,
    shutdown_event: Any,
    queue_get_timeout: float,
    attempts: int = 30,
    security: Any = None,
) -> ActorLink:
    """Connect to a learner with LeRobot's actor transport (streams, chunked messages).

    LeRobot's ``receive_policy`` / ``send_transitions`` read SAC-only policy fields for their
    settings, and its ``learner_service_client`` is plaintext only, so the channel (LeRobot's
    options; TLS and the token when ``security`` has them) and the streams are opened here from
    the same building blocks.
    """
    import threading

    import grpc
    from lerobot.rl import actor as stock_actor
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import receive_bytes_in_chunks
    from torch.multiprocessing import Queue

    from .security import TransportSecurity, actor_channel

    security = security or TransportSecurity()
    metadata = security.metadata()
    stub = services_pb2_grpc.LearnerServiceStub(actor_channel(host, port, security))
    _await_learner(stub, shutdown_event, attempts, f"{host}:{port}", metadata)
    link = ActorLink(Queue(), Queue(), Queue(), [], senders_stop=threading.Event())

    def receive() -> None:
        try:
            stream = stub.StreamParameters(services_pb2.Empty(), metadata=metadata)
            receive_bytes_in_chunks(stream, link.parameters, shutdown_event)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                link.refusal = exc.details()
            raise

    def count_handed_over(messages: Any) -> Any:
        for message in messages:
            yield message
            # Resumed: gRPC has written this message and asks for the next one.
            if message.transfer_state == services_pb2.TransferState.TRANSFER_END:
                link.transitions_handed_over += 1

    def send_transitions() -> None:
        stub.SendTransitions(
            count_handed_over(
                stock_actor.transitions_stream(link.senders_stop, link.transitions, queue_get_timeout)
            ),
            metadata=metadata,
        )

    def send_interactions() -> None:
        stub.SendInteractions(
            stock_actor.interactions_stream(link.senders_stop, link.interactions, queue_get_timeout),
            metadata=metadata,
        )

    for target in (receive, send_transitions, send_interactions):  # order: see sender_threads
        thread = threading.Thread(target=_ignore_rpc_shutdown(target), daemon=True)
        thread.start()
        link.threads.append(thread)
    return link


def _await_learner(
    stub: Any, shutdown_event: Any, attempts: int, address: str, metadata: tuple[tuple[str, str], ...]
) -> None:
    """LeRobot's ``Ready`` handshake, retried while the learner is not up yet; a refusal
    (RESOURCE_EXHAUSTED: the learner is at ``max_actors``; UNAUTHENTICATED: a missing or wrong
    token) raises at once with the learner's reason.

    LeRobot's ``establish_learner_connection`` retries every error alike, so a refused actor would
    wait out all its attempts and report only that no learner answered.
    """
    import grpc
    from lerobot.transport import services_pb2

    for attempt in range(attempts):
        if shutdown_event.is_set():
            raise LearnerUnavailableError(f"shut down while waiting for the learner at {address}")
        try:
            stub.Ready(services_pb2.Empty(), metadata=metadata, timeout=10)
            return
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED):
                raise LearnerRefusedError(
                    f"the learner at {address} refused this actor: {exc.details()}"
                ) from None
            wait = min(0.5 * 2**attempt, 5.0)  # backoff: 0.5, 1, 2, 4, then every 5 s
            logging.info(
                f"[ACTOR] waiting for the learner at {address} (attempt {attempt + 1}/{attempts}, "
                f"{exc.code()}); next try in {wait:.1f}s"
            )
            shutdown_event.wait(wait)
    raise LearnerUnavailableError(
        f"no learner answered at {address} after {attempts} attempts (a learner serving TLS needs "
        "algorithm.tls_ca_path or tls_cert_path on the actor)"
    )


def _ignore_rpc_shutdown(target: Any) -> Any:
    import grpc

    def run() -> None:
        try:
            target()
        except grpc.RpcError as exc:  # the learner went away; the actor loop notices via timeouts
            logging.warning(f"[ACTOR] stream closed: {exc.code() if hasattr(exc, 'code') else exc}")

    return run
