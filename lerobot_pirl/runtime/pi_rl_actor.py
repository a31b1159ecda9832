"""The πRL actor: sample chunks with the XVLA mixin, execute H' env steps, send one transition per decision.

Weights (policy + heads + version) are loaded only at episode boundaries, so every decision of an
episode carries the version that sampled it. An episode is sent when it ends; on SIGINT/SIGTERM the
unfinished episode is discarded (the learner never sees partial episodes).
"""

from __future__ import annotations

import logging
import time
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
    policy = recipe.policy
    tokens = instruction_tokens(policy.config)

    env = make_pick_cube_env(
        PickCubeEnvConfig(
            image_obs=algo_cfg.env_render_images,
            image_size=_image_size(policy),
            max_episode_steps=algo_cfg.env_max_episode_steps,
            seed=cfg.seed + actor_id,
        )
    )
    counters = {"episodes": 0, "decisions_sent": 0, "env_steps": 0, "weights_loaded": 0}
    try:
        if not _load_weights(link, recipe, shutdown, block=True, timeout=algo_cfg.actor_weights_timeout_s):
            raise TimeoutError(f"no weights from the learner within {algo_cfg.actor_weights_timeout_s}s")
        counters["weights_loaded"] += 1
        started = time.perf_counter()
        while not shutdown.is_set():
            if _load_weights(link, recipe, shutdown, block=False):
                counters["weights_loaded"] += 1
            episode = _run_episode(env, policy, recipe, tokens, actor_id, counters["episodes"], shutdown)
            if episode is None:
                break  # interrupted: drop the partial episode
            decisions, info = episode
            payload = transitions_to_bytes(decisions)
            if len(payload) > algo_cfg.max_message_bytes:
                raise seam.InvalidConfigError(
                    f"an episode serialises to {len(payload)} bytes, above algorithm.max_message_bytes="
                    f"{algo_cfg.max_message_bytes}; raise the limit or shorten env_max_episode_steps"
                )
            link.transitions.put(payload)
            counters["episodes"] += 1
            counters["decisions_sent"] += len(decisions)
            counters["env_steps"] += info["env_steps"]
            elapsed = time.perf_counter() - started
            link.interactions.put(
                python_object_to_bytes(
                    {
                        "Episodic reward": info["return"],
                        "Interaction step": counters["env_steps"],
                        "episode_env_steps": info["env_steps"],
                        "success": float(info["success"]),
                        "actor_id": actor_id,
                        "policy_version": recipe.assembler.policy_version,
                        "decisions": len(decisions),
                        "env_steps_per_s": counters["env_steps"] / elapsed,
                        "decisions_per_s": counters["decisions_sent"] / elapsed,
                    }
                )
            )
            logging.info(
                f"{LOG_PREFIX} actor {actor_id} episode {counters['episodes']}: return={info['return']:.3f} "
                f"success={info['success']} version={recipe.assembler.policy_version} "
                f"decisions_sent_total={counters['decisions_sent']} env_steps_total={counters['env_steps']} "
                f"env_steps_per_s={counters['env_steps'] / elapsed:.1f}"
            )
    finally:
        _drain(link, timeout=5.0)
        shutdown.set()
        env.close()
        for q in (link.parameters, link.transitions, link.interactions):
            q.cancel_join_thread()
        logging.info(f"{LOG_PREFIX} actor {actor_id} stopped: {counters}")
    return counters


def _run_episode(
    env: Any, policy: Any, recipe: Any, tokens: torch.Tensor, actor_id: int, episode_id: int, shutdown: Any
) -> tuple[list[Any], dict[str, Any]] | None:
    executed_steps = policy.pi_rl_sampling.executed_steps
    observation = _policy_observation(env.reset(seed=None), tokens)
    decisions: list[Any] = []
    total, steps, success = 0.0, 0, False
    while True:
        if shutdown.is_set():
            return None
        batch = {k: v.unsqueeze(0) for k, v in observation.items()}
        actions, record = policy.sample_actions(batch)
        rewards: list[float] = []
        terminated = truncated = False
        for h in range(executed_steps):
            next_raw, reward, terminated, truncated, info = env.step(actions[0, h].float().cpu().numpy())
            rewards.append(float(reward))
            success = success or bool(info.get("success", False))
            steps += 1
            if terminated or truncated:
                break
        next_observation = _policy_observation(next_raw, tokens)
        decisions.append(
            decision_transition(
                observation,
                next_observation,
                actions[0],
                record,
                rewards,
                executed_steps=executed_steps,
                terminated=terminated,
                truncated=truncated,
                policy_version=recipe.assembler.policy_version,
                actor_id=actor_id,
                episode_id=episode_id,
                decision_index=len(decisions),
            )
        )
        total += sum(rewards)
        observation = next_observation
        if terminated or truncated:
            return decisions, {"return": total, "success": success, "env_steps": steps}


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
    link: seam.ActorLink, recipe: Any, shutdown: Any, *, block: bool, timeout: float = 0.0
) -> bool:
    """Load the newest pushed weights; with ``block`` wait for them (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        payload = get_last_item_from_queue(link.parameters, block=False)
        if payload is not None:
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
