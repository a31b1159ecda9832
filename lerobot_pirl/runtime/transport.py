"""The gRPC transport between a learner and its actors, assembled from LeRobot's parts.

The learner serves LeRobot's ``LearnerService`` (transitions and interaction messages in, weights
out) with every weight update broadcast to every admitted actor (`LatestWeights`), a bounded
number of actors (admission), TLS and a token (``runtime.security``). Actors connect with LeRobot's
stubs and chunked streams (`connect_actor` → `ActorLink`). The stock ``start_learner`` reads
SAC-only policy fields for the same values, hence `start_learner_server`. LeRobot behaviour this
relies on (``LearnerService``'s constructor, ``MAX_MESSAGE_SIZE``, chunking) is pinned in
``tests/runtime/test_seam.py``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import LerobotPirlError


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


class LearnerUnavailableError(LerobotPirlError, ConnectionError):
    """No learner answered within the configured attempts (or the actor was stopped meanwhile)."""


class LearnerRefusedError(LerobotPirlError, ConnectionError):
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
