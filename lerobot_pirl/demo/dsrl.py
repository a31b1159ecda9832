"""``lerobot-pirl demo --recipe dsrl``: DSRL on the embedded task, through LeRobot's own learner and actor.

The shipped SFT checkpoint stays frozen; a ``gaussian_actor`` learns the initial noise its
deterministic sampler starts from (`lerobot_pirl.envs.dsrl`). A ``lerobot-pirl-learner`` runs
LeRobot's SAC learner loop, a ``lerobot-pirl-actor`` LeRobot's actor in the ``pirl_dsrl`` env, for
``env_steps`` env steps (the actor's ``online_steps`` decisions of H' steps each). Then the final
agent is evaluated on the evaluation set every success rate here uses, beside the frozen policy's
own recorded rate, into ``learning_curve.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from lerobot.utils.constants import CHECKPOINTS_DIR, TRAINING_STATE_DIR, TRAINING_STEP

from .configs import dsrl_config
from .machine import free_port, machine_info
from .run import DEMO_ENV, DemoConfig, DemoError, _recorded_evaluation, _spawn, _supervise, _terminate

DSRL_SETTINGS: dict[str, Any] = {"temperature_init": 0.01, "discount": 0.9}
"""SAC settings of the demo (and of ``benchmarks/dsrl_pick_cube.py``), LeRobot's defaults but two:

- ``temperature_init``: the SAC baseline's departure (a 0/1 reward once per episode is swamped by
  alpha = 1);
- ``discount`` per decision (H' env steps): at LeRobot's 0.99 the agent learned, then unlearned,
  to succeed (the README's lever study). Its critic's horizon spans several episodes, and the
  targets bootstrap through the time limit and back up the entropy bonus, so an episode that goes
  on can be worth more than a success, which ends it. 0.9 is a horizon of about ten decisions,
  the length of a pick.
"""


SAVE_EVERY_UPDATES = 100


def _latest_checkpoint_step(learner_dir: Path) -> int:
    steps = [
        json.loads(path.read_text())["step"]
        for path in (learner_dir / CHECKPOINTS_DIR).glob(f"*/{TRAINING_STATE_DIR}/{TRAINING_STEP}")
        if not path.parents[1].name.endswith(".partial") and path.parents[1].name != "last"
    ]
    return max(steps, default=-1)


def run_dsrl_demo(config: DemoConfig) -> dict[str, Any]:
    from ..envs.dsrl import DSRLEnvConfig, NoiseSteeredXVLAEnv
    from .evaluate import evaluate_noise_agent, load_noise_agent

    config.validate()
    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    learner_dir = out / "learner"
    inner = {**DEMO_ENV, **config.env}
    executed = json.loads((config.checkpoint / "config.json").read_text())["n_action_steps"]
    decisions = math.ceil(config.env_steps / executed)
    train_config = dsrl_config(
        config.checkpoint,
        learner_dir,
        free_port(),
        inner_env=inner,
        policy={"online_steps": decisions},
        seed=config.seed,
        **{**DSRL_SETTINGS, **config.algorithm},
    )
    # LeRobot's learner checkpoints every save_freq updates (not when stopped): often enough that
    # one lands soon after the actor's last episode.
    train_config["save_freq"] = SAVE_EVERY_UPDATES
    config_path = out / "train_config.json"
    config_path.write_text(json.dumps(train_config, indent=2))

    started = time.monotonic()
    learner = _spawn(
        ["-m", "lerobot_pirl.runtime.learner", f"--config_path={config_path}"], out / "learner.log"
    )
    actor = None
    try:
        deadline = time.monotonic() + 300
        while not (learner_dir / "logs").exists():  # LeRobot's learner creates it once it serves
            _supervise(learner, [], out)
            if time.monotonic() > deadline:
                raise DemoError(f"the learner did not start within 300 s; see {out / 'learner.log'}")
            time.sleep(0.5)
        actor = _spawn(
            ["-m", "lerobot_pirl.runtime.actor", f"--config_path={config_path}"], out / "actor_0.log"
        )
        if config.progress:
            print(f"dsrl demo: {decisions} decisions of {executed} env steps; logs in {out}", flush=True)
        while actor.poll() is None:  # it stops by itself after online_steps decisions
            _supervise(learner, [actor], out)
            time.sleep(1.0)
        if actor.returncode != 0:
            raise DemoError(f"the actor exited with code {actor.returncode}; see {out / 'actor_0.log'}")
        # The last episodes reached the replay buffer; the next checkpoint has trained on them.
        after = _latest_checkpoint_step(learner_dir)
        deadline = time.monotonic() + 300
        while _latest_checkpoint_step(learner_dir) <= after:
            _supervise(learner, [], out)
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no learner checkpoint within 300 s of the actor's end; see {out / 'learner.log'}"
                )
            time.sleep(0.5)
    finally:
        _terminate([p for p in (actor, learner) if p is not None])  # SIGTERM: the learner checkpoints
    train_s = time.monotonic() - started
    final = learner_dir / "checkpoints" / "last" / "pretrained_model"
    if not final.is_dir():
        raise DemoError(f"the learner wrote no checkpoint; see {out / 'learner.log'}")

    # Evaluations count gym-hil's sparse success: the inner env without the training shaping.
    eval_inner = {"type": "pirl_pick_cube", **{k: v for k, v in inner.items() if k != "shaping_coef"}}
    eval_config = DSRLEnvConfig(checkpoint=str(config.checkpoint), inner=eval_inner)
    eval_env = NoiseSteeredXVLAEnv(eval_config)
    try:
        agent, preprocessor, postprocessor = load_noise_agent(final)
        result = evaluate_noise_agent(
            agent, preprocessor, postprocessor, eval_env, episodes=config.eval_episodes
        )
    finally:
        eval_env.close()
    recorded = _recorded_evaluation(
        config.checkpoint, config.eval_episodes, int(inner["episode_length"]), float(inner["physics_dt"])
    )
    evaluations = [
        {"env_steps": 0, "policy": "frozen SFT checkpoint, its own start noise", **(recorded or {})},
        {"env_steps": decisions * executed, "policy": "DSRL agent's mean noise", **result.to_dict()},
    ]
    summary = {
        "recipe": "dsrl",
        "sft_success_rate": recorded["success_rate"] if recorded else None,
        "final_success_rate": result.success_rate,
        "evaluations": evaluations,
        "decisions": decisions,
        "train_s": round(train_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "settings": {"sac": {**DSRL_SETTINGS, **config.algorithm}, "env": inner, "seed": config.seed},
    }
    (out / "learning_curve.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
