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
    recorded_evaluation,
    spawn,
    supervise,
    terminate,
)
from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig
from lerobot_pirl.recipes.pi_rl.config import NOISE_METHODS
from lerobot_pirl.tasks.machine import free_port, machine_info
from lerobot_pirl.tasks.pick_cube.configs import ENV_SETTINGS, PI_RL_SETTINGS, pretrained_pi_rl_config
from lerobot_pirl.tasks.pick_cube.sft import PROVENANCE_FILE, SHIPPED_CHECKPOINT


@dataclass
class DemoConfig:
    noise_method: str = "flow_sde"
    """``flow_sde`` or ``flow_noise`` (flow_sde was the steadier of the two in benchmarks/learning.py)."""
    env_steps: int = 40_000
    """Training budget in env steps, summed over actors."""
    actors: int = 2
    """Actor processes (each steps ``envs_per_actor`` envs of the algorithm settings)."""
    eval_every_updates: int = 6
    """Evaluate every this many πRL updates; the final checkpoint is always evaluated."""
    first_eval_update: int = 2
    """Evaluate this update's checkpoint too, so the first trained point shows within minutes."""
    eval_episodes: int = 100
    """Deterministic evaluation episodes per point."""
    seed: int = 0
    output_dir: Path = Path("outputs/pi_rl_demo")
    checkpoint: Path = SHIPPED_CHECKPOINT
    """The starting policy: a stock XVLA ``pretrained_model`` folder."""
    algorithm: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``PI_RL_SETTINGS`` / any ``PiRLConfig`` field."""
    env: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``ENV_SETTINGS`` / any `PickCubeEnvConfig` field."""
    progress: bool = True

    def validate(self) -> None:
        problems = []
        if self.noise_method not in NOISE_METHODS:
            problems.append(f"noise_method={self.noise_method!r} (accepted: {', '.join(NOISE_METHODS)})")
        for name in ("env_steps", "actors", "eval_every_updates", "first_eval_update", "eval_episodes"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be ≥ 1)")
        if not (self.checkpoint / "config.json").is_file():
            problems.append(
                f"checkpoint={self.checkpoint} (not an XVLA pretrained_model folder: no config.json)"
            )
        if self.output_dir.exists() and any(self.output_dir.iterdir()):
            problems.append(f"output_dir={self.output_dir} exists and is not empty (choose a new one)")
        if problems:
            raise DemoError("invalid demo settings: " + "; ".join(problems))


class _Evaluator:
    """Evaluates checkpoints one at a time in a child process
    (``python -m lerobot_pirl.tasks.pick_cube.evaluate``)."""

    def __init__(self, config: DemoConfig, max_episode_steps: int, physics_dt: float, out_dir: Path):
        self.config, self.max_episode_steps, self.out_dir = config, max_episode_steps, out_dir
        self.physics_dt = physics_dt
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
            args = [
                "-m", "lerobot_pirl.tasks.pick_cube.evaluate",
                f"--checkpoint={point['checkpoint']}",
                f"--episodes={self.config.eval_episodes}",
                f"--max-episode-steps={self.max_episode_steps}",
                f"--physics-dt={self.physics_dt}",
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
    algorithm = {**PI_RL_SETTINGS, "max_actors": config.actors, **config.algorithm}
    env = {**ENV_SETTINGS, **config.env}
    config_path = out / "train_config.json"
    config_path.write_text(json.dumps(_train_config(config, learner_dir, algorithm, env), indent=2))
    max_episode_steps = int(env.get("episode_length", PickCubeEnvConfig.episode_length))
    physics_dt = float(env.get("physics_dt", PickCubeEnvConfig.physics_dt))

    started = time.monotonic()
    learner, actors = _spawn_training(config, config_path, out)
    evaluator = _Evaluator(config, max_episode_steps, physics_dt, out)
    status = {"updates": 0, "train_success": "-", "eval_success": "-"}
    start = {"update": 0, "env_steps": 0, "checkpoint": str(config.checkpoint)}
    recorded = recorded_evaluation(config.checkpoint, config.eval_episodes, max_episode_steps, physics_dt)
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
                    "finished_at_s",
                )
                if k in p
            }
            for p in points
        ],
        "training": [
            {k: t[k] for k in ("update", "env_steps_total", "wall_s", "success_rate", "approx_kl") if k in t}
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
    """Evaluation success rate (± binomial s.e.) vs env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = summary["evaluations"]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.errorbar(
        [p["env_steps"] for p in points],
        [p["success_rate"] for p in points],
        yerr=[p["stderr"] for p in points],
        marker="o",
        capsize=3,
        label=summary["method"],
    )
    axis.set_xlabel("env steps")
    axis.set_ylabel(f"success rate ({points[-1]['episodes']} deterministic episodes)")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.set_title("lerobot-pirl demo: πRL from the SFT checkpoint on PandaPickCube")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
