"""TLS and the shared-secret token between learner and actors, on localhost with a certificate
generated in the test (``lerobot-pirl tls-keygen``'s generator)."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
import torch
from helpers.configs import free_port
from helpers.grpc_client import marked_transition
from lerobot.transport.utils import (
    bytes_to_state_dict,
    bytes_to_transitions,
    state_to_bytes,
    transitions_to_bytes,
)
from torch.multiprocessing import Queue

from lerobot_pirl.runtime import transport
from lerobot_pirl.runtime.security import (
    TokenInterceptor,
    TransportConfigError,
    TransportSecurity,
    actor_security,
    generate_self_signed,
    learner_security,
)

TOKEN = "s3cret-token-for-the-test"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return generate_self_signed(tmp_path_factory.mktemp("tls"), ["localhost", "127.0.0.1"])


def _settings(**fields) -> SimpleNamespace:
    """The transport fields of `PiRLConfig` (defaults as there)."""
    defaults = dict(
        learner_host="127.0.0.1",
        tls_cert_path=None,
        tls_key_path=None,
        tls_ca_path=None,
        auth_token_env=None,
        auth_token_file=None,
        allow_insecure_remote=False,
    )
    return SimpleNamespace(**{**defaults, **fields})


class _Learner:
    """LeRobot's LearnerService as the on-policy learner serves it, with security."""

    def __init__(self, security: TransportSecurity) -> None:
        self.port, self.shutdown, self.weights = free_port(), threading.Event(), transport.LatestWeights()
        self.transitions: Queue = Queue()
        self.server = transport.start_learner_server(
            "127.0.0.1",
            self.port,
            shutdown_event=self.shutdown,
            weights=self.weights,
            transition_queue=self.transitions,
            interaction_queue=Queue(),
            queue_get_timeout=0.1,
            max_actors=4,
            security=security,
        )
        self.weights.publish(state_to_bytes({"w": torch.arange(3.0)}))

    def close(self) -> None:
        self.shutdown.set()
        self.server.stop(grace=1).wait(timeout=10)
        self.transitions.cancel_join_thread()


def _episode(marker: float) -> bytes:
    return transitions_to_bytes([marked_transition(marker)])


def _close(link: transport.ActorLink, stop: threading.Event) -> None:
    stop.set()
    link.stop_senders()
    for thread in link.threads:
        thread.join(timeout=10)
    for q in (link.parameters, link.transitions, link.interactions):
        q.cancel_join_thread()


@pytest.mark.timeout(120)
def test_tls_with_the_right_token_serves_weights_and_delivers_episodes(certificate, monkeypatch) -> None:
    cert, key = certificate
    monkeypatch.setenv("PIRL_TEST_TOKEN", TOKEN)
    fields = dict(tls_cert_path=str(cert), tls_key_path=str(key), auth_token_env="PIRL_TEST_TOKEN")
    learner = _Learner(learner_security(_settings(**fields)))
    stop = threading.Event()
    link = transport.connect_actor(
        "localhost", learner.port, stop, 0.1, attempts=3, security=actor_security(_settings(**fields))
    )
    try:
        assert torch.equal(bytes_to_state_dict(link.parameters.get(timeout=30))["w"], torch.arange(3.0))
        link.transitions.put(_episode(7.0))
        assert bytes_to_transitions(learner.transitions.get(timeout=30))[0]["reward"] == 7.0
    finally:
        _close(link, stop)
        learner.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("offered", ["wrong-token", None])
