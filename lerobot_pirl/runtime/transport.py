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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import LerobotPirlError

TRAINING_OVER = "lerobot_pirl.training_over"
"""Key of the last payload a learner publishes: no more weights will come (its value: the updates)."""


class LatestWeights:
    """The newest serialized weights and their version, for every actor stream to pick up, and
    which version each open stream has sent (so a learner can wait until its last word is out)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._version = -1
        self._payload: bytes | None = None
        self._sent: dict[int, int] = {}  # open stream -> last version it handed to gRPC

    @property
    def version(self) -> int:
        """The newest published version (-1 before the first)."""
        with self._condition:
            return self._version

    def stream_sent(self, stream: int, version: int) -> None:
        with self._condition:
            self._sent[stream] = version
            self._condition.notify_all()

    def stream_closed(self, stream: int) -> None:
        with self._condition:
            self._sent.pop(stream, None)
            self._condition.notify_all()

    def wait_delivered(self, version: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every open stream has sent ``version``."""
        with self._condition:
            return self._condition.wait_for(
                lambda: all(sent >= version for sent in self._sent.values()), timeout=timeout
            )

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
    streams_stop: Any = None,
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
    (`runtime.security.TransportSecurity`) adds TLS and the token check. Parameter streams end on
    ``streams_stop`` (default: ``shutdown_event``), so a learner that stops taking data can still
    send its last payload (`TRAINING_OVER`).
    """
    from .security import TokenInterceptor, TransportSecurity, server_credentials

    streams_stop = streams_stop if streams_stop is not None else shutdown_event

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
            stream, sent = id(context), -1
            weights.stream_sent(stream, sent)
            context.add_callback(lambda: weights.stream_closed(stream))
            while not streams_stop.is_set() and context.is_active():
                version, payload = weights.newer_than(sent, timeout=self.queue_get_timeout)
                if payload is None:
                    continue
                yield from send_bytes_in_chunks(payload, services_pb2.Parameters, silent=True)
                sent = version
                weights.stream_sent(stream, sent)
            weights.stream_closed(stream)
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
    streams_busy: list[Any] = field(default_factory=list)
    """Per sending stream, set while gRPC's request thread is inside the stream's queue read."""
    queue_get_timeout: float = 1.0

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
        """Stop the sending streams and wait (bounded) until no gRPC thread reads their queues any
        more: a read still waiting would take a payload meant for a new link, or find the queue
        closed under it at exit."""
        self.senders_stop.set()
        for busy in self.streams_busy:
            _wait_clear(busy, self.queue_get_timeout + 1.0)


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
    import grpc
    from lerobot.rl import actor as stock_actor
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import receive_bytes_in_chunks
    from torch.multiprocessing import Queue

    from .security import TransportSecurity, actor_channel

    security = security or TransportSecurity()
    metadata = security.metadata()
    stub = services_pb2_grpc.LearnerServiceStub(actor_channel(host, port, security))
    _await_learner(stub, shutdown_event, attempts, f"{host}:{port}", metadata, tls=security.tls)
    link = ActorLink(
        Queue(), Queue(), Queue(), [], senders_stop=threading.Event(), queue_get_timeout=queue_get_timeout
    )

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
        stream = stock_actor.transitions_stream(link.senders_stop, link.transitions, queue_get_timeout)
        stub.SendTransitions(count_handed_over(_tracked(stream, link)), metadata=metadata)

    def send_interactions() -> None:
        stream = stock_actor.interactions_stream(link.senders_stop, link.interactions, queue_get_timeout)
        stub.SendInteractions(_tracked(stream, link), metadata=metadata)

    for target in (receive, send_transitions, send_interactions):  # order: see sender_threads
        thread = threading.Thread(target=_ignore_rpc_shutdown(target), daemon=True)
        thread.start()
        link.threads.append(thread)
    return link


def _tracked(messages: Any, link: ActorLink) -> Any:
    """``messages`` with a flag on ``link`` that is set while the next one is being read (gRPC
    reads request streams on a thread of its own, which `ActorLink.stop_senders` waits for)."""
    busy = threading.Event()
    link.streams_busy.append(busy)
    while True:
        busy.set()
        try:
            message = next(messages)
        except StopIteration:
            return
        finally:
            busy.clear()
        yield message


def _wait_clear(event: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while event.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)


def _await_learner(
    stub: Any,
    shutdown_event: Any,
    attempts: int,
    address: str,
    metadata: tuple[tuple[str, str], ...],
    *,
    tls: bool = False,
) -> None:
    """LeRobot's ``Ready`` handshake, retried while the learner is not up yet; a refusal
    (RESOURCE_EXHAUSTED: the learner is at ``max_actors``; UNAUTHENTICATED: a missing or wrong
    token) raises at once with the learner's reason.

    LeRobot's ``establish_learner_connection`` retries every error alike, so a refused actor would
    wait out all its attempts and report only that no learner answered.
    """
    import grpc
    from lerobot.transport import services_pb2

    last_error = ""
    for attempt in range(attempts):
        if shutdown_event.is_set():
            raise LearnerUnavailableError(f"shut down while waiting for the learner at {address}")
        try:
            stub.Ready(services_pb2.Empty(), metadata=metadata, timeout=10)
            return
        except grpc.RpcError as exc:
            last_error = str(exc.details())
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
    causes = [
        "no learner is running there (not started yet, crashed, or already finished training: see its log)",
        "algorithm.learner_host / learner_port differ between the learner's config and the actor's",
    ]
    if tls:
        causes.append(
            "the learner serves plaintext (no algorithm.tls_cert_path on the learner), or a "
            "certificate that does not name this host or is not signed by the actor's tls_ca_path"
        )
    elif "refused" not in last_error.lower():  # something listens there but the connection broke
        causes = [
            "the learner serves TLS: this actor needs algorithm.tls_ca_path (or tls_cert_path for "
            "a self-signed certificate)",
            *causes,
        ]
    raise LearnerUnavailableError(
        f"no learner answered at {address} after {attempts} attempts; likely: " + "; or ".join(causes)
    )


def _ignore_rpc_shutdown(target: Any) -> Any:
    import grpc

    def run() -> None:
        try:
            target()
        except grpc.RpcError as exc:  # the learner went away; the actor loop notices via timeouts
            logging.warning(f"[ACTOR] stream closed: {exc.code() if hasattr(exc, 'code') else exc}")

    return run
