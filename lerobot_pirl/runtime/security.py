"""Opt-in TLS and a shared-secret token for the learner's gRPC port, for actors on other machines.

LeRobot's transport is plaintext gRPC that anyone who reaches the port can feed. With
``algorithm.tls_cert_path`` / ``tls_key_path`` the learner serves TLS only, and actors verify it
against ``tls_ca_path`` (or the certificate itself, for a self-signed pair from
``lerobot-pirl tls-keygen``). With ``auth_token_env`` or ``auth_token_file`` every call must carry
the token as ``authorization: Bearer <token>`` metadata; a server interceptor checks it before the
method runs, so a call without it is refused before a single request message is read. The token
is read at start from the environment or a file, so it is never part of a config and never
logged. A learner bound beyond loopback without both refuses to start unless
``allow_insecure_remote`` says so.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from ..errors import LerobotPirlError
from ..recipes.on_policy import transport_problems


class TransportConfigError(LerobotPirlError, ValueError):
    """TLS or token settings that cannot work; the message names each field."""


AUTH_METADATA_KEY = "authorization"
"""gRPC metadata key of the token (lower case, as gRPC requires)."""


@dataclass(frozen=True)
class TransportSecurity:
    """What one process needs: PEM bytes of the certificate, the key (learner only) and the CA
    (actors), and the token. All None is LeRobot's plaintext transport."""

    certificate: bytes | None = None
    private_key: bytes | None = None
    trusted_ca: bytes | None = None
    token: str | None = None

    @property
    def tls(self) -> bool:
        return self.certificate is not None or self.trusted_ca is not None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata an actor sends with every RPC."""
        return ((AUTH_METADATA_KEY, f"Bearer {self.token}"),) if self.token else ()

    def __repr__(self) -> str:  # never print the token or the key
        return f"TransportSecurity(tls={self.tls}, token={'set' if self.token else 'none'})"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: str | None, field: str, problems: list[str]) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        problems.append(f"{field}={path!r} cannot be read ({exc.strerror or exc})")
        return None


def _token(algo_cfg: Any, problems: list[str]) -> str | None:
    if algo_cfg.auth_token_env is not None:
        token = os.environ.get(algo_cfg.auth_token_env, "")
        if not token:
            problems.append(f"auth_token_env={algo_cfg.auth_token_env!r} names an unset or empty variable")
        return token or None
    raw = _read(algo_cfg.auth_token_file, "auth_token_file", problems)
    if raw is None:
        return None
    token = raw.decode(errors="replace").strip()
    if not token:
        problems.append(f"auth_token_file={algo_cfg.auth_token_file!r} is empty")
    return token or None


def learner_security(algo_cfg: Any) -> TransportSecurity:
    """The learner's certificate, key and token; every problem named before anything binds."""
    problems = transport_problems(algo_cfg)
    certificate = _read(algo_cfg.tls_cert_path, "tls_cert_path", problems)
    private_key = _read(algo_cfg.tls_key_path, "tls_key_path", problems)
    if certificate is not None and algo_cfg.tls_key_path is None:
        problems.append("tls_cert_path is set without tls_key_path (the learner needs both)")
    security = TransportSecurity(certificate, private_key, None, _token(algo_cfg, problems))
    remote = not is_loopback(algo_cfg.learner_host)
    if remote and not (security.tls and security.token) and not algo_cfg.allow_insecure_remote:
        problems.append(
            f"learner_host={algo_cfg.learner_host!r} accepts connections from other machines without TLS "
            "and a token: set tls_cert_path, tls_key_path and auth_token_env (README: actors on other "
            "machines), or allow_insecure_remote=true on a network you trust"
        )
    if problems:
        raise TransportConfigError("invalid learner transport settings: " + "; ".join(problems))
    if remote and not (security.tls and security.token):
        logging.warning(
            f"[ON-POLICY LEARNER] INSECURE: {algo_cfg.learner_host} is reachable from other machines with "
            "no TLS or no token; anyone who reaches the port can send episodes"
        )
    return security


def actor_security(algo_cfg: Any) -> TransportSecurity:
    """The actor's trusted CA (``tls_ca_path``, else the learner's own certificate) and token."""
    problems = transport_problems(algo_cfg)
    trusted = _read(algo_cfg.tls_ca_path or algo_cfg.tls_cert_path, "tls_ca_path", problems)
    security = TransportSecurity(None, None, trusted, _token(algo_cfg, problems))
    if problems:
        raise TransportConfigError("invalid actor transport settings: " + "; ".join(problems))
    return security


def server_credentials(security: TransportSecurity) -> Any:
    """gRPC server credentials for TLS, or None for plaintext."""
    if security.certificate is None:
        return None
    assert security.private_key is not None
    return grpc.ssl_server_credentials([(security.private_key, security.certificate)])


def actor_channel(host: str, port: int, security: TransportSecurity) -> Any:
    """A channel with LeRobot's transport options, TLS-verified against the trusted CA when set."""
    from lerobot.transport.utils import grpc_channel_options

    target, options = f"{host}:{port}", grpc_channel_options()
    if security.trusted_ca is None:
        return grpc.insecure_channel(target, options)
    return grpc.secure_channel(
        target, grpc.ssl_channel_credentials(root_certificates=security.trusted_ca), options
    )


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) every call whose metadata lacks ``Bearer <token>``, before the
    method runs: for the streaming uploads not one request message is read."""

    REFUSAL = (
        "missing or wrong token: actor and learner must read the same secret "
        "(algorithm.auth_token_env / auth_token_file)"
    )

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()
        self.refused = 0

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        offered = dict(handler_call_details.invocation_metadata or ()).get(AUTH_METADATA_KEY, "")
        handler = continuation(handler_call_details)
        if handler is None or hmac.compare_digest(str(offered).encode(), self._expected):
            return handler
        self.refused += 1
        return _aborting_like(handler, self.REFUSAL)


def _aborting_like(handler: Any, message: str) -> Any:
    def abort(request_or_iterator: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort, **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **codec)
    return grpc.stream_stream_rpc_method_handler(abort, **codec)


def generate_self_signed(directory: Path, hosts: list[str], days: int = 365) -> tuple[Path, Path]:
    """A self-signed certificate for ``hosts`` (names or IPs) and its key, as ``learner.crt`` /
    ``learner.key`` (mode 0600) in ``directory``: the learner serves them, actors trust the .crt."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not hosts:
        raise ValueError("at least one host name or IP address is needed for the certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "learner.crt", directory / "learner.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
