"""The actor of on-policy recipes: step envs, sample with the recipe, send one transition per decision.

Nothing here knows the algorithm: the recipe's `OnPolicyRecipe.sampler` gives each decision's
``executed_steps`` actions and a sampling record, and `OnPolicyRecipe.encode_decision` turns what
ran into the transition sent (for pi-rl: a chunk, H' env steps, the denoising chain).

The envs come from the config's ``env`` block through LeRobot's ``make_env`` (`runtime.envs`), and
observations and actions pass through the checkpoint's LeRobot processors (`runtime.processors`):
each transition stores the observation as the policy saw it after preprocessing (normalised state,
tokenised instruction, image steps), which is exactly what the learner re-scores. One actor
process steps ``algorithm.envs_per_actor`` envs and samples their pending decisions together
(`BatchedEpisodes`). Every episode is sampled by a single policy version, the newest one when it
started. An episode is sent when it ends; on SIGINT/SIGTERM the unfinished episodes are discarded
(the learner never sees partial episodes).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.policies import make_policy
from lerobot.rl.algorithms.factory import make_algorithm
from lerobot.rl.queue import get_last_item_from_queue
from lerobot.transport.utils import bytes_to_state_dict, python_object_to_bytes, transitions_to_bytes
from lerobot.utils.process import ProcessSignalHandler
from lerobot.utils.random_utils import set_seed
from lerobot.utils.utils import init_logging

from ..recipes.on_policy import ActorDecision, OnPolicyRecipe
from . import seam, transport
from .envs import SUCCESS_KEYS, EnvConfigError, make_envs, require_env_factory, step_env, task_description
from .processors import PolicyIO
from .security import actor_security

LOG_PREFIX = "[ON-POLICY ACTOR]"


def run_on_policy_actor(cfg: seam.RecipeTrainConfig, actor_id: int) -> dict[str, int]:
    """Run episodes until shutdown; returns the actor's counters (episodes and decisions queued and
    delivered, env steps, weight loads)."""
    seam.validate_for_actor(cfg)
    algo_cfg = cfg.algorithm
    set_seed(cfg.seed + 7919 * (actor_id + 1))
    if algo_cfg.torch_threads is not None:
        torch.set_num_threads(algo_cfg.torch_threads)
    init_logging()
    security = actor_security(algo_cfg)
    recipe, io, envs = _build_actor_parts(cfg, actor_id)  # a config that cannot run fails before connecting
    device = str(cfg.policy.device)
    shutdown = ProcessSignalHandler(use_threads=True).shutdown_event

    def connect() -> transport.ActorLink:
        return transport.connect_actor(
            algo_cfg.learner_host,
            algo_cfg.learner_port,
            shutdown,
            algo_cfg.queue_get_timeout,
            attempts=algo_cfg.actor_connect_attempts,
            security=security,
        )

    link = connect()
    # Only now does the learner's run directory exist (creating it first would make the learner
    # refuse to start on an "existing" output_dir).
    log_dir = Path(cfg.output_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    init_logging(log_file=str(log_dir / f"actor_{actor_id}.log"))

    sender = _EpisodeSender(link, actor_id, algo_cfg.max_message_bytes)
    finished: TrainingOver | None = None
    try:
        if not _load_weights(
            link, recipe, shutdown, device=device, block=True, timeout=algo_cfg.actor_weights_timeout_s
        ):
            raise TimeoutError(f"no weights from the learner within {algo_cfg.actor_weights_timeout_s}s")
        sender.counters["weights_loaded"] += 1
        seeds = [cfg.seed + actor_id + ENV_SEED_STRIDE * index for index in range(len(envs))]
        runner = BatchedEpisodes(envs, io, recipe, actor_id, seeds=seeds, success_key=algo_cfg.success_key)
        while not shutdown.is_set():
            if sender.link.broken():  # the learner went away: reconnect, resend what is queued
                _newest_state(sender.link)  # ...unless its last word was that training is over (raises)
                try:
                    sender.reconnect(connect)
                except transport.LearnerUnavailableError:
                    if shutdown.is_set():
                        break  # stopped while waiting: a clean stop (what was kept is counted lost)
                    raise
            if runner.wants_weights() and _load_weights(
                sender.link,
                recipe,
                shutdown,
                device=device,
                block=False,
                before_load=runner.freeze_live_episodes,
            ):
                sender.counters["weights_loaded"] += 1
            for episode in runner.step():
                sender.send(episode)
    except TrainingOver as over:
        finished = over
    finally:
        shutdown.set()
        sender.close(algo_cfg.actor_drain_timeout_s)
        for env in envs:
            env.close()
        logging.info(f"{LOG_PREFIX} actor {actor_id} stopped: {sender.counters}")
    if finished is not None:
        counters = sender.counters
        print(
            f"lerobot-pirl-actor: {finished}; actor {actor_id} stops after {counters['episodes_queued']} "
            f"episodes, {counters['env_steps']} env steps, {counters['weights_loaded']} weight loads",
            flush=True,
        )
    return sender.counters


def _build_actor_parts(
    cfg: seam.RecipeTrainConfig, actor_id: int = 0
) -> tuple[OnPolicyRecipe, PolicyIO, list[Any]]:
    """The recipe (with its policy), the checkpoint's processors and the envs, checked to fit."""
    require_env_factory(cfg.env)
    policy = make_policy(cfg=cfg.policy, env_cfg=cfg.env)
    recipe = make_algorithm(cfg=cfg.algorithm, policy=policy).recipe  # type: ignore[attr-defined]
    io = PolicyIO.for_policy(cfg.policy, cfg.env)
    envs = make_envs(
        cfg.env, cfg.algorithm.envs_per_actor, first_index=actor_id * cfg.algorithm.envs_per_actor
    )
    try:
        check_env_feeds_policy(envs[0], io, cfg.policy, seed=cfg.seed, env_type=cfg.env.type)
    except BaseException:
        for env in envs:
            env.close()
        raise
    return recipe, io, envs


