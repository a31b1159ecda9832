"""The `OnPolicyRecipe` contract: a `Recipe` that trains on fresh episodes instead of a replay buffer.

An on-policy recipe runs in lerobot_pirl's own learner loop and actor (`lerobot_pirl.runtime`),
which know nothing about any algorithm, policy or env: they build the envs from the config's
``env`` block, run the policy's LeRobot processors, move episodes over LeRobot's gRPC transport
and count what moved. What is algorithm-specific sits behind this protocol:

- on the actor, `OnPolicyRecipe.sampler` returns an `ActorSampler` that turns a batch of
  preprocessed observations into ``executed_steps`` actions per row plus whatever the learner
  will need about how they were sampled (log-probs, denoising chains); after the env ran them, the
  runtime hands the recipe an `ActorDecision` and sends what `OnPolicyRecipe.encode_decision`
  makes of it, one LeRobot ``Transition`` per decision, a whole episode per message;
- on the learner, every received transition goes to `OnPolicyRecipe.accept` (a malformed one
  raises `TransitionRejectedError` and is counted, never trained on); once
  `OnPolicyRecipe.rollout_ready`, the loop passes `OnPolicyRecipe.take_rollout` to
  ``update_step``, pushes `actor_weights` and checkpoints.

A recipe is on-policy when its ``config_class`` subclasses `OnPolicyConfig`, which carries the
runtime's settings (address, security, actor limits, stopping rule). Actors load new weights only
between an env's episodes, so each episode is sampled by one policy version (`policy_version`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from ..errors import RecipeError
from .protocol import Recipe, RecipeConfig


class TransitionRejectedError(RecipeError, ValueError):
    """A received transition the recipe cannot train on; the message names the field and what is
    expected. The learner logs and counts it and keeps everything else it received."""


@dataclass
class OnPolicyConfig(RecipeConfig):
    """The runtime's settings, shared by every on-policy recipe's ``algorithm`` block.

    Env settings (episode length, rendering, physics) are fields of the config's ``env`` block.
    """

    learner_host: str = "127.0.0.1"
    """Address the learner binds and actors connect to (localhost by default)."""
    learner_port: int = 50051
    """Learner gRPC port."""
    tls_cert_path: str | None = None
    """PEM certificate the learner serves TLS with (``lerobot-pirl tls-keygen`` makes a self-signed
    one); actors verify the learner against it unless ``tls_ca_path`` is set. None: plaintext."""
    tls_key_path: str | None = None
    """The learner's PEM private key for ``tls_cert_path`` (read by the learner only)."""
    tls_ca_path: str | None = None
    """Actors: the CA certificate that signed the learner's (default: ``tls_cert_path`` itself)."""
    auth_token_env: str | None = None
    """Name of an environment variable holding a shared secret; with it set, the learner refuses
    every call without that token before reading anything. The secret never enters a config."""
    auth_token_file: str | None = None
    """Or a file holding the shared secret (surrounding whitespace ignored)."""
    allow_insecure_remote: bool = False
    """Let the learner bind a non-loopback ``learner_host`` without TLS and a token (a trusted
    network only); otherwise it refuses to start."""
    max_actors: int = 16
    """Most actors the learner serves at once (its gRPC worker pool holds three streams for each);
    one more is refused at connect with an error naming this field, never left waiting."""
    success_key: str | None = None
    """The env's info key that reports an episode's success; None reads ``is_success`` (LeRobot's),
    then ``success``, then ``succeed`` (gym-hil). An env with none of them gets one warning."""
    max_updates: int = 100
    """The learner stops after this many updates (LeRobot's ``online_steps`` for SAC)."""
    max_env_steps: int | None = None
    """Also stop (with a final checkpoint) once the actors have reported this many env steps."""
    push_every_updates: int = 1
    """Push weights to the actors after every this many updates (actors load them between episodes)."""
    torch_threads: int | None = None
    """Torch threads in the learner and actor processes; null keeps ``--torch_threads`` / its default."""
    queue_get_timeout: float = 0.1
    """Seconds the gRPC service waits on its queues (keeps shutdown prompt)."""
    max_message_bytes: int = 64 * 2**20
    """Largest serialized message (one actor episode) the learner accepts and an actor sends;
    larger ones are rejected with an error naming both sizes (gRPC chunking alone has no bound)."""
    actor_weights_timeout_s: float = 120.0
    """How long an actor waits for the learner's first weights before giving up."""
    actor_connect_attempts: int = 30
    """Handshake attempts when an actor connects, and again when it reconnects after losing the
    learner (backoff 0.5 s doubling to 5 s: about 2.5 min in all); then it exits with an error."""
    actor_drain_timeout_s: float = 10.0
    """On a clean stop (SIGTERM/SIGINT), how long an actor keeps sending its finished, queued
    episodes before it closes the streams (only a learner that went away makes it wait that long)."""
    envs_per_actor: int = 1
    """Envs each actor process steps (each built from the config's ``env`` block); their pending
    decisions are sampled in one batched call."""
    distributed_timeout_s: float = 1800.0
    """A learner launched by ``torchrun`` (several ranks): how long a collective may wait for a
    rank before every rank fails with torch.distributed's timeout error (a hung rank; a dead one
    ends the run at once). Longer than the slowest checkpoint save; waiting for actors is covered
    by rank 0's keep-alives."""

    def runtime_problems(self) -> list[str]:
        """Every bad runtime field, its value and what is accepted (a recipe's ``validate`` adds
        its own hyperparameters' problems)."""
        problems = []
        for name in (
            "max_updates",
            "push_every_updates",
            "envs_per_actor",
            "max_actors",
            "actor_connect_attempts",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be ≥ 1)")
        if self.max_env_steps is not None and self.max_env_steps < 1:
            problems.append(f"max_env_steps={self.max_env_steps} (must be ≥ 1, or null)")
        if self.torch_threads is not None and self.torch_threads < 1:
            problems.append(f"torch_threads={self.torch_threads} (must be ≥ 1, or null)")
        for name in (
            "actor_weights_timeout_s",
            "actor_drain_timeout_s",
            "queue_get_timeout",
            "distributed_timeout_s",
        ):
            if not getattr(self, name) > 0:
                problems.append(f"{name}={getattr(self, name)} (must be > 0 s)")
        if self.max_message_bytes < 1:
            problems.append(f"max_message_bytes={self.max_message_bytes} (must be ≥ 1)")
        return problems + transport_problems(self)

    def validate(self) -> None:
        """Raise one ValueError naming every bad field (called before anything starts).

        Not ``__post_init__``: draccus would replace the message with a generic one.
        """
        problems = self.runtime_problems()
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))


