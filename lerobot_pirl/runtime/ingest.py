"""Decoding received episodes on a thread of the learner's own, so that it overlaps the update.

The gRPC service queues each episode as bytes; turning them back into transitions
(``torch.load``) used to happen on the learner's main thread between updates, so every byte that
arrived during an update waited for it to finish before decoding started. `EpisodeDecoder` decodes
as bytes arrive, while the update runs (its tensor kernels release the GIL, and on a GPU learner
the main thread mostly waits on the device). Only decoding moves: the recipe still accepts every
transition on the main thread, between updates, in arrival order, so what an update trains on —
the staleness check against the current policy version included — is what it was.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from lerobot.transport.utils import bytes_to_transitions

from lerobot_pirl.recipes.on_policy import OnPolicyRecipe, TransitionRejectedError

LOG_PREFIX = "[ON-POLICY LEARNER]"
POLL_S = 0.05
"""How long the decoder waits on an empty queue before looking at its stop flag again."""


@dataclass(frozen=True)
class Rejected:
    """A message that is not an episode the learner may train on, and why (logged by the learner)."""

    reason: str


def decode_episode(payload: bytes, max_message_bytes: int) -> list[dict[str, Any]] | Rejected:
    """The transitions in one received message, or why the message is rejected as a whole."""
    if len(payload) > max_message_bytes:
        return Rejected(
            f"rejected a {len(payload)}-byte message: above algorithm.max_message_bytes="
            f"{max_message_bytes}; raise the limit or send shorter episodes"
        )
    try:
        episode = bytes_to_transitions(payload)  # torch.load(weights_only=True)
        if not isinstance(episode, list):
            raise TypeError(f"expected a list of transitions, got {type(episode).__name__}")
    except Exception as exc:  # noqa: BLE001 - whatever the bytes are, they are not an episode
        return Rejected(f"rejected an undecodable {len(payload)}-byte message: {exc}")
    return episode


def accept_episode(episode: list[dict[str, Any]] | Rejected, recipe: OnPolicyRecipe) -> int:
    """Hand a decoded episode's transitions to the recipe; returns how many were rejected (a
    rejected message counts as one). Bad data is reported, never trained on."""
    if isinstance(episode, Rejected):
        logging.error(f"{LOG_PREFIX} {episode.reason}")
        return 1
    rejected = 0
    for transition in episode:
        try:
            recipe.accept(transition)
        except TransitionRejectedError as exc:
            rejected += 1
            logging.error(f"{LOG_PREFIX} rejected a transition: {exc}")
    return rejected


def drain_transitions(payloads: Any, recipe: OnPolicyRecipe, *, to_the_end: bool = False) -> int:
    """Decode and accept queued messages on this thread, no further than one rollout (bounded
    memory); ``to_the_end`` drains everything (at shutdown, so the final counts cover all that
    arrived). Returns how many transitions were rejected."""
    rejected = 0
    while to_the_end or not recipe.rollout_ready():
        try:
            payload = payloads.get_nowait()
        except queue.Empty:
            break
        rejected += accept_episode(decode_episode(payload, recipe.config.max_message_bytes), recipe)
    return rejected


class EpisodeDecoder:
    """A daemon thread that decodes ``payloads`` (the gRPC service's queue of episode bytes) ahead
    of the main thread. It holds decoded episodes of at most ``max_decoded_bytes`` serialized bytes
    (plus the episode that crosses the bound) before it stops taking more, so the decoded tensors
    stay bounded in memory; what it has not taken stays queued as bytes, as before."""

    def __init__(self, payloads: Any, max_message_bytes: int, max_decoded_bytes: int) -> None:
        if max_decoded_bytes < 1:
            raise ValueError(f"max_decoded_bytes={max_decoded_bytes} (must be ≥ 1)")
        self.payloads = payloads
        self.max_message_bytes = max_message_bytes
        self.max_decoded_bytes = max_decoded_bytes
        self._decoded: collections.deque[tuple[list[dict[str, Any]] | Rejected, int]] = collections.deque()
        self._decoded_bytes = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="episode-decoder", daemon=True)

    def start(self) -> EpisodeDecoder:
        self._thread.start()
        return self

    @property
    def decoded_episodes(self) -> int:
        """Messages decoded (episodes and rejections) and not yet taken by the main thread."""
        with self._changed:
            return len(self._decoded)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                self._changed.wait_for(
                    lambda: self._stop.is_set() or self._decoded_bytes < self.max_decoded_bytes
                )
            if self._stop.is_set():
                return
            try:
                payload = self.payloads.get(timeout=POLL_S)
            except queue.Empty:
                continue
            episode = decode_episode(payload, self.max_message_bytes)
            held = 0 if isinstance(episode, Rejected) else len(payload)
            with self._changed:
                self._decoded.append((episode, held))
                self._decoded_bytes += held

    def _take_one(self) -> list[dict[str, Any]] | Rejected | None:
        with self._changed:
            if not self._decoded:
                return None
            episode, held = self._decoded.popleft()
            self._decoded_bytes -= held
            self._changed.notify_all()
            return episode

    def feed(self, recipe: OnPolicyRecipe) -> int:
        """Accept decoded episodes, in arrival order, until the recipe has a rollout or nothing
        decoded is left; returns how many transitions were rejected."""
        rejected = 0
        while not recipe.rollout_ready():
            episode = self._take_one()
            if episode is None:
                break
            rejected += accept_episode(episode, recipe)
        return rejected

    def stop_and_drain(self, recipe: OnPolicyRecipe) -> int:
        """Stop the thread, then accept everything: what it decoded, then what is still queued as
        bytes (in arrival order). Returns how many transitions were rejected."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        rejected = 0
        while (episode := self._take_one()) is not None:
            rejected += accept_episode(episode, recipe)
        return rejected + drain_transitions(self.payloads, recipe, to_the_end=True)