class _EpisodeSender:
    """Queues finished episodes for the gRPC sender threads and keeps the delivery accounting.

    *Queued* counts what this process put on the sender queue; *delivered* counts what the gRPC
    call has taken (``ActorLink.transitions_handed_over``), in queue order. A SIGKILL can lose the
    queued-but-undelivered tail; ``close`` waits (bounded) until that tail is empty. When the
    learner goes away, ``reconnect`` carries the still-queued episodes to the new connection and
    counts the one the broken stream had taken but not finished as *lost* (so queued = delivered +
    lost + still queued, always).
    """

    def __init__(self, link: transport.ActorLink, actor_id: int, max_message_bytes: int) -> None:
        self.link, self.actor_id, self.max_message_bytes = link, actor_id, max_message_bytes
        self.counters = {
            "episodes_queued": 0,
            "decisions_queued": 0,
            "episodes_delivered": 0,
            "decisions_delivered": 0,
            "episodes_lost": 0,
            "decisions_lost": 0,
            "reconnects": 0,
            "env_steps": 0,
            "weights_loaded": 0,
        }
        self._undelivered: deque[int] = deque()  # decisions per queued, undelivered episode
        self._delivered_before = 0  # episodes delivered over earlier connections
        self._started = time.perf_counter()

    def send(self, episode: _Episode) -> None:
        payload = transitions_to_bytes(episode.decisions)
        if len(payload) > self.max_message_bytes:
            raise seam.InvalidConfigError(
                f"an episode serialises to {len(payload)} bytes, above algorithm.max_message_bytes="
                f"{self.max_message_bytes}; raise the limit or shorten env.episode_length"
            )
        counters = self.counters
        self.link.transitions.put(payload)
        self._undelivered.append(len(episode.decisions))
        counters["episodes_queued"] += 1
        counters["decisions_queued"] += len(episode.decisions)
        counters["env_steps"] += episode.env_steps
        self._count_delivered()
        elapsed = time.perf_counter() - self._started
        self.link.interactions.put(
            python_object_to_bytes(
                {
                    "Episodic reward": episode.total_reward,
                    "Interaction step": counters["env_steps"],
                    "episode_env_steps": episode.env_steps,
                    "success": float(episode.success),
                    "task": episode.task,
                    "actor_id": self.actor_id,
                    "policy_version": episode.policy_version,
                    "decisions": len(episode.decisions),
                    "env_steps_per_s": counters["env_steps"] / elapsed,
                    "decisions_per_s": counters["decisions_queued"] / elapsed,
                }
            )
        )
        logging.info(
            f"{LOG_PREFIX} actor {self.actor_id} episode {counters['episodes_queued']}: "
            f"return={episode.total_reward:.3f} success={episode.success} "
            f"version={episode.policy_version} decisions_queued_total={counters['decisions_queued']} "
            f"decisions_delivered_total={counters['decisions_delivered']} "
            f"env_steps_total={counters['env_steps']} env_steps_per_s={counters['env_steps'] / elapsed:.1f}"
        )

    def close(self, drain_timeout: float) -> None:
        """Let gRPC take what is queued (at most ``drain_timeout`` s), stop the senders, and make
        the delivered counts final."""
        link = self.link
        on_this_link = self.counters["episodes_queued"] - self._delivered_before
        _drain(link, episodes=on_this_link, timeout=drain_timeout)
        link.stop_senders()
        for thread in link.sender_threads:  # they end once they see the stop: the count is final
            thread.join(timeout=5.0)
        self._count_delivered()
        for q in (link.parameters, link.transitions, link.interactions):
            q.cancel_join_thread()

    def reconnect(self, connect: Any) -> None:
        """Replace a broken link: a new connection (bounded retries with backoff, or the error
        after the last attempt), with the old link's unsent payloads queued on it in order."""
        self._count_delivered()
        transitions, interactions = self.link.take_unsent()
        lost = len(self._undelivered) - len(transitions)  # taken by the broken stream, unfinished
        for _ in range(lost):
            self.counters["episodes_lost"] += 1
            self.counters["decisions_lost"] += self._undelivered.popleft()
        logging.warning(
            f"{LOG_PREFIX} actor {self.actor_id}: the learner went away; reconnecting "
            f"({len(transitions)} queued episodes kept, {lost} lost in transit)"
        )
        try:
            link = connect()
        except BaseException:  # no learner came back: what was kept for it is lost too, counted
            for _ in transitions:
                self.counters["episodes_lost"] += 1
                self.counters["decisions_lost"] += self._undelivered.popleft()
            self.link.transitions_handed_over = 0  # nothing more can leave through the old link
            self._delivered_before = self.counters["episodes_delivered"] + self.counters["episodes_lost"]
            raise
        self._delivered_before = self.counters["episodes_delivered"] + self.counters["episodes_lost"]
        self.link = link
        for payload in transitions:
            self.link.transitions.put(payload)
        for payload in interactions:
            self.link.interactions.put(payload)
        self.counters["reconnects"] += 1
        logging.info(f"{LOG_PREFIX} actor {self.actor_id} reconnected: {self.counters}")

    def _count_delivered(self) -> None:
        while self.counters["episodes_delivered"] + self.counters["episodes_lost"] < (
            self._delivered_before + self.link.transitions_handed_over
        ):
            self.counters["episodes_delivered"] += 1
            self.counters["decisions_delivered"] += self._undelivered.popleft()


