"""A data-parallel on-policy learner on ``torch.distributed``, launched by ``torchrun``.

    torchrun --nproc_per_node=N -m lerobot_pirl.runtime.learner --config_path=train_config.json

A launch is distributed when ``torchrun`` (or any launcher following its convention) set ``RANK``
and ``WORLD_SIZE`` (with ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); without them the learner
is the single process it always was, and nothing here runs.

Roles. Rank 0 is the learner users know: it serves LeRobot's gRPC ``LearnerService``, assembles the
rollout, counts, logs, checkpoints and pushes weights. Every other rank builds the same policy,
recipe and optimizer (from the same config and checkpoint) and then only follows: it waits on a
`ControlChannel` for rank 0's next message — a rollout to update on, a keep-alive while the actors
fill the next one, or the stop — and takes its share of each update inside the recipe
(`lerobot_pirl.recipes.on_policy.DataParallelRecipe`), where DDP all-reduces the gradients.

Backends: NCCL for ``policy.device=cuda`` (rank ``r`` on ``cuda:LOCAL_RANK``), gloo on CPU. The
control messages (rollouts, keep-alives, the recipe's small all-reduces) always go over a gloo group
on the CPU, so a rollout is never staged through GPU memory to be broadcast.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from lerobot_pirl.errors import LerobotPirlError

DISTRIBUTED_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What ``torchrun`` sets for each worker (``env://`` rendezvous)."""
UPDATE, WAIT, STOP = "update", "wait", "stop"
"""The control messages rank 0 broadcasts."""
MAX_KEEPALIVE_S = 30.0


class DistributedLaunchError(LerobotPirlError):
    """A distributed launch that cannot work (bad torchrun variables, too many ranks for the GPUs,
    a recipe without a data-parallel update); raised before any process group exists."""


