"""The πRL actor: sample chunks with the XVLA mixin, execute H' env steps, send one transition per decision.

One actor process steps ``algorithm.envs_per_actor`` envs and samples their pending decisions
together (`BatchedEpisodes`). Every episode is sampled by a single policy version (policy + heads +
version), the newest one when it started. An episode is sent when it ends; on SIGINT/SIGTERM the
unfinished episodes are discarded (the learner never sees partial episodes).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lerobot.policies import make_policy
from lerobot.rl.algorithms.factory import make_algorithm
from lerobot.rl.queue import get_last_item_from_queue
from lerobot.transport.utils import bytes_to_state_dict, python_object_to_bytes, transitions_to_bytes
from lerobot.utils.constants import OBS_LANGUAGE_TOKENS
from lerobot.utils.process import ProcessSignalHandler
from lerobot.utils.random_utils import set_seed
from lerobot.utils.utils import init_logging

from ..envs.pick_cube import ACTION_DIM, PickCubeEnvConfig, make_pick_cube_env
from ..policies.tiny_xvla import instruction_tokens
from ..recipes.pi_rl.transitions import encode_decision, packed_observation
from . import seam

LOG_PREFIX = "[PI-RL ACTOR]"


def run_pi_rl_actor(cfg: seam.RecipeTrainConfig, actor_id: int) -> dict[str, int]:
    """Run episodes until shutdown; returns the actor's counters (episodes, decisions sent, env steps)."""
    seam.validate_for_actor(cfg)
    algo_cfg = cfg.algorithm
    if getattr(cfg.env, "name", None) != "gym_hil" or "PickCube" not in str(cfg.env.task):
        raise seam.InvalidConfigError(
            f"the pi-rl actor runs gym-hil PandaPickCube; got env.type={cfg.env.type!r} "
            f"name={getattr(cfg.env, 'name', None)!r} task={cfg.env.task!r}. Set env.name='gym_hil' "
            "and env.task='PandaPickCubeBase-v0'."
        )
    action = cfg.policy.output_features.get("action") or cfg.env.features.get("action")
    if action is not None and action.shape[0] != ACTION_DIM:
        raise seam.InvalidConfigError(
            f"the policy's action feature has {action.shape[0]} dims but PandaPickCube takes {ACTION_DIM} "
            "([dx, dy, dz, grasp_delta]); set policy.output_features.action.shape to "
            f"[{ACTION_DIM}]"
        )
    set_seed(cfg.seed + 7919 * (actor_id + 1))
    if algo_cfg.torch_threads is not None:
        torch.set_num_threads(algo_cfg.torch_threads)
    shutdown = ProcessSignalHandler(use_threads=True).shutdown_event
    init_logging()
    link = seam.connect_actor(
        algo_cfg.learner_host, algo_cfg.learner_port, shutdown, algo_cfg.queue_get_timeout
    )
    # Only now does the learner's run directory exist (creating it first would make the learner
    # refuse to start on an "existing" output_dir).
    log_dir = Path(cfg.output_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    init_logging(log_file=str(log_dir / f"actor_{actor_id}.log"))

    policy = make_policy(cfg=cfg.policy, env_cfg=cfg.env)
    recipe = make_algorithm(cfg=algo_cfg, policy=policy).recipe  # type: ignore[attr-defined]
    tokens = instruction_tokens(recipe.policy.config)

    envs = [
        make_pick_cube_env(
            PickCubeEnvConfig(
                image_obs=algo_cfg.env_render_images,
                image_size=_image_size(recipe.policy),
                max_episode_steps=algo_cfg.env_max_episode_steps,
                seed=cfg.seed + actor_id + ENV_SEED_STRIDE * index,
                physics_dt=algo_cfg.env_physics_dt,
                shaping_coef=algo_cfg.env_shaping_coef,
                shaping_grasp_weight=algo_cfg.env_shaping_grasp_weight,
            )
        )
        for index in range(algo_cfg.envs_per_actor)
    ]
    counters = {
        "episodes_queued": 0,
        "decisions_queued": 0,
        "episodes_delivered": 0,
        "decisions_delivered": 0,
        "env_steps": 0,
        "weights_loaded": 0,
    }
    undelivered: deque[int] = deque()  # decisions per queued, not yet delivered episode, in order
    started = time.perf_counter()

    def count_delivered() -> None:
        """Episodes handed to the gRPC call (``ActorLink.transitions_handed_over``), in order."""
        while counters["episodes_delivered"] < link.transitions_handed_over:
            counters["episodes_delivered"] += 1
            counters["decisions_delivered"] += undelivered.popleft()

    def send(episode: _Episode) -> None:
        payload = transitions_to_bytes(episode.decisions)
        if len(payload) > algo_cfg.max_message_bytes:
            raise seam.InvalidConfigError(
                f"an episode serialises to {len(payload)} bytes, above algorithm.max_message_bytes="
                f"{algo_cfg.max_message_bytes}; raise the limit or shorten env_max_episode_steps"
            )
        link.transitions.put(payload)
        undelivered.append(len(episode.decisions))
        counters["episodes_queued"] += 1
        counters["decisions_queued"] += len(episode.decisions)
        counters["env_steps"] += episode.env_steps
        count_delivered()
        elapsed = time.perf_counter() - started
        link.interactions.put(
            python_object_to_bytes(
                {
                    "Episodic reward": episode.total_reward,
                    "Interaction step": counters["env_steps"],
                    "episode_env_steps": episode.env_steps,
                    "success": float(episode.success),
                    "actor_id": actor_id,
                    "policy_version": episode.policy_version,
                    "decisions": len(episode.decisions),
                    "env_steps_per_s": counters["env_steps"] / elapsed,
                    "decisions_per_s": counters["decisions_queued"] / elapsed,
                }
            )
        )
        logging.info(
            f"{LOG_PREFIX} actor {actor_id} episode {counters['episodes_queued']}: "
            f"return={episode.total_reward:.3f} success={episode.success} "
            f"version={episode.policy_version} decisions_queued_total={counters['decisions_queued']} "
            f"decisions_delivered_total={counters['decisions_delivered']} "
            f"env_steps_total={counters['env_steps']} env_steps_per_s={counters['env_steps'] / elapsed:.1f}"
        )

    try:
        if not _load_weights(link, recipe, shutdown, block=True, timeout=algo_cfg.actor_weights_timeout_s):
            raise TimeoutError(f"no weights from the learner within {algo_cfg.actor_weights_timeout_s}s")
        counters["weights_loaded"] += 1
        runner = BatchedEpisodes(envs, recipe, tokens, actor_id)
        while not shutdown.is_set():
            if runner.wants_weights() and _load_weights(
                link, recipe, shutdown, block=False, before_load=runner.freeze_live_episodes
            ):
                counters["weights_loaded"] += 1
            for episode in runner.step():
                send(episode)
    finally:
        _drain(link, timeout=5.0)
        shutdown.set()
        for thread in link.sender_threads:  # they end once they see shutdown: the count is final
            thread.join(timeout=5.0)
        count_delivered()
        for env in envs:
            env.close()
        for q in (link.parameters, link.transitions, link.interactions):
            q.cancel_join_thread()
        logging.info(f"{LOG_PREFIX} actor {actor_id} stopped: {counters}")
    return counters


ENV_SEED_STRIDE = 1009
"""Env ``i`` of an actor is seeded ``seed + actor_id + ENV_SEED_STRIDE·i`` (env 0 keeps the old seed)."""


@dataclass
class _Episode:
    """One env's episode in progress: its policy version and the decisions encoded so far."""

    episode_id: int
    policy_version: int
    sampler: Any  # the policy (with its heads) of that version
    observation: dict[str, torch.Tensor]
    decisions: list[Any] = field(default_factory=list)
    total_reward: float = 0.0
    env_steps: int = 0
    success: bool = False


class BatchedEpisodes:
    """N envs stepped together; all pending decisions of one policy version in one sampling call.

    Each episode is sampled by one policy version from its first decision to its last: an env
    starts an episode with the newest weights, and when newer weights arrive while other envs are
    mid-episode, those keep a frozen copy of the version they started with (dropped once no
    episode uses it). So most steps make one batched ``sample_actions`` call, a few make two.
    """

    def __init__(
        self, envs: list[Any], recipe: Any, tokens: torch.Tensor, actor_id: int, first_episode_id: int = 0
    ) -> None:
        self.envs, self.recipe, self.tokens, self.actor_id = envs, recipe, tokens, actor_id
        self.executed_steps = recipe.policy.pi_rl_sampling.executed_steps
        self.episodes: list[_Episode | None] = [None] * len(envs)
        self._frozen: dict[int, Any] = {}  # policy version -> a copy of that version's policy
        self._next_episode_id = first_episode_id

    def wants_weights(self) -> bool:
        """New weights are only taken when some env is between episodes (else nobody could use them)."""
        return any(episode is None for episode in self.episodes)

    def freeze_live_episodes(self) -> None:
        """Call before the recipe's policy is overwritten: episodes sampling with it keep a copy."""
        for episode in self.episodes:
            if episode is not None and episode.sampler is self.recipe.policy:
                if episode.policy_version not in self._frozen:
                    self._frozen[episode.policy_version] = copy.deepcopy(self.recipe.policy)
                episode.sampler = self._frozen[episode.policy_version]

    def _start_episodes(self) -> None:
        for index, env in enumerate(self.envs):
            if self.episodes[index] is None:
                self.episodes[index] = _Episode(
                    episode_id=self._next_episode_id,
                    policy_version=self.recipe.assembler.policy_version,
                    sampler=self.recipe.policy,
                    observation=_policy_observation(env.reset(seed=None), self.tokens),
                )
                self._next_episode_id += 1
        live = {episode.policy_version for episode in self.episodes if episode is not None}
        for version in list(self._frozen):
            if version not in live:
                del self._frozen[version]

    def step(self) -> list[_Episode]:
        """One decision for every env; returns the episodes that ended."""
        self._start_episodes()
        finished: list[_Episode] = []
        groups: dict[int, list[int]] = {}
        for index, episode in enumerate(self.episodes):
            assert episode is not None
            groups.setdefault(episode.policy_version, []).append(index)
        for indices in groups.values():
            sampler = self.episodes[indices[0]].sampler  # type: ignore[union-attr]
            batch = {
                key: torch.stack([self.episodes[i].observation[key] for i in indices])  # type: ignore[union-attr]
                for key in self.episodes[indices[0]].observation  # type: ignore[union-attr]
            }
            actions, record = sampler.sample_actions(batch)
            for row, index in enumerate(indices):
                if self._execute(index, actions[row], record, row):
                    finished.append(self.episodes[index])  # type: ignore[arg-type]
                    self.episodes[index] = None
        return finished

    def _execute(self, index: int, chunk: torch.Tensor, record: Any, row: int) -> bool:
        """Run H' actions of ``chunk`` in env ``index`` and encode the decision; True if it ended."""
        env, episode = self.envs[index], self.episodes[index]
        assert episode is not None
        rewards: list[float] = []
        terminated = truncated = False
        for h in range(self.executed_steps):
            next_raw, reward, terminated, truncated, info = env.step(chunk[h].float().cpu().numpy())
            rewards.append(float(reward))
            episode.success = episode.success or bool(info.get("success", False))
            episode.env_steps += 1
            if terminated or truncated:
                break
        next_observation = _policy_observation(next_raw, self.tokens)
        episode.decisions.append(
            decision_transition(
                episode.observation,
                next_observation,
                chunk,
                record.row(row),
                rewards,
                executed_steps=self.executed_steps,
                terminated=terminated,
                truncated=truncated,
                policy_version=episode.policy_version,
                actor_id=self.actor_id,
                episode_id=episode.episode_id,
                decision_index=len(episode.decisions),
            )
        )
        episode.total_reward += sum(rewards)
        episode.observation = next_observation
        return terminated or truncated


def _run_episode(
    env: Any, recipe: Any, tokens: torch.Tensor, actor_id: int, episode_id: int, shutdown: Any
) -> tuple[list[Any], dict[str, Any]] | None:
    """One whole episode in one env (``None`` if ``shutdown`` was set first), as the actor records it."""
    runner = BatchedEpisodes([env], recipe, tokens, actor_id, first_episode_id=episode_id)
    while not shutdown.is_set():
        for episode in runner.step():
            return episode.decisions, {
                "return": episode.total_reward,
                "success": episode.success,
                "env_steps": episode.env_steps,
            }
    return None


def decision_transition(
    observation: dict[str, torch.Tensor],
    next_observation: dict[str, torch.Tensor],
    chunk: torch.Tensor,
    record: Any,
    rewards: list[float],
    *,
    executed_steps: int,
    terminated: bool,
    truncated: bool,
    policy_version: int,
    actor_id: int,
    episode_id: int,
    decision_index: int,
) -> Any:
    """The transition for one decision: ``chunk`` [H, D] sampled with ``record`` (batch of one),
    of which the first ``len(rewards)`` actions ran in the env (H' = ``executed_steps`` at most)."""
    return encode_decision(
        observation=observation,
        next_observation=next_observation,
        executed_actions=_pad_rows(chunk[: len(rewards)], executed_steps),
        step_rewards=torch.tensor(rewards),
        executed_steps=executed_steps,
        terminated=terminated,
        truncated=truncated,
        chain=record.chain[0],
        step_index=int(record.step_index[0]),
        old_log_prob=float(record.log_prob[0]),
        old_value=float(record.value[0]),
        policy_version=policy_version,
        actor_id=actor_id,
        episode_id=episode_id,
        decision_index=decision_index,
    )


def _policy_observation(raw: dict[str, torch.Tensor], tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    return packed_observation({**raw, OBS_LANGUAGE_TOKENS: tokens})


def _pad_rows(actions: torch.Tensor, rows: int) -> torch.Tensor:
    """Executed actions padded to H' rows (fixed transition shape); unexecuted rows are zero."""
    padded = torch.zeros(rows, actions.shape[-1])
    padded[: actions.shape[0]] = actions.float().cpu()
    return padded


def _image_size(policy: Any) -> int:
    shapes = [feature.shape for feature in policy.config.image_features.values()]
    return int(shapes[0][-1]) if shapes else 16


def _load_weights(
    link: seam.ActorLink,
    recipe: Any,
    shutdown: Any,
    *,
    block: bool,
    timeout: float = 0.0,
    before_load: Any = None,
) -> bool:
    """Load the newest pushed weights; with ``block`` wait for them (bounded by ``timeout``).

    ``before_load`` runs just before the recipe's policy is overwritten (only if weights arrived).
    """
    deadline = time.monotonic() + timeout
    while True:
        payload = get_last_item_from_queue(link.parameters, block=False)
        if payload is not None:
            if before_load is not None:
                before_load()
            recipe.load_actor_weights(bytes_to_state_dict(payload), device=recipe.policy.config.device)
            return True
        if not block or shutdown.is_set() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _drain(link: seam.ActorLink, timeout: float) -> None:
    """Give the sender threads a moment to flush finished episodes before the streams close."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (link.transitions.empty() and link.interactions.empty()):
        time.sleep(0.05)
    time.sleep(0.5)
