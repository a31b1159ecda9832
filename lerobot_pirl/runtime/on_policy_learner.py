"""The learner loop for on-policy recipes (`OnPolicyRecipe`: ``pi-rl``, and yours), from LeRobot's parts.

LeRobot's learner loop is SAC-shaped: it reads SAC-only policy fields, samples a DrQ-augmented
replay buffer at random, and would recompute PPO ratios on augmented images. This loop keeps what
carries over — the gRPC ``LearnerService``, the transport encoding, ``make_policy``,
``make_algorithm`` (so the recipe is an ``RLAlgorithm``), LeRobot's checkpoint layout — and swaps
the replay buffer for the recipe's on-policy rollout. It never blocks waiting for data.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import torch
from lerobot.common.train_utils import (
    get_step_checkpoint_dir,
    load_training_state,
    save_checkpoint,
)
from lerobot.common.wandb_utils import WandBLogger
from lerobot.envs.configs import HILSerlRobotEnvConfig
from lerobot.policies import make_policy
from lerobot.rl.algorithms.factory import make_algorithm
from lerobot.transport.utils import bytes_to_python_object, state_to_bytes
from lerobot.utils.constants import (
    ALGORITHM_DIR,
    CHECKPOINTS_DIR,
    LAST_CHECKPOINT_LINK,
    PRETRAINED_MODEL_DIR,
    TRAINING_STATE_DIR,
    TRAINING_STEP,
)
from lerobot.utils.io_utils import write_json
from lerobot.utils.process import ProcessSignalHandler
from lerobot.utils.random_utils import set_seed
from lerobot.utils.utils import init_logging
from safetensors.torch import load_file
from torch.multiprocessing import Queue

from lerobot_pirl.errors import LerobotPirlError
from lerobot_pirl.recipes.on_policy import OnPolicyRecipe
from lerobot_pirl.runtime import distributed, seam, transport
from lerobot_pirl.runtime.envs import require_env_factory
from lerobot_pirl.runtime.ingest import EpisodeDecoder
from lerobot_pirl.runtime.model_card import write_model_card
from lerobot_pirl.runtime.processors import BUNDLED_TOKENIZER_DIR, PolicyIO, bundle_tokenizer
from lerobot_pirl.runtime.security import learner_security

LOG_PREFIX = "[ON-POLICY LEARNER]"
END_NOTICE_TIMEOUT_S = 10.0
"""How long a finishing learner waits for its actors' parameter streams to send the end notice."""
OPTIMIZATION_STEP = "Optimization step"
INTERACTION_STEP = "Interaction step"
"""LeRobot's learner's Weights & Biases step keys (training stats; actors' episode messages)."""
METRICS_FILE = "metrics.jsonl"
"""One JSON line per update under ``<output_dir>/logs/`` (what ``lerobot-pirl demo`` follows)."""


def run_on_policy_learner(
    cfg: seam.RecipeTrainConfig,
    launch: distributed.Launch | None = None,
    recipe_cls: type[Any] | None = None,
) -> None:
    """Validate the config, build the recipe, serve LeRobot's gRPC ``LearnerService``, train until
    ``max_updates`` / ``max_env_steps`` / a signal, then stop the server and log the final counts.

    ``launch``: this process's rank in a ``torchrun`` launch (`distributed.detect`), None for the
    single-process learner. Rank 0 then does all of the above; every other rank follows it
    (`distributed.follow`): same model, its share of each update, no server, files or logs.
    """
    cfg.validate()
    require_env_factory(cfg.env)
    if cfg.save_checkpoint:
        _check_config_encodes(cfg)  # else the first checkpoint would crash the run
    if launch is not None:
        assert recipe_cls is not None, "a distributed launch needs the recipe class to check"
        distributed.check_launch(launch, cfg, recipe_cls)
    main = launch is None or launch.is_main
    if main:
        output_dir = Path(cfg.output_dir)
        (output_dir / "logs").mkdir(parents=True, exist_ok=True)
        init_logging(log_file=str(output_dir / "logs" / "learner.log"))
    else:  # rank 0 logs for the run; a following rank prints its rank lines and errors only
        init_logging(console_level="WARNING")
    set_seed(cfg.seed)
    if cfg.algorithm.torch_threads is not None:
        torch.set_num_threads(cfg.algorithm.torch_threads)
    shutdown = ProcessSignalHandler(use_threads=True).shutdown_event
    channel = None
    if launch is not None:
        channel = distributed.init_process_group(
            launch, str(cfg.policy.device), cfg.algorithm.distributed_timeout_s
        )
    try:
        if launch is not None and channel is not None and not launch.is_main:
            _follow_rank_zero(cfg, launch, channel)
        else:
            _serve_and_train(cfg, shutdown, launch, channel)
    finally:
        # After the learner is gone (it holds DDP, which holds the process group): the group's
        # threads then stop now, not during interpreter shutdown (where gloo aborts the process).
        channel = None
        distributed.close_process_group()