@dataclass(frozen=True)
class Launch:
    """This process's place in a ``torchrun`` launch."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def label(self) -> str:
        return f"rank {self.rank}/{self.world_size}"


def detect(environ: dict[str, str] | None = None) -> Launch | None:
    """The launch ``torchrun`` described in the environment, or None for a plain (single-process)
    launch: neither ``RANK`` nor ``WORLD_SIZE`` set."""
    env = os.environ if environ is None else environ
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return None
    missing = [name for name in DISTRIBUTED_ENV_VARS if not env.get(name)]
    if missing:
        raise DistributedLaunchError(
            f"RANK/WORLD_SIZE are set but {', '.join(missing)} is not: start the learner with "
            "`torchrun --nproc_per_node=N -m lerobot_pirl.runtime.learner ...` (or unset RANK and "
            "WORLD_SIZE for a single-process learner)"
        )
    values: dict[str, int] = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        raw = env.get(name, env["WORLD_SIZE"] if name == "LOCAL_WORLD_SIZE" else "")
        try:
            values[name] = int(raw)
        except ValueError:
            raise DistributedLaunchError(f"{name}={raw!r} is not an integer (set by torchrun)") from None
    launch = Launch(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size:
        raise DistributedLaunchError(f"RANK={launch.rank} must be in [0, WORLD_SIZE={launch.world_size})")
    if not 0 <= launch.local_rank < launch.local_world_size:
        raise DistributedLaunchError(
            f"LOCAL_RANK={launch.local_rank} must be in [0, LOCAL_WORLD_SIZE={launch.local_world_size})"
        )
    return launch


def check_launch(launch: Launch, cfg: Any, recipe_cls: type[Any]) -> None:
    """Everything a distributed launch needs that the config and machine decide; raised as one
    clear error on every rank before any process group, model or server exists."""
    from lerobot_pirl.recipes.on_policy import supports_data_parallel

    problems = []
    if not supports_data_parallel(recipe_cls):
        problems.append(
            f"recipe '{getattr(recipe_cls, 'name', recipe_cls.__name__)}' has no data-parallel update "
            "(DataParallelRecipe.enable_data_parallel); launch it without torchrun"
        )
    algorithm_problems = getattr(cfg.algorithm, "data_parallel_problems", None)
    if callable(algorithm_problems):
        problems += algorithm_problems(launch.world_size)
    device = str(cfg.policy.device)
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if launch.local_rank >= count:
            problems.append(
                f"policy.device={device} with LOCAL_RANK={launch.local_rank}, but this machine has "
                f"{count} CUDA device(s): launch at most {count} rank(s) per node (--nproc_per_node)"
            )
    elif device != "cpu":
        problems.append(f"policy.device={device}: a multi-rank learner runs on cuda (NCCL) or cpu (gloo)")
    if problems:
        raise DistributedLaunchError(f"cannot start {launch.label}: " + "; ".join(problems))


def backend_for(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


class ControlChannel:
    """Rank 0's messages to the other ranks: ``(kind, payload)`` broadcast over a gloo group.

    Rank 0 sends a keep-alive at least every ``keepalive_s`` while it waits for actors, so a rank
    that stops hearing from rank 0 for the collective timeout (``distributed_timeout_s``) fails
    instead of waiting forever, while a slow rollout never trips it.
    """

    def __init__(self, group: Any, launch: Launch, timeout_s: float) -> None:
        self.group = group
        self.launch = launch
        self.keepalive_s = min(MAX_KEEPALIVE_S, timeout_s / 4)
        self._last_sent = time.monotonic()

    def send(self, kind: str, payload: Any = None) -> None:
        assert self.launch.is_main, "only rank 0 sends control messages"
        dist.broadcast_object_list([(kind, payload)], src=0, group=self.group)
        self._last_sent = time.monotonic()

    def keepalive(self) -> None:
        """A `WAIT` message when the last message is older than ``keepalive_s``."""
        if time.monotonic() - self._last_sent >= self.keepalive_s:
            self.send(WAIT)

    def receive(self) -> tuple[str, Any]:
        message: list[Any] = [None]
        dist.broadcast_object_list(message, src=0, group=self.group)
        return message[0]


def init_process_group(launch: Launch, device: str, timeout_s: float) -> ControlChannel:
    """Join the ``env://`` process group (NCCL on ``cuda:LOCAL_RANK``, or gloo) and the gloo control
    group; returns this rank's `ControlChannel`."""
    backend = backend_for(device)
    timeout = timedelta(seconds=timeout_s)
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        torch.cuda.set_device(launch.local_rank)  # "cuda" now means this rank's GPU everywhere
        kwargs["device_id"] = torch.device("cuda", launch.local_rank)
    dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
    control = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else dist.group.WORLD
    return ControlChannel(control, launch, timeout_s)


def close_process_group() -> None:
    """Destroy the process groups once nothing refers to them any more: collect the (cyclic)
    learner objects that still hold DDP first, so gloo's worker threads are joined while the
    interpreter is fully alive (at interpreter shutdown they abort the process: SIGABRT,
    "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def rank_line(launch: Launch, text: str) -> None:
    """One rank-prefixed line on stderr (a following rank's only output besides errors)."""
    print(f"[ON-POLICY LEARNER {launch.label}] {text}", file=sys.stderr, flush=True)


def follow(channel: ControlChannel, update: Any) -> int:
    """A following rank's loop: run ``update(rollout)`` for each rollout rank 0 broadcasts, until its
    stop; returns the number of updates. A lost rank 0 raises (torchrun then ends every rank)."""
    updates = 0
    while True:
        kind, payload = channel.receive()
        if kind == STOP:
            return updates
        if kind == UPDATE:
            update(payload)
            updates += 1
        elif kind != WAIT:
            raise RuntimeError(f"unknown control message {kind!r} from rank 0")


def send_stop(channel: ControlChannel) -> None:
    """Rank 0's last word; a rank that is already gone makes this fail, which is logged, not raised
    (the error that stopped the run is the one to see)."""
    try:
        channel.send(STOP)
    except Exception as exc:  # noqa: BLE001 - the process group is broken; torchrun reports the rank
        logging.error(f"[ON-POLICY LEARNER] could not tell the other ranks to stop: {exc}")
