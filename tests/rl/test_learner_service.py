"""πRL decisions through LeRobot's real gRPC LearnerService, then XVLA's pi_rl forward on arrival.

The actor side samples with the XVLA mixin and encodes each decision as a stock `Transition`; the
learner side is LeRobot's own `start_learner` gRPC server. What arrives must reproduce the actor's
log-probs exactly (ratio 1), which is the precondition for every PPO update the learner makes.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

import pytest
import torch
from helpers.configs import free_port
from helpers.grpc_client import LearnerClient, marked_transition
from helpers.xvla_batches import EXECUTED, make_pi_rl_policy, observations
from lerobot.rl.learner import start_learner
from lerobot.rl.train_rl import TrainRLServerPipelineConfig
from lerobot.transport.utils import bytes_to_transitions, transitions_to_bytes
from torch.multiprocessing import Event, Queue

from lerobot_pirl.policies import PI_RL_ADVANTAGE, PI_RL_RETURN
from lerobot_pirl.recipes.pi_rl.transitions import (
    PiRLTransitionError,
    RecordLayout,
    decode_decision,
    encode_decision,
)

DECISIONS = 6


def _encoded_decisions(policy, record, obs, actions) -> list:
    transitions = []
    for row in range(DECISIONS):
        rewards = torch.tensor([0.1 * row, 0.0, 1.0])[:EXECUTED]
        transitions.append(
            encode_decision(
                observation={k: v[row] for k, v in obs.items()},
                next_observation={k: v[row] for k, v in obs.items()},
                executed_actions=actions[row, :EXECUTED],
                step_rewards=rewards,
                executed_steps=EXECUTED,
                terminated=row == DECISIONS - 1,
                truncated=False,
                chain=record.chain[row],
                step_index=int(record.step_index[row]),
                old_token_log_prob=record.token_log_prob[row],
                policy_version=3,
                actor_id=1,
                episode_id=0,
                decision_index=row,
            )
        )
    return transitions


@pytest.fixture
def learner_server():
    """LeRobot's learner gRPC server (`lerobot.rl.learner.start_learner`) in a thread."""
    port = free_port()
    cfg = LearnerClient(port).cfg  # a stock config carrying host/port/timeouts
    assert isinstance(cfg, TrainRLServerPipelineConfig)
    cfg.policy.concurrency.learner = "threads"
    transitions, interactions, parameters, shutdown = Queue(), Queue(), Queue(), Event()
    thread = threading.Thread(
        target=start_learner, args=(parameters, transitions, interactions, shutdown, cfg), daemon=True
    )
    thread.start()
    yield port, transitions
    shutdown.set()
    thread.join(timeout=30)
    for q in (transitions, interactions, parameters):
        q.cancel_join_thread()
    assert not thread.is_alive()


def _receive(transitions: Queue, count: int, timeout: float = 60.0) -> list:
    received: list = []
    while len(received) < count:
        try:
            received.extend(bytes_to_transitions(transitions.get(timeout=timeout)))
        except queue.Empty:
            raise AssertionError(f"learner received {len(received)}/{count} transitions") from None
    return received


