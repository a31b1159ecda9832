"""``lerobot-pirl demo --recipe dsrl``: DSRL on the embedded task, through LeRobot's own learner and actor.

The shipped SFT checkpoint stays frozen; a ``gaussian_actor`` learns the initial noise its
deterministic sampler starts from (`lerobot_pirl.envs.noise_steered`). A ``lerobot-pirl-learner`` runs
LeRobot's SAC learner loop, a ``lerobot-pirl-actor`` LeRobot's actor in the ``pirl_dsrl`` env, for
``env_steps`` env steps (the actor's ``online_steps`` decisions of H' steps each). Then the final
agent is evaluated on the evaluation set every success rate here uses, beside the frozen policy's
own recorded rate, into ``learning_curve.json``.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from lerobot.utils.constants import CHECKPOINTS_DIR, TRAINING_STATE_DIR, TRAINING_STEP

from lerobot_pirl.demo.pi_rl_demo import DemoConfig
from lerobot_pirl.demo.processes import DemoError, spawn, supervise, terminate
from lerobot_pirl.tasks.machine import free_port, machine_info
from lerobot_pirl.tasks.pick_cube.configs import dsrl_config

SAVE_EVERY_UPDATES = 100


def _latest_checkpoint_step(learner_dir: Path) -> int:
    return max(_checkpoints_by_step(learner_dir), default=-1)


def _checkpoints_by_step(learner_dir: Path) -> dict[int, Path]:
    """The learner's numbered checkpoints (their ``pretrained_model`` folders) by update step."""
    folders = {}
    for path in (learner_dir / CHECKPOINTS_DIR).glob(f"*/{TRAINING_STATE_DIR}/{TRAINING_STEP}"):
        folder = path.parents[1]
        if not folder.name.endswith(".partial") and folder.name != "last":
            folders[int(json.loads(path.read_text())["step"])] = folder / "pretrained_model"
    return folders


def evaluate_agent(config: DemoConfig, agent_dir: Path, inner: dict[str, Any]) -> dict[str, Any]:
    """The agent at ``agent_dir`` on the task's evaluation set: its mean noise through the frozen
    checkpoint, success counted without the training shaping."""
    from lerobot_pirl.envs.noise_steered import DSRLEnvConfig, NoiseSteeredPolicyEnv
    from lerobot_pirl.tasks.pick_cube.evaluate import evaluate_noise_agent, load_noise_agent

    eval_inner = {k: v for k, v in inner.items() if k != "shaping_coef"}
    eval_env = NoiseSteeredPolicyEnv(DSRLEnvConfig(checkpoint=str(config.checkpoint), inner=eval_inner))
    try:
        agent, preprocessor, postprocessor = load_noise_agent(agent_dir)
        if config.embedded_task.per_task_episodes:
            from lerobot_pirl.tasks.metaworld.evaluate import evaluate_noise_agent_tasks, with_summary

            return with_summary(
                evaluate_noise_agent_tasks(
                    agent, preprocessor, postprocessor, eval_env, episodes_per_task=config.eval_episodes
                )
            )
        return evaluate_noise_agent(
            agent, preprocessor, postprocessor, eval_env, episodes=config.eval_episodes
        ).to_dict()
    finally:
        eval_env.close()