@dataclass
class ActorDecision:
    """One decision as the actor ran it, handed to `OnPolicyRecipe.encode_decision`."""

    observation: dict[str, Tensor]
    """What the sampler read for this row: the preprocessed observation, no batch dim."""
    next_observation: dict[str, Tensor]
    """The preprocessed observation after the last env step that ran (the episode's last one if
    it ended)."""
    actions: Tensor
    """[executed_steps, D] this row's actions from `ActorSampler.act` (the policy's space); the
    first ``len(rewards)`` ran in the env."""
    rewards: list[float]
    """One reward per env step that ran (fewer than ``executed_steps`` when the episode ended)."""
    terminated: bool
    truncated: bool
    sample: Any
    """This row's entry of what `ActorSampler.act` returned about the sampling."""
    policy_version: int
    actor_id: int
    episode_id: int
    """Counts this actor's episodes over all its envs, from 0."""
    decision_index: int
    """This decision's position in its episode, from 0."""


@runtime_checkable
class ActorSampler(Protocol):
    """The policy of one weights version, as the actor samples with it."""

    executed_steps: int
    """Env steps per decision (1 for a per-step policy; H' for an action-chunking one)."""

    def act(self, observations: dict[str, Tensor]) -> tuple[Tensor, list[Any]]:
        """Actions [N, executed_steps, D] (the policy's space: the runtime runs the policy's and
        env's postprocessors) for N preprocessed observations, and one sampling record per row.

        The observations are CPU tensors (as episodes and the wire keep them); a sampler whose
        policy lives on a GPU moves them there, and returns records the wire can carry."""
        ...