@pytest.mark.timeout(120)
@pytest.mark.parametrize("noise_method", ["flow_sde", "flow_noise"])
def test_pi_rl_xvla_forward_on_decisions_received_by_learner_service(learner_server, noise_method) -> None:
    port, learner_transitions = learner_server
    policy, _ = make_pi_rl_policy(noise_method, seed=0)
    obs = observations(policy, DECISIONS, seed=5)
    actions, record = policy.sample_actions(obs, generator=torch.Generator().manual_seed(7))

    client = LearnerClient(port)
    try:
        assert client.connect(attempts=10)
        client.start()
        client.send(_encoded_decisions(policy, record, obs, actions))
        received = _receive(learner_transitions, DECISIONS)
    finally:
        client.close()

    decisions = sorted(
        (decode_decision(t, RecordLayout.for_policy(policy)) for t in received),
        key=lambda d: d.decision_index,
    )
    assert [d.decision_index for d in decisions] == list(range(DECISIONS))
    chain = torch.stack([d.chain for d in decisions])
    assert torch.equal(chain, record.chain)  # float32 end to end, bit for bit
    assert [d.reward for d in decisions] == pytest.approx([0.1 * r + 1.0 for r in range(DECISIONS)])
    assert [d.terminated for d in decisions] == [False] * (DECISIONS - 1) + [True]

    batch = {key: torch.stack([d.observation[key] for d in decisions]) for key in obs}
    batch.update(
        {
            "pi_rl.chain": chain,
            "pi_rl.step_index": torch.tensor([float(d.step_index) for d in decisions]),
            "pi_rl.old_token_log_prob": torch.stack([d.old_token_log_prob for d in decisions]),
            "pi_rl.old_value": policy.pi_rl_value(batch),
            PI_RL_ADVANTAGE: torch.linspace(-1.0, 1.0, DECISIONS),
            PI_RL_RETURN: torch.ones(DECISIONS),
        }
    )
    loss, metrics = policy.forward(batch, model="pi_rl")
    assert torch.isfinite(loss)
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["ratio_max"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["clip_frac"] == 0.0
    # With ratio 1 the PPO actor loss is −mean(Â); Â here averages to zero.
    assert metrics["loss_actor"] == pytest.approx(0.0, abs=1e-5)


def test_transition_without_pi_rl_keys_is_rejected_with_the_key_names() -> None:
    transition = {
        "state": {},
        "action": torch.zeros(2),
        "reward": 0.0,
        "next_state": {},
        "done": False,
        "truncated": False,
        "complementary_info": {"pi_rl.chain": torch.zeros(4)},
    }
    with pytest.raises(
        PiRLTransitionError,
        match=r"no 'pi_rl.record' in complementary_info \(keys: \['pi_rl.chain'\]\).*"
        r"5 scalars \+ H'=1 step rewards \+ H' token log-probs \+ \(K\+1\)·H·D = 2·1·2 chain values = 11",
    ):
        decode_decision(transition, RecordLayout(2, 1, 2, executed_steps=1))


def test_chain_of_the_wrong_size_names_the_expected_shape() -> None:
    policy, _ = make_pi_rl_policy("flow_sde", seed=0)
    obs = observations(policy, DECISIONS, seed=5)
    actions, record = policy.sample_actions(obs)
    [transition] = _encoded_decisions(policy, record, obs, actions)[:1]
    wrong_k = dataclasses.replace(RecordLayout.for_policy(policy), num_points=5)
    with pytest.raises(PiRLTransitionError, match=r"has \d+ values, expected .*\(K\+1\)·H·D = 5·4·"):
        decode_decision(transition, wrong_k)


@pytest.mark.timeout(120)
def test_every_actor_receives_every_weight_push() -> None:
    """Stock StreamParameters hands each push to one stream only; ours reaches every actor."""
    import threading as _threading

    from lerobot.transport.utils import state_to_bytes

    from lerobot_pirl.runtime import transport

    port = free_port()
    shutdown = _threading.Event()
    weights = transport.LatestWeights()
    server = transport.start_learner_server(
        "127.0.0.1",
        port,
        shutdown_event=shutdown,
        weights=weights,
        transition_queue=Queue(),
        interaction_queue=Queue(),
        queue_get_timeout=0.1,
        max_actors=2,
    )
    clients = [LearnerClient(port) for _ in range(2)]
    try:
        for client in clients:
            assert client.connect(attempts=10)
            client.start()
        for version in range(3):
            weights.publish(state_to_bytes({"w": torch.full((3,), float(version))}))
            for client in clients:
                assert float(client.next_parameters(timeout=30)["w"][0]) == version
    finally:
        for client in clients:
            client.close()
        shutdown.set()
        server.stop(grace=1).wait(timeout=10)


def _serve(max_actors: int):
    import threading as _threading

    from lerobot_pirl.runtime import transport

    port, shutdown, weights = free_port(), _threading.Event(), transport.LatestWeights()
    transitions: Queue = Queue()
    server = transport.start_learner_server(
        "127.0.0.1",
        port,
        shutdown_event=shutdown,
        weights=weights,
        transition_queue=transitions,
        interaction_queue=Queue(),
        queue_get_timeout=0.1,
        max_actors=max_actors,
    )
    return port, shutdown, weights, transitions, server


def _raw_parameter_stream(port: int):
    """A parameter stream on its own channel: (channel, call, first message or the RpcError).

    Keep the call referenced while the stream should stay open: gRPC cancels a collected call."""
    import grpc
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import grpc_channel_options

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", grpc_channel_options())
    stream = services_pb2_grpc.LearnerServiceStub(channel).StreamParameters(services_pb2.Empty())
    try:
        return channel, stream, next(stream)
    except grpc.RpcError as exc:
        return channel, stream, exc


@pytest.mark.timeout(180)
def test_eight_actors_get_every_push_and_deliver_everything_and_a_ninth_is_refused() -> None:
    """Eight actors, each with the actor's own three streams (``transport.connect_actor``), at the
    configured maximum: all are served every push and every episode they send arrives. A ninth is
    refused at its handshake with an error naming ``max_actors``, and a parameter stream opened
    past the handshake is refused too (RESOURCE_EXHAUSTED), never left waiting."""
    import threading as _threading

    import grpc
    from lerobot.transport.utils import bytes_to_state_dict, state_to_bytes

    from lerobot_pirl.runtime import transport

    actors, episodes_each = 8, 2
    port, shutdown, weights, received, server = _serve(max_actors=actors)
    stops = [_threading.Event() for _ in range(actors)]
    channel, links = None, []
    try:
        links = [transport.connect_actor("127.0.0.1", port, stop, 0.1, attempts=5) for stop in stops]
        for version in range(3):
            weights.publish(state_to_bytes({"w": torch.full((2,), float(version))}))
            for link in links:  # each push reaches every actor (bounded wait)
                assert float(bytes_to_state_dict(link.parameters.get(timeout=30))["w"][0]) == version
        for actor_id, link in enumerate(links):
            for episode in range(episodes_each):
                marker = float(100 * actor_id + episode)
                link.transitions.put(transitions_to_bytes([marked_transition(marker)]))
        payloads = [received.get(timeout=30) for _ in range(actors * episodes_each)]
        markers = sorted(bytes_to_transitions(p)[0]["reward"] for p in payloads)
        assert markers == sorted(float(100 * a + e) for a in range(actors) for e in range(episodes_each))

        with pytest.raises(
            transport.LearnerRefusedError, match=r"already serves algorithm.max_actors=8 actors"
        ):
            transport.connect_actor("127.0.0.1", port, _threading.Event(), 0.1, attempts=5)
        channel, _, refused = _raw_parameter_stream(port)
        assert isinstance(refused, grpc.RpcError)
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_actors=8" in refused.details()
    finally:
        if channel is not None:
            channel.close()
        for stop in stops:
            stop.set()
        for link in links:
            link.stop_senders()
        shutdown.set()
        server.stop(grace=1).wait(timeout=10)
        for link in links:
            for thread in link.threads:
                thread.join(timeout=10)
            for q in (link.parameters, link.transitions, link.interactions):
                q.cancel_join_thread()
        received.cancel_join_thread()


@pytest.mark.timeout(120)
def test_an_actor_slot_is_released_when_its_stream_ends() -> None:
    import grpc
    from lerobot.transport.utils import state_to_bytes

    port, shutdown, weights, _, server = _serve(max_actors=1)
    weights.publish(state_to_bytes({"w": torch.zeros(1)}))
    try:
        first, _first_call, message = _raw_parameter_stream(port)
        assert not isinstance(message, grpc.RpcError)  # admitted: it got the weights
        second, _, refused = _raw_parameter_stream(port)
        second.close()
        assert isinstance(refused, grpc.RpcError) and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.close()  # the actor goes away: its slot frees once the server sees the RPC end
        deadline = time.monotonic() + 30
        while True:
            third, _, message = _raw_parameter_stream(port)
            third.close()
            if not isinstance(message, grpc.RpcError):
                break
            assert time.monotonic() < deadline, "the slot was never released"
            time.sleep(0.2)
    finally:
        shutdown.set()
        server.stop(grace=1).wait(timeout=10)