def run_dsrl_demo(config: DemoConfig, eval_points: int = 1) -> dict[str, Any]:
    """Train, then evaluate the final agent (and ``eval_points - 1`` earlier checkpoints, evenly
    spread) into ``learning_curve.json``; returns the summary."""
    config.validate()
    task = config.embedded_task
    out = config.output_dir
    learner_dir = out / "learner"
    inner = config.env_block
    executed = json.loads((config.checkpoint / "config.json").read_text())["n_action_steps"]
    decisions = math.ceil(config.env_steps / executed)
    train_config = dsrl_config(
        config.checkpoint,
        learner_dir,
        free_port(),
        inner_env=inner,
        policy={"online_steps": decisions},
        seed=config.seed,
        **{**task.dsrl, **config.algorithm},
    )
    warm_up = train_config["policy"]["online_step_before_learning"]
    if decisions <= warm_up:
        raise DemoError(
            f"env_steps={config.env_steps} gives {decisions} decisions of {executed} env steps, but "
            f"LeRobot's learner starts learning only after {warm_up} (online_step_before_learning); "
            f"accepted: env_steps > {warm_up * executed}"
        )
    # LeRobot's learner checkpoints every save_freq updates (not when stopped): often enough that
    # one lands soon after the actor's last episode.
    train_config["save_freq"] = SAVE_EVERY_UPDATES
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "train_config.json"
    config_path.write_text(json.dumps(train_config, indent=2))

    started = time.monotonic()
    learner = spawn(
        ["-m", "lerobot_pirl.runtime.learner", f"--config_path={config_path}"], out / "learner.log"
    )
    actor = None
    try:
        deadline = time.monotonic() + 300
        while not (learner_dir / "logs").exists():  # LeRobot's learner creates it once it serves
            supervise(learner, [], out)
            if time.monotonic() > deadline:
                raise DemoError(f"the learner did not start within 300 s; see {out / 'learner.log'}")
            time.sleep(0.5)
        actor = spawn(
            ["-m", "lerobot_pirl.runtime.actor", f"--config_path={config_path}"], out / "actor_0.log"
        )
        if config.progress:
            print(f"dsrl demo: {decisions} decisions of {executed} env steps; logs in {out}", flush=True)
        while actor.poll() is None:  # it stops by itself after online_steps decisions
            supervise(learner, [actor], out)
            time.sleep(1.0)
        if actor.returncode != 0:
            raise DemoError(f"the actor exited with code {actor.returncode}; see {out / 'actor_0.log'}")
        # The last episodes reached the replay buffer; the next checkpoint has trained on them.
        after = _latest_checkpoint_step(learner_dir)
        deadline = time.monotonic() + 300
        while _latest_checkpoint_step(learner_dir) <= after:
            supervise(learner, [], out)
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no learner checkpoint within 300 s of the actor's end; see {out / 'learner.log'}"
                )
            time.sleep(0.5)
    finally:
        terminate([p for p in (actor, learner) if p is not None])  # SIGTERM: the learner checkpoints
    train_s = time.monotonic() - started
    final = learner_dir / "checkpoints" / "last" / "pretrained_model"
    if not final.is_dir():
        raise DemoError(f"the learner wrote no checkpoint; see {out / 'learner.log'}")

    recorded = task.recorded_evaluation(config.checkpoint, inner, config.eval_episodes)
    evaluations = [
        {"env_steps": 0, "policy": "frozen SFT checkpoint, its own start noise", **(recorded or {})}
    ]
    by_step = _checkpoints_by_step(learner_dir)
    last_step = max(by_step, default=0)
    earlier = sorted(
        {min(by_step, key=lambda s: abs(s - last_step * i / eval_points)) for i in range(1, eval_points)}
    )
    for step in [s for s in earlier if s != last_step]:
        point = evaluate_agent(config, by_step[step], inner)
        evaluations.append(
            {
                "update": step,
                "env_steps": _env_steps(by_step[step], out / "actor_0.log", executed),
                "policy": "DSRL agent's mean noise",
                **point,
            }
        )
    result = evaluate_agent(config, final, inner)
    evaluations.append({"env_steps": decisions * executed, "policy": "DSRL agent's mean noise", **result})
    summary = {
        "recipe": "dsrl",
        "task": config.task,
        "seed": config.seed,
        "sft_success_rate": recorded["success_rate"] if recorded else None,
        "final_success_rate": result["success_rate"],
        "evaluations": evaluations,
        "decisions": decisions,
        "train_s": round(train_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "settings": {"sac": {**task.dsrl, **config.algorithm}, "env": inner, "seed": config.seed},
    }
    (out / "learning_curve.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


ACTOR_EPISODE_LINE = re.compile(r"INFO (\S+ \S+) .*\[ACTOR\] Global step (\d+): Episode reward")
"""LeRobot's actor logs each finished episode with its decision count ("Global step")."""


def _env_steps(checkpoint: Path, actor_log: Path, executed: int) -> int | None:
    """Env steps the actor had taken when the learner wrote ``checkpoint`` (a ``pretrained_model``
    folder): decisions × H'. LeRobot's SAC learner stores ``interaction_step`` in a checkpoint only
    when an interaction message arrived in the same loop pass (otherwise 0), so without one the
    actor's log decides: the decision count of its last episode that finished before the checkpoint
    was written (one episode of resolution)."""
    step_file = checkpoint.parent / TRAINING_STATE_DIR / TRAINING_STEP
    recorded = int(json.loads(step_file.read_text()).get("interaction_step") or 0)
    if recorded > 0:
        return recorded * executed
    written = step_file.stat().st_mtime
    decisions = None
    for stamp, step in ACTOR_EPISODE_LINE.findall(actor_log.read_text() if actor_log.is_file() else ""):
        if datetime.datetime.fromisoformat(stamp).timestamp() <= written:
            decisions = int(step) + 1  # "Global step" counts from 0
    return None if decisions is None else decisions * executed