def _serve_and_train(
    cfg: seam.RecipeTrainConfig,
    shutdown: Any,
    launch: distributed.Launch | None,
    channel: distributed.ControlChannel | None,
) -> None:
    """The learner (rank 0 of a distributed launch): serve, train, announce the end, stop."""
    streams_stop = threading.Event()  # parameter streams outlive `shutdown` to send the last word
    learner = _OnPolicyLearner(cfg, channel)
    if launch is not None:
        logging.info(
            f"{LOG_PREFIX} data-parallel over {launch.world_size} ranks "
            f"({distributed.backend_for(str(cfg.policy.device))}); rank 0 serves, "
            f"{torch.get_num_threads()} torch thread(s) per rank"
        )
    server = learner.serve(shutdown, streams_stop)
    try:
        if learner.train(shutdown):  # the budget is spent; a stopped learner may be resumed instead
            learner.announce_end()
    finally:
        if channel is not None:
            distributed.send_stop(channel)
        streams_stop.set()
        shutdown.set()
        server.stop(grace=2).wait(timeout=10)
        learner.close()


def _follow_rank_zero(
    cfg: seam.RecipeTrainConfig, launch: distributed.Launch, channel: distributed.ControlChannel
) -> None:
    """A rank > 0: the same recipe and optimizer as rank 0, then its share of every update rank 0
    broadcasts, until rank 0 says stop. Signals are left to rank 0 (torchrun sends them to every
    rank; rank 0's stop then ends this one)."""
    learner = _OnPolicyLearner(cfg, channel)
    distributed.rank_line(
        launch,
        f"pid {os.getpid()}, policy on {next(learner.policy.parameters()).device}, "
        f"{torch.get_num_threads()} torch thread(s): following rank 0",
    )
    updates = distributed.follow(channel, lambda rollout: learner.algorithm.update(iter([rollout])))
    distributed.rank_line(launch, f"stopped after {updates} updates")


