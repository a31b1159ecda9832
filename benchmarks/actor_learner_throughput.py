"""How much of the machine reaches the env: system env steps/s of learner + actors against the raw env.

Raw: one env on one core with no policy in the loop, replaying actions recorded from the shipped
policy (its own stochastic sampler, through the checkpoint's processors), so the env does the same
work as in training (same seed, same trajectory, same autoresets); measured with one replay
process per core at once (cores sharing a cache or a physical core give less than cores × the
lone rate, and no system can beat that), right before each setting (the machine is shared: its
speed drifts), and once with a lone process. System: 1 learner + A actor
processes × E envs each, the demo's πRL settings and env (``lerobot-pirl demo``), every process at
one torch thread; env steps/s are summed over actors between their first and last finished episode
inside the measured window (process start-up and the first weights are left out). ``efficiency`` =
system env steps/s ÷ (raw env steps/s per core × cores), against the raw rate measured just
before that setting. All settings run one after the other in one invocation.

Decisions (one batched policy call's share per env, ``executed_steps`` env steps each) are counted
the same way: ``system_decisions_per_s`` against the policy's batched sampling floor, one recipe
sampler ``act`` on the setting's E observations and nothing else (no env, processors or
transport), with one sampling process per core at once, right after that setting;
``decisions_over_sampling_floor`` = system decisions/s ÷ (floor decisions/s per core × cores): the
ceiling where the env is cheap next to the policy, which the env's rate alone would not show.

``--task metaworld`` measures MT10 (the shipped MT10 checkpoint, the πRL settings of its demo)
twice per setting, side by side: ``obs_type`` ``state`` (the 39-D state, a blank image) and
``pixels_agent_pos`` (the same policy fed the lean camera at the checkpoint's image size), so the
ratio shows what rendering costs the whole system. Its raw replay runs the first task (reach).

    python benchmarks/actor_learner_throughput.py [--task pick_cube|metaworld] [--seconds 60]
                                                  [--actors 1 2] [--envs 1 4 8 16]
                                                  [--policy-device cuda] [--out PATH]

JSON: ``benchmarks/results/actor_learner_throughput.json`` (``..._cuda.json`` with the learner's and
the actors' policies on the GPU; ``..._metaworld.json`` for MT10).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lerobot_pirl.tasks.embedded import EMBEDDED_TASKS
from lerobot_pirl.tasks.machine import free_port, machine_info
from lerobot_pirl.tasks.pick_cube.configs import pretrained_pi_rl_config

RESULTS = Path(__file__).parent / "results"
CHILD_ENV = {
    "OMP_NUM_THREADS": "1",
    "LEROBOT_PIRL_TORCH_THREADS": "1",
    "MUJOCO_GL": "osmesa",
    "PYOPENGL_PLATFORM": "osmesa",
    "HF_HUB_OFFLINE": "1",
}


OBS_TYPES = {"pick_cube": [None], "metaworld": ["state", "pixels_agent_pos"]}
"""The observation settings measured per task (None: the task's env block as it is)."""


def env_block(task: str, obs_type: str | None) -> dict:
    block = dict(EMBEDDED_TASKS[task].env)
    return block if obs_type is None else {**block, "obs_type": obs_type}


def write_config(
    path: Path,
    output_dir: Path,
    envs_per_actor: int,
    policy_device: str = "cpu",
    task: str = "pick_cube",
    obs_type: str | None = None,
) -> dict:
    embedded = EMBEDDED_TASKS[task]
    data = pretrained_pi_rl_config(
        embedded.checkpoint,
        output_dir,
        free_port(),
        env=env_block(task, obs_type),
        **{**embedded.pi_rl, "envs_per_actor": envs_per_actor, "max_updates": 100_000},
    )
    data["save_freq"] = 100_000  # no checkpoints inside the timed window
    data["policy"]["device"] = policy_device  # the learner's and every actor's policy
    path.write_text(json.dumps(data))
    return data


def _parse_config(config: Path):
    from lerobot_pirl.recipes.registry import installed
    from lerobot_pirl.runtime import seam
    from lerobot_pirl.runtime.cli import select_recipe

    catalog = installed()
    seam.install_recipe_lookup(catalog)
    _, args = select_recipe([f"--config_path={config}"], catalog)  # as lerobot-pirl-actor reads it
    cfg = seam.parse_train_config(args)
    seam.validate_for_actor(cfg)
    return cfg


def record_actions(
    workdir: Path, steps: int, task: str = "pick_cube", obs_type: str | None = None
) -> tuple[Path, Path, int]:
    """``steps`` env actions the shipped policy chose (its stochastic sampler, through the
    checkpoint's processors, env seed 0), saved for replay; returns (config, actions, episodes)."""
    import numpy as np

    from lerobot_pirl.runtime.envs import step_env, task_description
    from lerobot_pirl.runtime.on_policy_actor import _build_actor_parts

    torch.set_num_threads(1)
    name = f"raw_{obs_type or task}"
    config = workdir / f"{name}.json"
    write_config(config, workdir / f"{name}_out", envs_per_actor=1, task=task, obs_type=obs_type)
    recipe, io, envs = _build_actor_parts(_parse_config(config))
    env, sampler = envs[0], recipe.sampler()
    raw, _ = env.reset(seed=[0])
    task = task_description(env)
    actions, episodes = [], 0
    while len(actions) < steps:
        chunk, _ = sampler.act(io.observation(raw, task))
        for action in io.env_actions(chunk[0]):
            result = step_env(env, action)
            actions.append(action)
            raw = result.observation
            if result.done:
                episodes += 1
                break
    env.close()
    path = workdir / f"{name}_actions.npy"
    np.save(path, np.stack(actions))
    return config, path, episodes


def replay(config: Path, actions_path: Path) -> float:
    """Seconds one env (seed 0, as recorded) takes to step the recorded actions, nothing else."""
    import numpy as np

    from lerobot_pirl.runtime.envs import make_envs, step_env

    torch.set_num_threads(1)
    actions = np.load(actions_path)
    [env] = make_envs(_parse_config(config).env, 1)
    env.reset(seed=[0])
    started = time.perf_counter()
    for action in actions:
        step_env(env, action)
    elapsed = time.perf_counter() - started
    env.close()
    return elapsed


def replay_rates(config: Path, actions: Path, steps: int, processes: int) -> list[float]:
    """Env steps/s of ``processes`` replay processes running at once (one env each)."""
    seconds = _seconds_at_once(["--replay", str(config), str(actions)], processes)
    return [round(steps / s, 1) for s in seconds]


def _seconds_at_once(args: list[str], processes: int) -> list[float]:
    """Run ``processes`` copies of this script with ``args`` at once; the seconds each printed last."""
    cmd = [sys.executable, __file__, *args]
    env = {**os.environ, **CHILD_ENV}
    started = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    outputs = [process.communicate(timeout=600)[0] for process in started]
    return [float(out.strip().splitlines()[-1]) for out in outputs]


def sampling_seconds(config: Path, calls: int) -> float:
    """Seconds one batched ``act`` of the recipe's sampler takes on the setting's envs' first
    observations (one per env, through the checkpoint's processors), nothing else: the policy's
    floor per decision batch."""
    from lerobot_pirl.runtime.envs import task_description
    from lerobot_pirl.runtime.on_policy_actor import _build_actor_parts

    torch.set_num_threads(1)
    recipe, io, envs = _build_actor_parts(_parse_config(config))
    rows = [io.observation(env.reset(seed=[i])[0], task_description(env)) for i, env in enumerate(envs)]
    batch = {key: torch.cat([row[key].cpu() for row in rows]) for key in rows[0]}
    sampler = recipe.sampler()
    for _ in range(3):  # warm-up: first calls allocate
        sampler.act(batch)
    started = time.perf_counter()
    for _ in range(calls):
        sampler.act(batch)
    elapsed = (time.perf_counter() - started) / calls
    for env in envs:
        env.close()
    return elapsed


def sampling_floor(config: Path, envs: int, processes: int, calls: int = 30) -> list[float]:
    """Decisions/s of ``processes`` sampling processes running at once (``envs`` decisions per call)."""
    seconds = _seconds_at_once(["--sample", str(config), str(calls)], processes)
    return [round(envs / s, 1) for s in seconds]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _episode_stamps(log: str) -> list[tuple[float, int, int]]:
    """(time, env_steps_total, decisions_queued_total) of every episode an actor queued."""
    found = re.findall(
        r"INFO (\S+ \S+) .*episode \d+: .*decisions_queued_total=(\d+) .*env_steps_total=(\d+)", log
    )
    return [(datetime.datetime.fromisoformat(t).timestamp(), int(n), int(d)) for t, d, n in found]


def _setting_name(actors: int, envs: int, obs_type: str | None) -> str:
    return f"a{actors}_e{envs}" + (f"_{obs_type}" if obs_type else "")


def system_rate(
    workdir: Path,
    actors: int,
    envs: int,
    seconds: float,
    policy_device: str = "cpu",
    task: str = "pick_cube",
    obs_type: str | None = None,
) -> dict:
    name = _setting_name(actors, envs, obs_type)
    config = workdir / f"{name}.json"
    write_config(config, workdir / name, envs, policy_device, task, obs_type)
    env = {**os.environ, **CHILD_ENV}

    def spawn(module: str, log: Path, *extra: str) -> subprocess.Popen:
        handle = open(log, "w")  # noqa: SIM115 - the child owns it
        cmd = [sys.executable, "-m", module, f"--config_path={config}", *extra]
        return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)

    learner_log = workdir / f"{name}_learner.log"
    actor_logs = [workdir / f"{name}_actor{i}.log" for i in range(actors)]
    learner = spawn("lerobot_pirl.runtime.learner", learner_log)
    processes = [
        spawn("lerobot_pirl.runtime.actor", log, f"--actor_id={i}") for i, log in enumerate(actor_logs)
    ]
    try:
        deadline = time.monotonic() + 180
        while not all(log.exists() and _episode_stamps(log.read_text()) for log in actor_logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in [learner, *processes]):
                raise RuntimeError(f"setting {name} did not start:\n{learner_log.read_text()[-3000:]}")
            time.sleep(0.5)
        window_start = time.time()
        cpu_start = [_cpu_seconds(p.pid) for p in [learner, *processes]]
        time.sleep(seconds)
        cpu_end = [_cpu_seconds(p.pid) for p in [learner, *processes]]
        window_end = time.time()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=120)
        learner.send_signal(signal.SIGTERM)
        learner.wait(timeout=120)
    rate = decisions = 0.0
    for log in actor_logs:
        stamps = [s for s in _episode_stamps(log.read_text()) if window_start <= s[0] <= window_end]
        if len(stamps) < 2:
            raise RuntimeError(f"setting {name}: fewer than 2 episode batches in {seconds}s; raise --seconds")
        (t0, n0, d0), (t1, n1, d1) = stamps[0], stamps[-1]
        rate += (n1 - n0) / (t1 - t0)
        decisions += (d1 - d0) / (t1 - t0)
    updates = re.findall(r"update_seconds=([\d.e-]+)", learner_log.read_text())
    cpu = [(end - start) / (window_end - window_start) for start, end in zip(cpu_start, cpu_end, strict=True)]
    return {
        **({"obs_type": obs_type} if obs_type else {}),
        "actors": actors,
        "envs_per_actor": envs,
        "system_env_steps_per_s": round(rate, 1),
        "system_decisions_per_s": round(decisions, 1),
        "learner_cores_used": round(cpu[0], 3),
        "actor_cores_used": [round(c, 3) for c in cpu[1:]],
        "learner_updates_in_run": len(updates),
        "update_seconds_mean": round(sum(map(float, updates)) / len(updates), 3) if updates else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=sorted(EMBEDDED_TASKS), default="pick_cube")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per setting")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--envs", type=int, nargs="+", default=None, help="default: 1 4 8 16 (metaworld: 10, one per task)"
    )
    parser.add_argument("--raw-steps", type=int, default=800)
    parser.add_argument("--policy-device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=None, help="file name under benchmarks/results, or a path")
    parser.add_argument("--replay", nargs=2, metavar=("CONFIG", "ACTIONS"), help=argparse.SUPPRESS)
    parser.add_argument("--sample", nargs=2, metavar=("CONFIG", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:  # a replay process of replay_rates: print its seconds
        print(replay(Path(args.replay[0]), Path(args.replay[1])))
        return
    if args.sample:  # a sampling process of sampling_floor: print its seconds per call
        print(sampling_seconds(Path(args.sample[0]), int(args.sample[1])))
        return
    if args.policy_device == "cuda" and not torch.cuda.is_available():
        parser.error("--policy-device cuda: torch.cuda.is_available() is False on this machine")
    envs_settings = args.envs or ([10] if args.task == "metaworld" else [1, 4, 8, 16])
    suffix = "" if args.task == "pick_cube" else f"_{args.task}"
    if args.policy_device != "cpu":
        suffix += f"_{args.policy_device}"
    out = args.out or f"actor_learner_throughput{suffix}.json"
    cores = os.cpu_count() or 1
    embedded = EMBEDDED_TASKS[args.task]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        recorded = {o: record_actions(workdir, args.raw_steps, args.task, o) for o in OBS_TYPES[args.task]}
        alone = {o: replay_rates(c, a, args.raw_steps, 1)[0] for o, (c, a, _) in recorded.items()}
        settings = []
        for actors in args.actors:
            for envs in envs_settings:
                for obs_type, (config, actions, _) in recorded.items():
                    raw = replay_rates(config, actions, args.raw_steps, cores)
                    per_core = sum(raw) / cores
                    row = system_rate(
                        workdir, actors, envs, args.seconds, args.policy_device, args.task, obs_type
                    )
                    row["raw_env_steps_per_s_per_core"] = round(per_core, 1)
                    row["efficiency"] = round(row["system_env_steps_per_s"] / (per_core * cores), 3)
                    setting_config = workdir / f"{_setting_name(actors, envs, obs_type)}.json"
                    floor = sum(sampling_floor(setting_config, envs, cores))
                    row["sampling_floor_decisions_per_s_per_core"] = round(floor / cores, 1)
                    row["decisions_over_sampling_floor"] = round(row["system_decisions_per_s"] / floor, 3)
                    settings.append(row)
                    print(json.dumps(row), flush=True)
    best = max(settings, key=lambda row: row["efficiency"])
    episodes = recorded[None][2] if None in recorded else {o: e for o, (_, _, e) in recorded.items()}
    result = {
        "benchmark": "actor_learner_throughput",
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "setup": {
            "policy": f"shipped SFT checkpoint ({embedded.checkpoint.name})",
            "algorithm": embedded.pi_rl,
            "env": embedded.env,
            "policy_device": args.policy_device,
            "torch_threads_per_process": 1,
            "cores": cores,
            "measured_seconds_per_setting": args.seconds,
            "raw_replay": {"steps": args.raw_steps, "episodes": episodes, "processes_at_once": cores},
        },
        "raw_env_steps_per_s_per_core": statistics.median(
            r["raw_env_steps_per_s_per_core"] for r in settings
        ),
        "raw_env_steps_per_s_one_process_alone": alone[None] if None in alone else alone,
        "best_system_env_steps_per_s": max(row["system_env_steps_per_s"] for row in settings),
        "best_efficiency": best["efficiency"],
        "best_setting": {"actors": best["actors"], "envs_per_actor": best["envs_per_actor"]},
        "best_decisions_over_sampling_floor": max(row["decisions_over_sampling_floor"] for row in settings),
        "settings": settings,
    }
    if None not in recorded:  # several observation settings: each one's own summary, and their ratio
        by_obs = {}
        for obs_type in recorded:
            rows = [row for row in settings if row["obs_type"] == obs_type]
            by_obs[obs_type] = {
                "raw_env_steps_per_s_per_core": statistics.median(
                    r["raw_env_steps_per_s_per_core"] for r in rows
                ),
                "raw_env_steps_per_s_one_process_alone": alone[obs_type],
                "best_system_env_steps_per_s": max(r["system_env_steps_per_s"] for r in rows),
                "best_efficiency": max(r["efficiency"] for r in rows),
                "best_decisions_over_sampling_floor": max(r["decisions_over_sampling_floor"] for r in rows),
            }
        result["by_obs_type"] = by_obs
        first, second = list(by_obs)
        result[f"{second}_over_{first}_system_env_steps"] = round(
            by_obs[second]["best_system_env_steps_per_s"] / by_obs[first]["best_system_env_steps_per_s"], 3
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