@runtime_checkable
class OnPolicyRecipe(Recipe, Protocol):
    """A `Recipe` trained on fresh episodes by lerobot_pirl's on-policy learner and actor."""

    config: OnPolicyConfig

    # --- learner side -------------------------------------------------------------------------
    def accept(self, transition: dict[str, Any]) -> bool:
        """Take one received transition (False if dropped, e.g. sampled by too old a policy).

        Raise `TransitionRejectedError` for anything the recipe must not train on."""
        ...

    def rollout_ready(self) -> bool:
        """Whether enough has been accepted for one ``update_step``."""
        ...

    def take_rollout(self) -> Any:
        """The ready rollout, passed as the single batch of the next ``update_step``."""
        ...

    def data_counters(self) -> Mapping[str, int]:
        """What happened to accepted data: at least ``received``, ``consumed``, ``dropped`` and
        ``pending`` (decisions); logged when the learner stops."""
        ...

    # --- actor side ---------------------------------------------------------------------------
    @property
    def policy_version(self) -> int:
        """The version of the weights last loaded with ``load_actor_weights`` (or trained)."""
        ...

    def sampler(self) -> ActorSampler:
        """The sampler of the current weights: the same object on every call, updated in place by
        ``load_actor_weights`` (the runtime ``copy.deepcopy``-s it to finish episodes that
        started under an older version)."""
        ...

    def encode_decision(self, decision: ActorDecision) -> Any:
        """The LeRobot ``Transition`` the actor sends for ``decision``."""
        ...


@runtime_checkable
class DataParallelRecipe(Protocol):
    """An `OnPolicyRecipe` whose update runs data-parallel over ``torch.distributed`` ranks (a learner
    launched by ``torchrun``; ``docs/multi_gpu.md``).

    The runtime builds the recipe identically on every rank (same config, seed and checkpoint),
    initialises the process group, then calls ``enable_data_parallel`` on every rank. From then on
    ``update_step`` is a collective: every rank calls it with the same rollout (rank 0's, which the
    runtime broadcasts), and the recipe must leave every rank with the same parameters, optimizer
    state and update-deciding state, and return on rank 0 the metrics one process would log. Only
    rank 0's recipe accepts transitions; its counters and generators are the authoritative ones.
    """

    def enable_data_parallel(self, control_group: Any) -> None:
        """Wrap the trained modules for data parallelism (e.g. DDP on the default process group);
        ``control_group`` is a gloo group for small CPU collectives (metrics, recipe state)."""
        ...


def supports_data_parallel(recipe_cls: type[Any]) -> bool:
    """Whether ``recipe_cls`` implements `DataParallelRecipe` (a multi-rank learner needs it)."""
    return callable(getattr(recipe_cls, "enable_data_parallel", None))


_ON_POLICY_METHODS = (
    "accept",
    "rollout_ready",
    "take_rollout",
    "data_counters",
    "sampler",
    "encode_decision",
)


def transport_problems(algo_cfg: Any) -> list[str]:
    """Transport field combinations that can never work (checked with the rest of the config)."""
    problems = []
    if algo_cfg.tls_key_path is not None and algo_cfg.tls_cert_path is None:
        problems.append("tls_key_path is set without tls_cert_path (the learner needs both)")
    if algo_cfg.auth_token_env is not None and algo_cfg.auth_token_file is not None:
        problems.append("auth_token_env and auth_token_file are both set (choose one token source)")
    return problems


def is_on_policy(recipe_cls: type[Any]) -> bool:
    """Whether ``recipe_cls`` runs in the on-policy runtime (its config subclasses `OnPolicyConfig`)."""
    config_cls = getattr(recipe_cls, "config_class", None)
    return isinstance(config_cls, type) and issubclass(config_cls, OnPolicyConfig)


def missing_on_policy_members(recipe_cls: type[Any]) -> list[str]:
    """The `OnPolicyRecipe` members an on-policy recipe class lacks (checked at registration)."""
    missing = [name for name in _ON_POLICY_METHODS if not callable(getattr(recipe_cls, name, None))]
    if not hasattr(recipe_cls, "policy_version"):
        missing.append("policy_version")
    return missing