ENV_SEED_STRIDE = 1009
"""Env ``i`` of an actor is first reset with seed ``seed + actor_id + ENV_SEED_STRIDE·i``; its later
episodes continue that env's own random stream (gymnasium's autoreset)."""


def check_env_feeds_policy(env: Any, io: PolicyIO, config: Any, *, seed: int, env_type: str) -> None:
    """Reset ``env`` once and check that its processed observation has every input feature of the
    policy config (``make_policy`` filled them in) with the declared shape, and that the env takes
    the policy's action size."""
    raw, _ = env.reset(seed=[seed])
    observation = io.observation(raw, task_description(env))
    problems = []
    for key, feature in config.input_features.items():
        if key not in observation:
            problems.append(f"the policy reads {key!r} {list(feature.shape)} but the env gives none")
        elif tuple(observation[key].shape[1:]) != tuple(feature.shape):
            problems.append(
                f"the policy reads {key!r} as {list(feature.shape)} but the env gives "
                f"{list(observation[key].shape[1:])}"
            )
    policy_action = config.output_features["action"].shape[0]
    env_action = io.env_actions(torch.zeros(1, policy_action)).shape[-1]
    space = env.single_action_space
    space_dims = int(space.shape[0]) if getattr(space, "shape", None) else None
    if space_dims is not None and env_action != space_dims:
        problems.append(f"the policy acts with {env_action} dims but the env's action space has {space_dims}")
    if problems:
        raise EnvConfigError(
            f"env.type={env_type!r} cannot feed policy.type={config.type!r}: "
            + "; ".join(problems)
            + f". The env's processed observation has {sorted(observation)}."
        )


