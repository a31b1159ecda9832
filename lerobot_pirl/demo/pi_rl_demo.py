"""``lerobot-pirl demo``: πRL fine-tuning of the shipped SFT checkpoint, end to end on localhost.

It runs exactly what a user would run by hand — one ``lerobot-pirl-learner`` and N
``lerobot-pirl-actor`` processes with ``recipe=pi-rl`` on a plain LeRobot config whose
``policy.pretrained_path`` is the shipped checkpoint — and adds what a first run needs to be
convincing: a progress bar (env steps, updates, success), deterministic evaluations of the
learner's checkpoints as they appear, and a learning curve (JSON + PNG).

The learner stops itself at the env-step budget (``algorithm.max_env_steps``) with a final
checkpoint; evaluation runs in its own process, one checkpoint at a time, so training never
waits for it.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lerobot.utils.constants import CHECKPOINTS_DIR, PRETRAINED_MODEL_DIR, TRAINING_STATE_DIR, TRAINING_STEP

from lerobot_pirl.demo.processes import (
    TRAINING_NICENESS,
    DemoError,
    spawn,
    supervise,
    terminate,
)
from lerobot_pirl.recipes.pi_rl.config import NOISE_METHODS
from lerobot_pirl.tasks.embedded import EMBEDDED_TASKS, PROVENANCE_FILE, EmbeddedTask
from lerobot_pirl.tasks.machine import free_port, machine_info
from lerobot_pirl.tasks.pick_cube.configs import pretrained_pi_rl_config


@dataclass
class DemoConfig:
    task: str = "pick_cube"
    """The embedded task (`EMBEDDED_TASKS`): ``pick_cube`` or ``metaworld`` (MT10)."""
    noise_method: str = "flow_sde"
    """``flow_sde`` or ``flow_noise`` (flow_sde was the steadier of the two in benchmarks/learning.py)."""
    env_steps: int | None = None
    """Training budget in env steps, summed over actors (None: the task's ``demo_env_steps``)."""
    actors: int = 2
    """Actor processes (each steps ``envs_per_actor`` envs of the algorithm settings)."""
    eval_every_updates: int | None = None
    """Evaluate every this many πRL updates (None: the task's); the final checkpoint is always evaluated."""
    first_eval_update: int = 2
    """Evaluate this update's checkpoint too, so the first trained point shows within minutes."""
    eval_episodes: int | None = None
    """Deterministic evaluation episodes per point, per task on MT10 (None: the task's, as its
    checkpoint's recorded rate was measured)."""
    seed: int = 0
    output_dir: Path = Path("outputs/pi_rl_demo")
    policy: str | None = None
    """Which of the task's shipped SFT checkpoints to start from, by policy type (``xvla``, or
    ``smolvla``; None: the task's default, XVLA). Not with ``checkpoint``."""
    checkpoint: Path | None = None
    """The starting policy: a stock ``pretrained_model`` folder of a policy type with a πRL adapter
    (None: the task's shipped one, `policy`)."""
    algorithm: dict[str, Any] = field(default_factory=dict)
    """Overrides of the task's πRL settings / any ``PiRLConfig`` field."""
    env: dict[str, Any] = field(default_factory=dict)
    """Overrides of the task's training env block (its env config's fields)."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.task not in EMBEDDED_TASKS:
            raise DemoError(
                f"invalid demo settings: task={self.task!r} (accepted: {', '.join(EMBEDDED_TASKS)})"
            )
        task = EMBEDDED_TASKS[self.task]
        self.env_steps = task.demo_env_steps if self.env_steps is None else self.env_steps
        if self.eval_every_updates is None:
            self.eval_every_updates = task.demo_eval_every_updates
        self.eval_episodes = task.eval_episodes if self.eval_episodes is None else self.eval_episodes
        if self.checkpoint is not None:
            self.checkpoint = Path(self.checkpoint)
        elif self.policy is None:
            self.checkpoint = task.checkpoint
        elif self.policy in task.checkpoints:
            self.checkpoint = task.checkpoints[self.policy]

    @property
    def embedded_task(self) -> EmbeddedTask:
        return EMBEDDED_TASKS[self.task]

    @property
    def env_block(self) -> dict[str, Any]:
        """The training env block: the task's, with `env`'s overrides."""
        return {**self.embedded_task.env, **self.env}

    def validate(self) -> None:
        problems = []
        if self.noise_method not in NOISE_METHODS:
            problems.append(f"noise_method={self.noise_method!r} (accepted: {', '.join(NOISE_METHODS)})")
        for name in ("env_steps", "actors", "eval_every_updates", "first_eval_update", "eval_episodes"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be ≥ 1)")
        task = self.embedded_task
        if self.policy is not None and self.policy not in task.checkpoints:
            problems.append(
                f"policy={self.policy!r} (shipped for {task.name}: {', '.join(task.checkpoints)})"
            )
        elif self.policy is not None and self.checkpoint != task.checkpoints[self.policy]:
            problems.append(f"policy={self.policy!r} and checkpoint={self.checkpoint} (give one of them)")
        elif not (self.checkpoint / "config.json").is_file():
            problems.append(
                f"checkpoint={self.checkpoint} (not a policy pretrained_model folder: no config.json)"
            )
        if self.output_dir.exists() and any(self.output_dir.iterdir()):
            problems.append(f"output_dir={self.output_dir} exists and is not empty (choose a new one)")
        if problems:
            raise DemoError("invalid demo settings: " + "; ".join(problems))


class _Evaluator:
    """Evaluates checkpoints one at a time in a child process (the task's evaluation module)."""

    def __init__(self, config: DemoConfig, out_dir: Path):
        self.config, self.out_dir = config, out_dir
        self.started = time.monotonic()
        self.queue: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self._running: tuple[subprocess.Popen, dict[str, Any], Path] | None = None

    def submit(self, point: dict[str, Any]) -> None:
        self.queue.append(point)

    @property
    def busy(self) -> bool:
        return self._running is not None or bool(self.queue)

    def poll(self) -> dict[str, Any] | None:
        """Advance; return a finished point (with its success rate) if one just completed."""
        finished = None
        if self._running is not None:
            process, point, result_path = self._running
            if process.poll() is None:
                return None
            self._running = None
            if process.returncode != 0:
                raise DemoError(
                    f"evaluation of {point['checkpoint']} failed; see {result_path.with_suffix('.log')}"
                )
            finished = {**point, **json.loads(result_path.read_text())}
            finished["finished_at_s"] = round(time.monotonic() - self.started, 1)  # since the demo began
            self.results.append(finished)
        if self.queue:
            point = self.queue.pop(0)
            result_path = self.out_dir / f"eval_update_{point['update']:06d}.json"
            task = self.config.embedded_task
            args = [
                "-m", task.evaluate_module,
                f"--checkpoint={point['checkpoint']}",
                *task.evaluation_args(self.config.env_block, self.config.eval_episodes),
                f"--output={result_path}",
            ]  # fmt: skip
            self._running = (spawn(args, result_path.with_suffix(".log")), point, result_path)
        return finished

    def stop(self) -> None:
        if self._running is not None:
            terminate([self._running[0]])


def _new_checkpoints(learner_dir: Path, seen: set[str]) -> list[dict[str, Any]]:
    points = []
    root = learner_dir / CHECKPOINTS_DIR
    for path in sorted(root.glob("*")) if root.is_dir() else []:
        if path.name in seen or path.is_symlink() or path.name.endswith(".partial"):
            continue
        state_file = path / TRAINING_STATE_DIR / TRAINING_STEP
        if not state_file.is_file():
            continue
        seen.add(path.name)
        state = json.loads(state_file.read_text())
        points.append(
            {
                "update": int(state["step"]),
                "env_steps": int(state["metrics"].get("env_steps_total", 0)),
                "checkpoint": str(path / PRETRAINED_MODEL_DIR),
            }
        )
    return points


def _read_new_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    if not path.is_file():
        return [], offset
    with path.open() as f:
        f.seek(offset)
        text = f.read()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line], offset + len(complete)


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Train, evaluate, and write ``learning_curve.json`` / ``learning_curve.png``; returns the summary."""
    from tqdm import tqdm

    config.validate()
    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    learner_dir = out / "learner"
    task = config.embedded_task
    algorithm = {**task.pi_rl, "max_actors": config.actors, **config.algorithm}
    env = config.env_block
    config_path = out / "train_config.json"
    config_path.write_text(json.dumps(_train_config(config, learner_dir, algorithm, env), indent=2))

    started = time.monotonic()
    learner, actors = _spawn_training(config, config_path, out)
    evaluator = _Evaluator(config, out)
    status = {"updates": 0, "train_success": "-", "eval_success": "-"}
    start = {"update": 0, "env_steps": 0, "checkpoint": str(config.checkpoint)}
    recorded = task.recorded_evaluation(config.checkpoint, env, config.eval_episodes)
    if recorded is not None:  # the same deterministic evaluation, already run when it was built
        evaluator.results.append({**start, **recorded, "source": PROVENANCE_FILE, "finished_at_s": 0.0})
        status["eval_success"] = f"{recorded['success_rate']:.2f}@0"
    else:
        evaluator.submit(start)
    schedule = _EvaluationSchedule(learner_dir, config.first_eval_update, config.eval_every_updates)
    training: list[dict[str, Any]] = []
    offset = 0
    bar = tqdm(total=config.env_steps, unit="env step", disable=not config.progress, dynamic_ncols=True)
    try:
        while True:
            learner_done = learner.poll() is not None  # before the scan: its last checkpoint is on disk
            lines, offset = _read_new_lines(learner_dir / "logs" / "metrics.jsonl", offset)
            training.extend(lines)
            if lines:
                last = lines[-1]
                bar.n = min(int(last["env_steps_total"]), config.env_steps)
                status["updates"] = int(last["update"])
                if "success_rate" in last:
                    status["train_success"] = f"{last['success_rate']:.2f}"
            for point in schedule.due(learner_done):
                evaluator.submit(point)
            finished = evaluator.poll()
            if finished is not None:
                status["eval_success"] = f"{finished['success_rate']:.2f}@{finished['env_steps']}"
            bar.set_postfix(status, refresh=False)
            bar.refresh()
            supervise(learner, actors, out)
            if learner_done and not evaluator.busy:
                break
            time.sleep(0.5)
    finally:
        bar.close()
        evaluator.stop()
        terminate([learner, *actors])

    summary = summarize(config, algorithm, evaluator.results, training, time.monotonic() - started)
    (out / "learning_curve.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_learning_curve(summary, out / "learning_curve.png")
    return summary


def _train_config(
    config: DemoConfig, learner_dir: Path, algorithm: dict[str, Any], env: dict[str, Any]
) -> dict[str, Any]:
    """The learner/actor config: the shipped checkpoint, the demo's settings, the env-step budget."""
    train_config = pretrained_pi_rl_config(
        config.checkpoint,
        learner_dir,
        free_port(),
        seed=config.seed,
        env=env,
        noise_method=config.noise_method,
        max_env_steps=config.env_steps,
        max_updates=10**6,
        **algorithm,
    )
    # Checkpoints at every update an evaluation may want (the learner also writes its final one).
    train_config["save_freq"] = math.gcd(config.first_eval_update, config.eval_every_updates)
    return train_config


def _spawn_training(
    config: DemoConfig, config_path: Path, out: Path
) -> tuple[subprocess.Popen, list[subprocess.Popen]]:
    """The learner and ``config.actors`` actors, niced so evaluations get a core."""
    learner = spawn(
        ["-m", "lerobot_pirl.runtime.learner", f"--config_path={config_path}"],
        out / "learner.log",
        TRAINING_NICENESS,
    )
    actors = [
        spawn(
            ["-m", "lerobot_pirl.runtime.actor", f"--config_path={config_path}", f"--actor_id={i}"],
            out / f"actor_{i}.log",
            TRAINING_NICENESS,
        )
        for i in range(config.actors)
    ]
    return learner, actors


TRAINING_LOG_KEYS = ("update", "env_steps_total", "wall_s", "success_rate", "approx_kl", "explained_variance")
"""The learner's logged diagnostics the demo's summary keeps per update (plus per-task success)."""


class _EvaluationSchedule:
    """Which new learner checkpoints to evaluate: ``first`` update, every ``every``-th, the final."""

    def __init__(self, learner_dir: Path, first: int, every: int) -> None:
        self.learner_dir, self.first, self.every = learner_dir, first, every
        self.seen: set[str] = set()
        self.latest_skipped: dict[str, Any] | None = None

    def due(self, learner_done: bool) -> list[dict[str, Any]]:
        points = []
        for point in _new_checkpoints(self.learner_dir, self.seen):
            if point["update"] == self.first or point["update"] % self.every == 0:
                points.append(point)
                self.latest_skipped = None
            else:
                self.latest_skipped = point
        if learner_done and self.latest_skipped is not None:
            points.append(self.latest_skipped)  # the final checkpoint
            self.latest_skipped = None
        return points


def summarize(
    config: DemoConfig,
    algorithm: dict[str, Any],
    evaluations: list[dict[str, Any]],
    training: list[dict[str, Any]],
    wall_s: float,
) -> dict[str, Any]:
    points = sorted(evaluations, key=lambda p: p["update"])
    start, final = points[0]["success_rate"], points[-1]["success_rate"]
    provenance_file = config.checkpoint / PROVENANCE_FILE
    return {
        "method": f"pi-rl/{config.noise_method}",
        "task": config.task,
        "seed": config.seed,
        "env_step_budget": config.env_steps,
        "sft_success_rate": start,
        "final_success_rate": final,
        "gap_closed": (final - start) / (1 - start) if start < 1 else None,
        "evaluations": [
            {
                k: p[k]
                for k in (
                    "update",
                    "env_steps",
                    "success_rate",
                    "stderr",
                    "episodes",
                    "mean_episode_steps",
                    "per_task",
                    "episodes_per_task",
                    "finished_at_s",
                )
                if k in p
            }
            for p in points
        ],
        "training": [
            {k: v for k, v in t.items() if k in TRAINING_LOG_KEYS or k.startswith("success_rate/")}
            for t in training
        ],
        "wall_s": round(wall_s, 1),
        "settings": {
            **asdict(config),
            "output_dir": str(config.output_dir),
            "checkpoint": str(config.checkpoint),
        },
        "algorithm": algorithm,
        "checkpoint_provenance": json.loads(provenance_file.read_text())
        if provenance_file.is_file()
        else None,
        "machine": machine_info(),
    }


def plot_learning_curve(summary: dict[str, Any], path: Path) -> None:
    """Evaluation success rate (± binomial s.e.) vs env steps; on a multi-task suite, the mean over
    tasks and one thinner line per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = summary["evaluations"]
    steps = [p["env_steps"] for p in points]
    figure, axis = plt.subplots(figsize=(9.5, 5) if points[0].get("per_task") else (7, 4.5))
    tasks = list(points[0].get("per_task", {}))
    for task in tasks:
        axis.plot(steps, [p["per_task"][task] for p in points], linewidth=1, alpha=0.6, label=task)
    axis.errorbar(
        steps,
        [p["success_rate"] for p in points],
        yerr=[p["stderr"] for p in points],
        marker="o",
        capsize=3,
        color="black",
        linewidth=2.5,
        label=f"{summary['method']} (mean)" if tasks else summary["method"],
    )
    axis.set_xlabel("env steps")
    per = f"{points[-1]['episodes_per_task']} per task" if tasks else f"{points[-1]['episodes']}"
    axis.set_ylabel(f"success rate ({per} deterministic episodes)")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    title = EMBEDDED_TASKS[summary.get("task", "pick_cube")].title
    axis.set_title(f"lerobot-pirl demo: πRL from the SFT checkpoint on {title}")
    if tasks:
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    else:
        axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
