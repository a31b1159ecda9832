"""A test-side actor stand-in that talks to a learner with LeRobot's own transport code."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import grpc
import torch
from lerobot.policies.gaussian_actor.configuration_gaussian_actor import GaussianActorConfig
from lerobot.rl import actor as stock_actor
from lerobot.rl.train_rl import TrainRLServerPipelineConfig
from lerobot.transport import services_pb2_grpc
from lerobot.transport.utils import bytes_to_state_dict, grpc_channel_options
from lerobot.utils.transition import Transition
from torch.multiprocessing import Event, Queue


@dataclass
class LearnerClient:
    """Sends transitions and receives pushed parameters over a fresh gRPC channel."""

    port: int
    host: str = "127.0.0.1"
    shutdown: object = field(default_factory=Event)

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(f"{self.host}:{self.port}", grpc_channel_options())
        self.stub = services_pb2_grpc.LearnerServiceStub(self.channel)
        cfg = TrainRLServerPipelineConfig(policy=GaussianActorConfig())
        cfg.policy.actor_learner_config.learner_host = self.host
        cfg.policy.actor_learner_config.learner_port = self.port
        cfg.policy.actor_learner_config.queue_get_timeout = 0.1
        cfg.policy.concurrency.actor = "threads"
        self.cfg = cfg
        self.parameters: Queue = Queue()
        self.transitions: Queue = Queue()
        self.threads: list[threading.Thread] = []

    def connect(self, attempts: int = 30) -> bool:
        return stock_actor.establish_learner_connection(self.stub, self.shutdown, attempts=attempts)

    def start(self) -> None:
        for target, q in (
            (stock_actor.receive_policy, self.parameters),
            (stock_actor.send_transitions, self.transitions),
        ):
            thread = threading.Thread(
                target=target, args=(self.cfg, q, self.shutdown, self.stub, self.channel), daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def send(self, transitions: list[Transition]) -> None:
        stock_actor.push_transitions_to_transport_queue(transitions, self.transitions)

    def next_parameters(self, timeout: float) -> dict:
        """The next pushed state dict, waiting at most ``timeout`` seconds (a finishing learner's
        end-of-training notice is not one: it is skipped)."""
        from lerobot_pirl.runtime.transport import TRAINING_OVER

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = bytes_to_state_dict(self.parameters.get(timeout=0.2))
            except queue.Empty:
                continue
            if TRAINING_OVER not in state:
                return state
        raise TimeoutError(f"no parameters pushed within {timeout}s")

    def close(self) -> None:
        self.shutdown.set()
        self.channel.close()  # cancels the streams, so the threads end now
        for thread in self.threads:
            thread.join(timeout=10)
        # Unread pushes would make the queues' feeder threads block interpreter exit.
        for q in (self.parameters, self.transitions):
            q.cancel_join_thread()


def random_episode(length: int, state_dim: int, action_dim: int, seed: int) -> list[Transition]:
    """One episode of random transitions in LeRobot's `Transition` schema."""
    gen = torch.Generator().manual_seed(seed)
    states = torch.rand(length + 1, state_dim, generator=gen) * 2 - 1
    episode = []
    for t in range(length):
        episode.append(
            Transition(
                state={"observation.state": states[t]},
                action=torch.rand(action_dim, generator=gen) * 2 - 1,
                reward=float(torch.rand((), generator=gen)),
                next_state={"observation.state": states[t + 1]},
                done=t == length - 1,
                truncated=False,
                complementary_info={},
            )
        )
    return episode


def marked_transition(marker: float) -> Transition:
    """A one-step transition whose reward is ``marker``, to tell deliveries apart."""
    state = {"observation.state": torch.zeros(2)}
    return Transition(
        state=state,
        action=torch.zeros(1),
        reward=marker,
        next_state=state,
        done=True,
        truncated=False,
        complementary_info={},
    )