class _OnPolicyLearner:
    """The recipe, its LeRobot algorithm wrapper and optimizers, the queues the gRPC service fills,
    and the per-update bookkeeping (env steps, rejected transitions, episode summaries)."""

    def __init__(
        self, cfg: seam.RecipeTrainConfig, channel: distributed.ControlChannel | None = None
    ) -> None:
        self.cfg = cfg
        self.channel = channel
        main = channel is None or channel.launch.is_main
        self.checkpoint_dir = Path(cfg.output_dir) / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK
        if cfg.resume:
            _check_checkpoint(self.checkpoint_dir)
            cfg.policy.pretrained_path = self.checkpoint_dir / PRETRAINED_MODEL_DIR  # LeRobot loads it
        self.policy = make_policy(cfg=cfg.policy, env_cfg=cfg.env)
        # The policy's own processors (from its checkpoint): saved with every checkpoint so
        # LeRobot's loaders can use it. The learner re-scores observations as the actors
        # preprocessed them.
        self.io = PolicyIO.for_policy(cfg.policy, cfg.env)
        self.algorithm = make_algorithm(cfg=cfg.algorithm, policy=self.policy)
        self.recipe: OnPolicyRecipe = self.algorithm.recipe  # type: ignore[attr-defined]
        self.optimizers = self.algorithm.make_optimizers_and_scheduler()
        if cfg.resume:
            restore_checkpoint(self.checkpoint_dir, self.optimizers, self.algorithm)
            step = self.algorithm.optimization_step
            logging.info(f"{LOG_PREFIX} resumed from {self.checkpoint_dir} at update {step}")
        if channel is not None:  # after the restore: DDP starts from rank 0's (identical) weights
            self.recipe.enable_data_parallel(channel.group)  # type: ignore[attr-defined]
        self.wandb = WandBLogger(cfg) if cfg.wandb.enable and main else None
        self.transitions: Queue = Queue()
        self.interactions: Queue = Queue()
        # Decodes arriving episodes while an update runs; at most one largest message ahead.
        max_bytes = cfg.algorithm.max_message_bytes
        self.decoder = EpisodeDecoder(self.transitions, max_bytes, max_decoded_bytes=max_bytes)
        self.weights = transport.LatestWeights()
        self.rejected = 0
        self.env_steps_total = _restored_env_steps(self.checkpoint_dir) if cfg.resume else 0
        self.episodes: list[dict[str, Any]] = []
        self.metrics_file = Path(cfg.output_dir) / "logs" / METRICS_FILE
        self.started_at = time.monotonic()

    def serve(self, shutdown: Any, streams_stop: Any = None) -> Any:
        """Start the gRPC service and publish the initial weights; returns the server."""
        algo_cfg = self.cfg.algorithm
        security = learner_security(algo_cfg)  # refuses an unsafe or unreadable setup first
        server = transport.start_learner_server(
            algo_cfg.learner_host,
            algo_cfg.learner_port,
            shutdown_event=shutdown,
            weights=self.weights,
            transition_queue=self.transitions,
            interaction_queue=self.interactions,
            queue_get_timeout=algo_cfg.queue_get_timeout,
            max_actors=algo_cfg.max_actors,
            security=security,
            streams_stop=streams_stop,
        )
        logging.info(f"{LOG_PREFIX} serving on {algo_cfg.learner_host}:{algo_cfg.learner_port} ({security})")
        self.decoder.start()
        self.weights.publish(state_to_bytes(self.algorithm.get_weights()))
        return server

    def announce_end(self) -> None:
        """Tell every connected actor that training is over (`transport.TRAINING_OVER`), and wait a
        bounded time for each open parameter stream to have sent it. The last weights go out first:
        a stream serves only the newest payload, and the notice must not overtake them."""
        updates = self.algorithm.optimization_step
        self.weights.wait_delivered(self.weights.version, timeout=END_NOTICE_TIMEOUT_S)
        version = self.weights.publish(
            state_to_bytes({transport.TRAINING_OVER: torch.tensor(float(updates))})
        )
        if not self.weights.wait_delivered(version, timeout=END_NOTICE_TIMEOUT_S):
            logging.warning(
                f"{LOG_PREFIX} not every actor took the end-of-training notice within {END_NOTICE_TIMEOUT_S}s"
            )

    def train(self, shutdown: Any) -> bool:
        """Accept what the decoder has decoded and update whenever a rollout is complete; never
        blocks on data. True when the budget (``max_updates`` / ``max_env_steps``) is spent, False
        on a stop signal."""
        while not shutdown.is_set() and self.algorithm.optimization_step < self.cfg.algorithm.max_updates:
            self.rejected += self.decoder.feed(self.recipe)
            self.episodes.extend(_drain_interactions(self.interactions))
            if not self.recipe.rollout_ready():
                if self.channel is not None:
                    self.channel.keepalive()
                time.sleep(0.01)
                continue
            if self._update():
                return True
        return self.algorithm.optimization_step >= self.cfg.algorithm.max_updates

    def _update(self) -> bool:
        """One update on the ready rollout, then push, log and checkpoint; True after the last."""
        cfg, algo_cfg = self.cfg, self.cfg.algorithm
        started = time.perf_counter()
        rollout = self.recipe.take_rollout()
        if self.channel is not None:  # every rank updates on it, each on its share of the minibatches
            self.channel.send(distributed.UPDATE, rollout)
        stats = self.algorithm.update(iter([rollout]))
        step = self.algorithm.optimization_step
        if step % algo_cfg.push_every_updates == 0:
            self.weights.publish(state_to_bytes(self.algorithm.get_weights()))
        log = stats.to_log_dict()
        log.update(_episode_summary(self.episodes))
        if self.wandb is not None:  # each episode as LeRobot's learner logs its actors' messages
            for message in self.episodes:
                self.wandb.log_dict(message, mode="train", custom_step_key=INTERACTION_STEP)
        self.env_steps_total += sum(int(m.get("episode_env_steps", 0)) for m in self.episodes)
        self.episodes.clear()
        log["env_steps_total"] = float(self.env_steps_total)
        log["rejected_transitions_total"] = float(self.rejected)
        log["update_seconds"] = time.perf_counter() - started
        last = step == algo_cfg.max_updates or (
            algo_cfg.max_env_steps is not None and self.env_steps_total >= algo_cfg.max_env_steps
        )
        self._log(step, log, to_console=step % max(cfg.log_freq, 1) == 0 or last)
        if cfg.save_checkpoint and (step % max(cfg.save_freq, 1) == 0 or last):
            save_run_checkpoint(cfg, step, self.policy, self.optimizers, self.algorithm, log, io=self.io)
        return last

    def _log(self, step: int, log: dict[str, float], *, to_console: bool) -> None:
        with self.metrics_file.open("a") as f:
            f.write(json.dumps({"update": step, "wall_s": time.monotonic() - self.started_at, **log}) + "\n")
        if self.wandb is not None:  # keyed by update, as LeRobot's learner keys its training stats
            self.wandb.log_dict(
                {**log, OPTIMIZATION_STEP: step}, mode="train", custom_step_key=OPTIMIZATION_STEP
            )
        if to_console:
            values = " ".join(f"{k}={v:.5g}" for k, v in sorted(log.items()))
            logging.info(f"{LOG_PREFIX} update {step}: {values}")

    def close(self) -> None:
        """After the server stopped: ingest what it had queued (so the final counts cover all that
        arrived) and log them."""
        self.rejected += self.decoder.stop_and_drain(self.recipe)
        for q in (self.transitions, self.interactions):
            q.cancel_join_thread()
        counts = " ".join(f"{key}={value}" for key, value in self.recipe.data_counters().items())
        logging.info(
            f"{LOG_PREFIX} stopped after {self.algorithm.optimization_step} updates: "
            f"{counts} rejected={self.rejected}"
        )