def packed_observation(observation: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The observation with its float32 tensors as views of one buffer (other dtypes as they are).

    ``torch.save`` writes one zip record per storage; an actor that builds each observation this
    way sends state and image as one record (~200 bytes less per decision). Values are unchanged.
    """
    floats = {k: v for k, v in observation.items() if v.dtype == torch.float32}
    if len(floats) < 2:
        return dict(observation)
    buffer = torch.cat([v.detach().reshape(-1) for v in floats.values()])
    packed, offset = dict(observation), 0
    for key, value in floats.items():
        packed[key] = buffer[offset : offset + value.numel()].view(value.shape)
        offset += value.numel()
    return packed


@dataclass
class _Episode:
    """One env's episode in progress: its policy version and the decisions encoded so far."""

    episode_id: int
    policy_version: int
    sampler: Any  # the recipe's ActorSampler of that version
    observation: dict[str, torch.Tensor]  # as the policy reads it, no batch dim
    decisions: list[Any] = field(default_factory=list)
    total_reward: float = 0.0
    env_steps: int = 0
    success: bool = False
    task: str = ""
    """The env's instruction (a multi-task env type gives each env its own)."""


class BatchedEpisodes:
    """N envs stepped together; all pending decisions of one policy version in one sampling call.

    Each episode is sampled by one policy version from its first decision to its last: an env
    starts an episode with the newest weights, and when newer weights arrive while other envs are
    mid-episode, those keep a frozen copy of the sampler they started with (dropped once no
    episode uses it). So most steps make one batched ``act`` call, a few make two.
    ``envs`` are single-env vector envs (`runtime.envs.make_envs`); env ``i`` is first reset with
    ``seeds[i]``.
    """

    def __init__(
        self,
        envs: list[Any],
        io: PolicyIO,
        recipe: OnPolicyRecipe,
        actor_id: int,
        *,
        seeds: list[int],
        first_episode_id: int = 0,
        success_key: str | None = None,
    ) -> None:
        self.envs, self.io, self.recipe, self.actor_id = envs, io, recipe, actor_id
        self.success_key = success_key
        self._success_reported = False  # any step's info had the success key
        self._warned_no_success = False
        self.tasks = [task_description(env) for env in envs]
        self.episodes: list[_Episode | None] = [None] * len(envs)
        # The first raw observation of each env's next episode (after its autoreset), if known.
        self._next_start: list[dict[str, Any] | None] = [
            env.reset(seed=[s])[0] for env, s in zip(envs, seeds, strict=True)
        ]
        self._frozen: dict[int, Any] = {}  # policy version -> a copy of that version's sampler
        self._last_rows: list[dict[str, torch.Tensor]] = [{} for _ in envs]
        self._next_episode_id = first_episode_id

    def wants_weights(self) -> bool:
        """New weights are only taken when some env is between episodes (else nobody could use them)."""
        return any(episode is None for episode in self.episodes)

    def freeze_live_episodes(self) -> None:
        """Call before the recipe's weights are overwritten: episodes sampling with them keep a copy."""
        live = self.recipe.sampler()
        for episode in self.episodes:
            if episode is not None and episode.sampler is live:
                if episode.policy_version not in self._frozen:
                    self._frozen[episode.policy_version] = copy.deepcopy(live)
                episode.sampler = self._frozen[episode.policy_version]

    def _policy_observations(self, raws: dict[int, dict[str, Any]]) -> dict[int, dict[str, torch.Tensor]]:
        """Several envs' raw observations as the policy reads them (no batch dim each), through the
        processors in one call per task: the raw observations stacked along the batch dim. Each
        row owns its tensors (a view would carry the whole batch's storage onto the wire).
        Non-float entries equal to the env's previous ones (the task's token ids, its attention
        mask, the domain id) are that same tensor object, so an episode's transport payload
        stores them once. Rows are CPU tensors whatever the policy's device."""
        by_task: dict[str, list[int]] = {}
        for index in raws:
            by_task.setdefault(self.tasks[index], []).append(index)
        rows: dict[int, dict[str, torch.Tensor]] = {}
        for task, indices in by_task.items():
            batch = self.io.observation(_stack_raw([raws[i] for i in indices]), task)
            # The processors put the batch on the policy's device; episodes and the wire keep CPU
            # rows (the sampler moves its input over), one transfer per key for all these envs.
            batch = {key: value.cpu() for key, value in batch.items()}
            for position, index in enumerate(indices):
                row = packed_observation({key: value[position].clone() for key, value in batch.items()})
                previous = self._last_rows[index]
                for key, value in row.items():
                    if (
                        not value.is_floating_point()
                        and key in previous
                        and previous[key].shape == value.shape
                        and torch.equal(previous[key], value)
                    ):
                        row[key] = previous[key]
                self._last_rows[index] = rows[index] = row
        return rows

    def _start_episodes(self) -> None:
        starting = [index for index, episode in enumerate(self.episodes) if episode is None]
        raws = {index: self._next_start[index] for index in starting}
        observations = self._policy_observations(raws)  # type: ignore[arg-type]
        for index in starting:
            self.episodes[index] = _Episode(
                episode_id=self._next_episode_id,
                policy_version=self.recipe.policy_version,
                sampler=self.recipe.sampler(),
                observation=observations[index],
                task=self.tasks[index],
            )
            self._next_start[index] = None
            self._next_episode_id += 1
        live = {episode.policy_version for episode in self.episodes if episode is not None}
        for version in list(self._frozen):
            if version not in live:
                del self._frozen[version]

    def step(self) -> list[_Episode]:
        """One decision for every env; returns the episodes that ended."""
        self._start_episodes()
        groups: dict[int, list[int]] = {}
        for index, episode in enumerate(self.episodes):
            assert episode is not None
            groups.setdefault(episode.policy_version, []).append(index)
        ran: list[tuple[int, torch.Tensor, Any, _Steps]] = []
        for indices in groups.values():
            episodes = [self.episodes[i] for i in indices]
            sampler = episodes[0].sampler  # type: ignore[union-attr]
            batch = {
                key: torch.stack([episode.observation[key] for episode in episodes])  # type: ignore[union-attr]
                for key in episodes[0].observation  # type: ignore[union-attr]
            }
            actions, samples = sampler.act(batch)
            for row, index in enumerate(indices):
                steps = self._run(index, actions[row], sampler.executed_steps)
                ran.append((index, actions[row], samples[row], steps))
        next_observations = self._policy_observations({index: steps.last_raw for index, _, _, steps in ran})
        finished: list[_Episode] = []
        for index, actions, sample, steps in ran:
            episode = self.episodes[index]
            assert episode is not None
            episode.decisions.append(
                self.recipe.encode_decision(
                    ActorDecision(
                        observation=episode.observation,
                        next_observation=next_observations[index],
                        actions=actions,
                        rewards=steps.rewards,
                        terminated=steps.terminated,
                        truncated=steps.truncated,
                        sample=sample,
                        policy_version=episode.policy_version,
                        actor_id=self.actor_id,
                        episode_id=episode.episode_id,
                        decision_index=len(episode.decisions),
                    )
                )
            )
            episode.total_reward += sum(steps.rewards)
            episode.observation = next_observations[index]
            if steps.terminated or steps.truncated:
                finished.append(episode)
                self.episodes[index] = None
        return finished

    def _run(self, index: int, actions: torch.Tensor, executed_steps: int) -> _Steps:
        """Run a decision's actions ([executed_steps, D]) in env ``index`` until its episode ends."""
        env, episode = self.envs[index], self.episodes[index]
        assert episode is not None
        env_actions = self.io.env_actions(actions)
        rewards: list[float] = []
        for h in range(executed_steps):
            result = step_env(env, env_actions[h])
            rewards.append(result.reward)
            episode.success = episode.success or result.success_under(self.success_key)
            self._success_reported = (
                self._success_reported or result.success_key(self.success_key) is not None
            )
            episode.env_steps += 1
            if result.done:
                self._warn_if_success_is_never_reported()
                break
        if result.done:
            self._next_start[index] = result.observation
        last_raw = result.final_observation if result.done else result.observation
        assert last_raw is not None
        return _Steps(rewards, result.terminated, result.truncated, last_raw)

    def _warn_if_success_is_never_reported(self) -> None:
        """One warning, at the first episode end, for an env whose info has no success key."""
        if self._success_reported or self._warned_no_success:
            return
        self._warned_no_success = True
        looked_for = repr(self.success_key) if self.success_key else ", ".join(SUCCESS_KEYS)
        logging.warning(
            f"{LOG_PREFIX} actor {self.actor_id}: the env's info reports no success (looked for "
            f"{looked_for}), so every episode counts as a failure; set algorithm.success_key to the "
            "info key your env reports success under"
        )


@dataclass
class _Steps:
    """What one decision's env steps gave: their rewards, how the last one ended, its observation."""

    rewards: list[float]
    terminated: bool
    truncated: bool
    last_raw: dict[str, Any]


def _stack_raw(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """Raw (batch-of-one) env observations stacked along the batch dim, nested dicts included."""
    first = raws[0]
    if isinstance(first, dict):
        return {key: _stack_raw([raw[key] for raw in raws]) for key in first}
    if len(raws) == 1:
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(raws)
    return np.concatenate(raws)


def _load_weights(
    link: transport.ActorLink,
    recipe: OnPolicyRecipe,
    shutdown: Any,
    *,
    device: str,
    block: bool,
    timeout: float = 0.0,
    before_load: Any = None,
) -> bool:
    """Load the newest pushed weights; with ``block`` wait for them (bounded by ``timeout``).

    ``before_load`` runs just before the recipe's weights are overwritten (only if weights arrived).
    """
    deadline = time.monotonic() + timeout
    while True:
        if link.refusal is not None:
            raise transport.LearnerRefusedError(link.refusal)
        state = _newest_state(link)
        if state is not None:
            if before_load is not None:
                before_load()
            recipe.load_actor_weights(state, device=device)
            return True
        if not block or shutdown.is_set() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _newest_state(link: transport.ActorLink) -> dict[str, Any] | None:
    """The newest pushed state dict (older ones are skipped), or None; raises `TrainingOver` when it is
    the learner's end notice, which is always the last payload a learner sends."""
    payload = get_last_item_from_queue(link.parameters, block=False)
    if payload is None:
        return None
    state = bytes_to_state_dict(payload)
    if transport.TRAINING_OVER in state:
        raise TrainingOver(int(state[transport.TRAINING_OVER].item()))
    return state


class TrainingOver(Exception):
    """The learner finished training (`transport.TRAINING_OVER`): no more weights will come."""

    def __init__(self, updates: int) -> None:
        super().__init__(f"the learner finished training after {updates} updates")
        self.updates = updates


def _drain(link: transport.ActorLink, *, episodes: int, timeout: float) -> None:
    """Wait (at most ``timeout`` s) until gRPC has taken all ``episodes`` queued episodes and the
    interaction messages are out, so a clean stop loses nothing while the learner is reachable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (
        link.transitions_handed_over < episodes or not link.interactions.empty()
    ):
        time.sleep(0.05)
