"""The embedded tasks the demo and the learning benchmarks run: each one's shipped checkpoint, its
training env and πRL settings, and how its checkpoints are evaluated.

``pick_cube`` is gym-hil PandaPickCube (one instruction, a blank image); ``metaworld`` is MetaWorld
MT10 (ten tasks spread over each actor's envs, the instruction deciding which task to do).
Evaluation runs ``python -m <evaluate_module>`` in a child process, which prints a JSON object with
at least ``success_rate`` (MT10: the mean over tasks), ``stderr`` and ``episodes``; multi-task
evaluations add ``per_task``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lerobot_pirl.tasks.metaworld import configs as metaworld
from lerobot_pirl.tasks.metaworld.evaluate import with_summary
from lerobot_pirl.tasks.pick_cube import configs as pick_cube
from lerobot_pirl.tasks.pick_cube.sft import PROVENANCE_FILE, SHIPPED_CHECKPOINTS


@dataclass(frozen=True)
class EmbeddedTask:
    name: str
    title: str
    """What the plots call it."""
    checkpoints: dict[str, Path]
    """The shipped SFT checkpoints by policy type (stock ``pretrained_model`` folders), the
    default first."""
    env: dict[str, Any]
    """The training env block (``type`` and its fields)."""
    pi_rl: dict[str, Any]
    """`PiRLConfig` fields of the demo and the benchmarks on this task."""
    dsrl: dict[str, Any]
    """SAC settings of DSRL on this task."""
    evaluate_module: str
    demo_env_steps: int
    """The demo's default env-step budget."""
    demo_eval_every_updates: int
    """The demo evaluates every this many πRL updates."""
    eval_episodes: int
    """Evaluation episodes per point (per task on a multi-task suite), as the checkpoint's own
    recorded rate was measured."""
    per_task_episodes: bool
    """Whether ``eval_episodes`` counts per task."""

    @property
    def checkpoint(self) -> Path:
        """The default shipped SFT checkpoint (the tiny XVLA)."""
        return next(iter(self.checkpoints.values()))

    def evaluation_args(self, env: dict[str, Any], episodes: int) -> list[str]:
        """The evaluation module's flags for the training env block ``env`` (its episode length and
        physics; the evaluation counts success only, without any training shaping)."""
        if self.name == "metaworld":
            return [
                f"--episodes-per-task={episodes}",
                f"--episode-length={env['episode_length']}",
                f"--task={env['task']}",
            ]
        return [
            f"--episodes={episodes}",
            f"--max-episode-steps={env['episode_length']}",
            f"--physics-dt={env['physics_dt']}",
        ]

    def recorded_evaluation(
        self, checkpoint: Path, env: dict[str, Any], episodes: int
    ) -> dict[str, Any] | None:
        """The checkpoint's provenance evaluation in the evaluation module's shape, if it is
        exactly the one a demo with these settings would run (same episodes and env)."""
        path = checkpoint / PROVENANCE_FILE
        if not path.is_file():
            return None
        provenance = json.loads(path.read_text())
        evaluation = provenance.get("evaluation", {})
        if self.name == "metaworld":
            same = (
                evaluation.get("episodes_per_task") == episodes
                and provenance.get("env", {}).get("episode_length") == env["episode_length"]
                and provenance.get("env", {}).get("task") == env["task"]
            )
            return with_summary(evaluation) if same else None
        recorded = (
            evaluation.get("episodes"),
            evaluation.get("max_episode_steps"),
            evaluation.get("physics_dt", pick_cube.ENV_SETTINGS["physics_dt"]),
        )
        return evaluation if recorded == (episodes, env["episode_length"], env["physics_dt"]) else None


EMBEDDED_TASKS: dict[str, EmbeddedTask] = {
    "pick_cube": EmbeddedTask(
        name="pick_cube",
        title="PandaPickCube",
        checkpoints=SHIPPED_CHECKPOINTS,
        env={"type": pick_cube.PICK_CUBE_ENV_TYPE, **pick_cube.ENV_SETTINGS},
        pi_rl=pick_cube.PI_RL_SETTINGS,
        dsrl=pick_cube.DSRL_SETTINGS,
        evaluate_module="lerobot_pirl.tasks.pick_cube.evaluate",
        demo_env_steps=40_000,
        demo_eval_every_updates=6,
        eval_episodes=100,
        per_task_episodes=False,
    ),
    "metaworld": EmbeddedTask(
        name="metaworld",
        title="MetaWorld MT10",
        checkpoints=metaworld.SHIPPED_CHECKPOINTS,
        env={"type": metaworld.METAWORLD_ENV_TYPE, **metaworld.TRAINING_ENV_SETTINGS},
        pi_rl=metaworld.PI_RL_SETTINGS,
        dsrl=metaworld.DSRL_SETTINGS,
        evaluate_module="lerobot_pirl.tasks.metaworld.evaluate",
        demo_env_steps=metaworld.DEMO_ENV_STEPS,
        demo_eval_every_updates=metaworld.DEMO_EVAL_EVERY_UPDATES,
        eval_episodes=metaworld.EVAL_EPISODES_PER_TASK,
        per_task_episodes=True,
    ),
}
"""The tasks by name (``lerobot-pirl demo --env NAME``)."""