def _check_config_encodes(cfg: seam.RecipeTrainConfig) -> None:
    """Every checkpoint saves the config with LeRobot's (draccus) encoder; refuse one it cannot
    encode before anything starts."""
    import draccus

    try:
        draccus.encode(cfg)
    except Exception as exc:  # noqa: BLE001 - draccus raises whatever the field's type check raised
        hint = ""
        if isinstance(cfg.env, HILSerlRobotEnvConfig) and cfg.env.processor.reset is not None:
            hint = (
                ": LeRobot's encoder cannot save env.processor.reset (its ResetConfig field "
                "fixed_reset_joint_positions is typed Any); leave env.processor.reset unset, or set "
                "save_checkpoint=false"
            )
        raise seam.InvalidConfigError(
            f"this config cannot be saved with checkpoints ({type(exc).__name__}: {exc}){hint}"
        ) from exc


def _restored_env_steps(checkpoint_dir: Path) -> int:
    """The env-step counter saved with the checkpoint's metrics (0 for checkpoints without it)."""
    state = json.loads((checkpoint_dir / TRAINING_STATE_DIR / TRAINING_STEP).read_text())
    return int(state.get("metrics", {}).get("env_steps_total", 0))


def _drain_interactions(interactions: Queue) -> list[dict[str, Any]]:
    messages = []
    while True:
        try:
            messages.append(bytes_to_python_object(interactions.get_nowait()))
        except queue.Empty:
            return messages


