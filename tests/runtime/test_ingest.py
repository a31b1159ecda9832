"""The learner's episode decoder: decodes while the main thread is busy, changes nothing it accepts."""

from __future__ import annotations

import queue
import time

import pytest
import torch
from helpers.learner_process import wait_for
from helpers.pi_rl_decisions import make_recipe, record_episode
from lerobot.transport.utils import transitions_to_bytes

from lerobot_pirl.recipes.pi_rl.transitions import RECORD, RecordLayout
from lerobot_pirl.runtime import ingest
from lerobot_pirl.runtime.ingest import EpisodeDecoder, drain_transitions


def _states(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _episodes(recipe, decisions: list[int]) -> list[bytes]:
    """Actor i's episode of ``decisions[i]`` decisions, as the gRPC service queues it."""
    return [
        transitions_to_bytes(record_episode(recipe, _states(n, i), actor_id=i, episode_id=0))
        for i, n in enumerate(decisions)
    ]


def _arrival_order(rollout) -> list[tuple[int, int]]:
    return [(d.actor_id, d.decision_index) for d in rollout.decisions]


def test_the_decoder_accepts_and_rejects_exactly_what_decoding_on_demand_does() -> None:
    on_demand, threaded = (make_recipe("flow_sde", rollout_decisions=6) for _ in range(2))
    good = record_episode(on_demand, _states(4, 1), actor_id=0, episode_id=0)
    mixed = record_episode(on_demand, _states(3, 2), actor_id=1, episode_id=0)
    mixed[1]["complementary_info"][RECORD][RecordLayout.scalar_index("policy_version")] = float("inf")
    large = record_episode(on_demand, _states(6, 3), actor_id=2, episode_id=0)
    limit = len(transitions_to_bytes(good)) + 2000  # the 6-decision episode is over it
    messages = [transitions_to_bytes(e) for e in (good, mixed, large)] + [b"not an episode"]
    for recipe in (on_demand, threaded):
        recipe.config.max_message_bytes = limit
    first, second = queue.Queue(), queue.Queue()
    for message in messages:
        first.put(message)
        second.put(message)

    rejected_on_demand = drain_transitions(first, on_demand, to_the_end=True)
    decoder = EpisodeDecoder(second, limit, max_decoded_bytes=10 * limit).start()
    wait_for(lambda: decoder.decoded_episodes == 4, 30, "the decoder to decode all four messages")
    rejected_threaded = decoder.feed(threaded)
    rejected_threaded += decoder.stop_and_drain(threaded)

    # Hand count: the inf decision, the oversized message, the undecodable one.
    assert rejected_on_demand == rejected_threaded == 3
    assert on_demand.data_counters() == threaded.data_counters()
    expected = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 2)]
    assert _arrival_order(on_demand.take_rollout()) == _arrival_order(threaded.take_rollout()) == expected


def test_decoding_happens_on_the_decoder_thread_while_the_main_thread_is_busy(monkeypatch) -> None:
    recipe = make_recipe("flow_sde", rollout_decisions=9)
    messages = _episodes(recipe, [3, 3, 3])
    payloads = torch.multiprocessing.Queue()  # the learner's queue type (get with a timeout)
    decoder = EpisodeDecoder(payloads, recipe.config.max_message_bytes, max_decoded_bytes=2**30).start()
    try:
        for message in messages:  # they arrive while the main thread is "updating" (not calling feed)
            payloads.put(message)
        wait_for(lambda: decoder.decoded_episodes == 3, 30, "the decoder to decode the three episodes")

        def decoding_on_the_main_thread(payload: bytes):
            raise AssertionError("the main thread decoded an episode")

        monkeypatch.setattr(ingest, "bytes_to_transitions", decoding_on_the_main_thread)
        assert decoder.feed(recipe) == 0  # only accepts: nothing is left to decode
        assert recipe.rollout_ready()
        assert _arrival_order(recipe.take_rollout()) == [(a, i) for a in range(3) for i in range(3)]
    finally:
        assert decoder.stop_and_drain(recipe) == 0
        payloads.cancel_join_thread()


def test_the_decoder_holds_a_bounded_amount_and_leaves_the_rest_queued_as_bytes() -> None:
    recipe = make_recipe("flow_sde", rollout_decisions=4)
    messages = _episodes(recipe, [4, 4, 4, 4, 4])
    payloads: queue.Queue = queue.Queue()
    for message in messages:
        payloads.put(message)
    # Below two messages: it takes the first, then the second crosses the bound, then it waits.
    bound = len(messages[0]) + len(messages[1]) - 1
    decoder = EpisodeDecoder(payloads, recipe.config.max_message_bytes, max_decoded_bytes=bound).start()
    try:
        wait_for(lambda: decoder.decoded_episodes == 2, 30, "two decoded episodes")
        time.sleep(0.5)  # it has stopped taking: waiting longer changes nothing
        assert decoder.decoded_episodes == 2 and payloads.qsize() == 3

        assert decoder.feed(recipe) == 0  # one episode fills the rollout; the second stays decoded
        assert recipe.rollout_ready() and _arrival_order(recipe.take_rollout()) == [(0, i) for i in range(4)]
        # Taking one frees room for one more.
        wait_for(lambda: payloads.qsize() == 2, 30, "the decoder to take the next message")
        wait_for(lambda: decoder.decoded_episodes == 2, 30, "it to be decoded")
    finally:
        assert decoder.stop_and_drain(recipe) == 0
    # At the stop, the decoded and the still-queued episodes are all accepted, in arrival order.
    assert recipe.data_counters()["received"] == 20 and payloads.qsize() == 0
    assert _arrival_order(recipe.take_rollout()) == [(a, i) for a in range(1, 5) for i in range(4)]


def test_a_decoder_bound_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match=r"max_decoded_bytes=0 \(must be ≥ 1\)"):
        EpisodeDecoder(queue.Queue(), 100, max_decoded_bytes=0)