def test_a_wrong_or_missing_token_is_refused_before_anything_is_read(certificate, offered) -> None:
    cert, key = certificate
    learner = _Learner(TransportSecurity(cert.read_bytes(), key.read_bytes(), None, TOKEN))
    client = TransportSecurity(None, None, cert.read_bytes(), offered)
    try:
        with pytest.raises(
            transport.LearnerRefusedError, match=r"refused this actor: missing or wrong token"
        ):
            transport.connect_actor(
                "127.0.0.1", learner.port, threading.Event(), 0.1, attempts=3, security=client
            )
        # An upload straight past the handshake: refused by the interceptor, nothing reaches the queue.
        from lerobot.transport import services_pb2, services_pb2_grpc
        from lerobot.transport.utils import send_bytes_in_chunks

        from lerobot_pirl.runtime.security import actor_channel

        channel = actor_channel("127.0.0.1", learner.port, client)
        stub = services_pb2_grpc.LearnerServiceStub(channel)
        chunks = send_bytes_in_chunks(_episode(1.0), services_pb2.Transition, silent=True)
        with pytest.raises(grpc.RpcError) as err:
            stub.SendTransitions(chunks, metadata=client.metadata(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        channel.close()
        with pytest.raises(queue.Empty):
            learner.transitions.get(timeout=1)
    finally:
        learner.close()


@pytest.mark.timeout(120)
def test_a_plaintext_actor_cannot_talk_to_a_tls_learner(certificate) -> None:
    cert, key = certificate
    learner = _Learner(TransportSecurity(cert.read_bytes(), key.read_bytes(), None, None))
    try:
        with pytest.raises(
            ConnectionError,
            match=r"no learner answered .* the learner serves TLS: this actor needs algorithm.tls_ca_path",
        ):
            transport.connect_actor("127.0.0.1", learner.port, threading.Event(), 0.1, attempts=1)
    finally:
        learner.close()


def test_the_token_check_compares_the_whole_bearer_value() -> None:
    interceptor = TokenInterceptor(TOKEN)
    real = grpc.unary_unary_rpc_method_handler(lambda request, context: b"ok")

    def call(metadata):
        return interceptor.intercept_service(lambda _: real, SimpleNamespace(invocation_metadata=metadata))

    assert call((("authorization", f"Bearer {TOKEN}"),)) is real
    for metadata in ((), (("authorization", TOKEN),), (("authorization", f"Bearer {TOKEN}x"),)):
        assert call(metadata) is not real
    assert interceptor.refused == 3


def test_settings_that_cannot_work_are_refused_by_name(certificate, tmp_path, monkeypatch) -> None:
    cert, key = certificate
    monkeypatch.delenv("PIRL_UNSET_TOKEN", raising=False)
    cases = {
        "tls_key_path is set without tls_cert_path": _settings(tls_key_path=str(key)),
        "tls_cert_path is set without tls_key_path": _settings(tls_cert_path=str(cert)),
        "auth_token_env='PIRL_UNSET_TOKEN' names an unset or empty variable": _settings(
            auth_token_env="PIRL_UNSET_TOKEN"
        ),
        "auth_token_env and auth_token_file are both set": _settings(
            auth_token_env="PIRL_UNSET_TOKEN", auth_token_file=str(tmp_path / "t")
        ),
        f"tls_cert_path={str(tmp_path / 'none.crt')!r} cannot be read": _settings(
            tls_cert_path=str(tmp_path / "none.crt"), tls_key_path=str(key)
        ),
        "learner_host='0.0.0.0' accepts connections from other machines without TLS and a token": _settings(
            learner_host="0.0.0.0"
        ),
    }
    for message, settings in cases.items():
        with pytest.raises(TransportConfigError) as err:
            learner_security(settings)
        assert message in str(err.value)


def test_an_insecure_remote_bind_needs_the_flag_and_warns(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        security = learner_security(_settings(learner_host="0.0.0.0", allow_insecure_remote=True))
    assert security == TransportSecurity()
    assert "INSECURE: 0.0.0.0 is reachable from other machines" in caplog.text


def test_the_token_comes_from_a_file_and_never_shows_in_a_repr_or_log(tmp_path, caplog) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    with caplog.at_level(logging.DEBUG):
        security = actor_security(_settings(auth_token_file=str(token_file)))
        logging.getLogger().info(f"security: {security}")
    assert security.token == TOKEN and security.metadata() == (("authorization", f"Bearer {TOKEN}"),)
    assert TOKEN not in repr(security) and TOKEN not in caplog.text


@pytest.mark.timeout(120)
def test_a_plaintext_actor_with_no_learner_gets_no_tls_hint() -> None:
    from helpers.configs import free_port

    with pytest.raises(ConnectionError) as refused:
        transport.connect_actor("127.0.0.1", free_port(), threading.Event(), 0.1, attempts=1)
    message = str(refused.value)
    assert "no learner is running there" in message and "learner_port differ" in message
    assert "TLS" not in message and "tls" not in message