def _episode_summary(messages: list[dict[str, Any]]) -> dict[str, float]:
    returns = [float(m["Episodic reward"]) for m in messages if "Episodic reward" in m]
    successes = [float(m["success"]) for m in messages if "success" in m]
    summary: dict[str, float] = {}
    if returns:
        summary["episode_return_mean"] = sum(returns) / len(returns)
        summary["episodes"] = float(len(returns))
    if successes:
        summary["success_rate"] = sum(successes) / len(successes)
    tasks = sorted({str(m["task"]) for m in messages if m.get("task") and "success" in m})
    if len(tasks) > 1:  # a multi-task env: the sampled success of each instruction
        for task in tasks:
            rates = [float(m["success"]) for m in messages if m.get("task") == task and "success" in m]
            summary[f"success_rate/{task}"] = sum(rates) / len(rates)
    return summary


def save_run_checkpoint(
    cfg: Any,
    step: int,
    policy: Any,
    optimizers: Any,
    algorithm: Any,
    log: dict[str, float],
    *,
    io: PolicyIO,
) -> None:
    """LeRobot's checkpoint layout (the stock policy's ``pretrained_model/`` with its processor
    pipelines and bundled tokenizer, ``training_state/``, ``algorithm/``), written atomically: into
    a temporary folder that is renamed when complete, so a learner killed mid-save leaves the
    previous checkpoint as ``last``.
    """
    checkpoint_dir = get_step_checkpoint_dir(Path(cfg.output_dir), cfg.algorithm.max_updates, step)
    partial = checkpoint_dir.with_name(checkpoint_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    save_checkpoint(
        checkpoint_dir=partial,
        step=step,
        cfg=cfg,
        policy=policy,
        optimizer=optimizers,
        preprocessor=io.preprocessor,
        postprocessor=io.postprocessor,
    )
    bundle_tokenizer(
        partial / PRETRAINED_MODEL_DIR,
        io.preprocessor,
        name_as=(checkpoint_dir / PRETRAINED_MODEL_DIR / BUNDLED_TOKENIZER_DIR).resolve(),
    )
    write_model_card(partial / PRETRAINED_MODEL_DIR, cfg, step, log)
    algorithm.save_pretrained(partial / ALGORITHM_DIR)
    write_json({"step": step, "metrics": log}, partial / TRAINING_STATE_DIR / TRAINING_STEP)
    if checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    os.replace(partial, checkpoint_dir)
    link = checkpoint_dir.parent / LAST_CHECKPOINT_LINK  # repointed atomically too
    staged = link.with_name(link.name + ".partial")
    if staged.is_symlink():
        staged.unlink()
    staged.symlink_to(checkpoint_dir.name)
    os.replace(staged, link)
    logging.info(f"{LOG_PREFIX} checkpoint {checkpoint_dir}")


class CheckpointError(LerobotPirlError, RuntimeError):
    """A checkpoint that cannot be resumed from; never silently restart from step 0."""


_CHECKPOINT_FILES = (
    f"{PRETRAINED_MODEL_DIR}/model.safetensors",
    f"{PRETRAINED_MODEL_DIR}/config.json",
    f"{ALGORITHM_DIR}/model.safetensors",
    f"{TRAINING_STATE_DIR}/{TRAINING_STEP}",
)


def _check_checkpoint(checkpoint_dir: Path) -> None:
    if not checkpoint_dir.is_dir():
        raise CheckpointError(f"resume=true but there is no checkpoint at {checkpoint_dir}")
    missing = [name for name in _CHECKPOINT_FILES if not (checkpoint_dir / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {checkpoint_dir.resolve()} is incomplete: missing {missing}")


def restore_checkpoint(checkpoint_dir: Path, optimizers: dict[str, Any], algorithm: Any) -> int:
    """Optimizer states, RNG states, learner step and recipe state from a LeRobot checkpoint."""
    _check_checkpoint(checkpoint_dir)
    try:
        step, _, _ = load_training_state(checkpoint_dir, optimizers, None)
        algorithm.load_state_dict(load_file(str(checkpoint_dir / ALGORITHM_DIR / "model.safetensors")))
    except Exception as exc:
        raise CheckpointError(f"checkpoint {checkpoint_dir.resolve()} cannot be restored: {exc}") from exc
    algorithm.optimization_step = step
    return step
