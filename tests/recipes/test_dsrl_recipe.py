"""`recipe=dsrl`: LeRobot's SAC, delegated, training a gaussian_actor in a frozen XVLA's noise space;
its config checks, exact resume, and the demo: a real learner + LeRobot's own actor end to end."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.configs import free_port, write_json
from helpers.gaussian_actor import tiny_gaussian_actor
from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy
from lerobot.rl.algorithms.sac import SACAlgorithm, SACAlgorithmConfig

from lerobot_pirl import discover
from lerobot_pirl.recipes.dsrl import DSRLConfig, DSRLRecipe
from lerobot_pirl.runtime import seam
from lerobot_pirl.runtime.algorithm_adapter import algorithm_class
from lerobot_pirl.tasks.pick_cube.configs import dsrl_config
from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT

STATE_DIM, NOISE_DIM, BATCH = 21, 16, 16


def _agent() -> GaussianActorPolicy:
    return tiny_gaussian_actor(STATE_DIM, NOISE_DIM)


def _batches(count: int, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            "state": {"observation.state": torch.rand(BATCH, STATE_DIM, generator=gen) * 2 - 1},
            "action": torch.rand(BATCH, NOISE_DIM, generator=gen) * 2 - 1,
            "reward": torch.rand(BATCH, generator=gen),
            "next_state": {"observation.state": torch.rand(BATCH, STATE_DIM, generator=gen) * 2 - 1},
            "done": (torch.rand(BATCH, generator=gen) < 0.2).float(),
        }
        for _ in range(count)
    ]


def _snapshot(policy, algorithm, optimizers) -> dict:
    return {
        "policy": copy.deepcopy(policy.state_dict()),
        "algorithm": copy.deepcopy(algorithm.state_dict()),
        "optimizers": {name: copy.deepcopy(opt.state_dict()) for name, opt in optimizers.items()},
    }


def _assert_equal_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_dsrl_is_lerobots_sac_bit_for_bit() -> None:
    """Delegated, not re-implemented: the same updates as a stock SACAlgorithm."""
    recipe_algorithm = algorithm_class(discover(blocked=()).resolve("dsrl"))
    results = []
    for build, config_class in ((SACAlgorithm, SACAlgorithmConfig), (recipe_algorithm, DSRLConfig)):
        torch.manual_seed(0)
        agent = _agent()
        algorithm = build(policy=agent, config=config_class(policy_config=agent.config, utd_ratio=2))
        algorithm.make_optimizers_and_scheduler()
        torch.manual_seed(1)
        batches = iter(_batches(8, seed=3))
        logs = [algorithm.update(batches).to_log_dict() for _ in range(4)]
        results.append((agent.state_dict(), logs))
    (stock_weights, stock_logs), (ours_weights, ours_logs) = results
    _assert_equal_tensors(stock_weights, ours_weights)
    assert ours_logs == stock_logs
    torch.manual_seed(0)
    assert any(not torch.equal(v, ours_weights[k]) for k, v in _agent().state_dict().items())  # trained


def test_resume_from_saved_sac_state_continues_exactly(tmp_path: Path) -> None:
    """SAC's networks, temperature and optimizer moments saved and loaded: the next updates equal
    those of the run that never stopped."""
    torch.manual_seed(0)
    agent = _agent()
    recipe = DSRLRecipe(agent, DSRLConfig(policy_config=agent.config, utd_ratio=2))
    optimizers = recipe.build_optimizers()
    for batch_index in range(3):
        recipe.update_step(iter(_batches(2, seed=10 + batch_index)), step=batch_index)
    torch.save(_snapshot(agent, recipe, optimizers), tmp_path / "state.pt")
    torch.manual_seed(7)
    for step in (3, 4):
        recipe.update_step(iter(_batches(2, seed=20 + step)), step=step)
    uninterrupted = _snapshot(agent, recipe, optimizers)

    torch.manual_seed(99)  # a different init: everything must come from the saved state
    resumed_agent = _agent()
    resumed = DSRLRecipe(resumed_agent, DSRLConfig(policy_config=resumed_agent.config, utd_ratio=2))
    resumed_optimizers = resumed.build_optimizers()
    saved = torch.load(tmp_path / "state.pt", weights_only=False)
    resumed_agent.load_state_dict(saved["policy"])
    resumed.load_state_dict(saved["algorithm"], device="cpu")
    for name, optimizer in resumed_optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][name])
    torch.manual_seed(7)
    for step in (3, 4):
        resumed.update_step(iter(_batches(2, seed=20 + step)), step=step)
    after = _snapshot(resumed_agent, resumed, resumed_optimizers)
    _assert_equal_tensors(after["policy"], uninterrupted["policy"])
    _assert_equal_tensors(after["algorithm"], uninterrupted["algorithm"])
    for name, state in uninterrupted["optimizers"].items():
        for index, moments in state["state"].items():
            for key, value in moments.items():
                assert torch.equal(value, after["optimizers"][name]["state"][index][key]), (name, key)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"env": {"type": "pirl_pick_cube"}}, "env.type='pirl_pick_cube': recipe=dsrl steers a frozen XVLA"),
        ({"policy_type": "xvla"}, "policy.type='xvla': the DSRL agent is LeRobot's 'gaussian_actor'"),
    ],
)
def test_config_without_the_dsrl_env_or_agent_is_refused_before_anything_starts(
    tmp_path: Path, change: dict, message: str
) -> None:
    data = dsrl_config(SHIPPED_CHECKPOINT, tmp_path / "out", free_port())
    if "env" in change:
        data["env"] = change["env"]
    if "policy_type" in change:
        data["policy"] = json.loads((SHIPPED_CHECKPOINT / "config.json").read_text())
    del data["recipe"]  # the CLI pops it before LeRobot's parser sees the config (`select_recipe`)
    path = write_json(tmp_path / "config.json", data)
    seam.install_recipe_lookup(discover(blocked=()))
    try:
        with pytest.raises(seam.InvalidConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            seam.parse_train_config([f"--config_path={path}"])
    finally:
        seam.uninstall_recipe_lookup()


def _digest(directory: Path) -> str:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_demo_trains_the_noise_agent_with_lerobots_learner_and_actor_and_leaves_the_xvla_untouched(
    tmp_path: Path,
) -> None:
    """``lerobot-pirl demo --recipe dsrl``: a real ``lerobot-pirl-learner`` (LeRobot's SAC learner
    loop and replay buffer) and ``lerobot-pirl-actor`` (LeRobot's actor stepping the pirl_dsrl env)
    over gRPC, then the final agent's evaluation."""
    frozen_before = _digest(SHIPPED_CHECKPOINT)
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    command = [sys.executable, "-m", "lerobot_pirl.commands", "demo", "--recipe", "dsrl"]
    command += ["--env-steps", "300", "--eval-episodes", "3", "--output-dir", str(out), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after 300 env steps" in done.stdout

    summary = json.loads((out / "learning_curve.json").read_text())
    assert summary["recipe"] == "dsrl" and summary["decisions"] == 150
    final = summary["evaluations"][-1]
    assert final["episodes"] == 3 and 0.0 <= final["success_rate"] <= 1.0
    assert (out / "actor_0.log").read_text().count("Episode reward") >= 2  # 50-step episodes
    checkpoint = out / "learner" / "checkpoints" / "last"
    saved = json.loads((checkpoint / "pretrained_model" / "train_config.json").read_text())
    assert saved["algorithm"]["type"] == "dsrl" and saved["policy"]["type"] == "gaussian_actor"
    # The demo's SAC settings reached LeRobot's learner (0.9: discount per decision, not 0.99).
    assert saved["algorithm"]["discount"] == 0.9 and saved["algorithm"]["temperature_init"] == 0.01
    assert saved["env"]["type"] == "pirl_dsrl"
    assert Path(saved["env"]["checkpoint"]) == SHIPPED_CHECKPOINT.resolve()  # the frozen policy's reference
    assert saved["policy"]["output_features"]["action"]["shape"] == [NOISE_DIM]
    for part in ("actor", "critic", "temperature"):
        assert (checkpoint / "training_state" / part / "optimizer_state.safetensors").is_file()
    assert (checkpoint / "algorithm" / "model.safetensors").is_file()  # critics, targets, temperature
    step = json.loads((checkpoint / "training_state" / "training_step.json").read_text())["step"]
    assert step >= 100  # the demo waits for a checkpoint after the actor's last episode
    assert _digest(SHIPPED_CHECKPOINT) == frozen_before


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_dsrl_demo_on_metaworld_tells_the_agent_the_task(tmp_path: Path) -> None:
    """``--env metaworld``: the agent's state carries a task one-hot (its normaliser has [0, 1] for
    it), the frozen MT10 checkpoint stays untouched, and the final agent is evaluated per task."""
    from lerobot_pirl.tasks.metaworld.configs import SHIPPED_CHECKPOINT as MT10

    frozen_before = _digest(MT10)
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    overrides = json.dumps({"task": "reach-v3,window-close-v3", "episode_length": 24})
    command = [
        sys.executable,
        "-m",
        "lerobot_pirl.commands",
        "demo",
        "--recipe",
        "dsrl",
        "--env",
        "metaworld",
    ]
    command += ["--env-steps", "600", "--eval-episodes", "2", "--env-overrides", overrides]
    command += ["--output-dir", str(out), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "learning_curve.json").read_text())
    final = summary["evaluations"][-1]
    assert set(final["per_task"]) == {"reach-v3", "window-close-v3"} and final["episodes"] == 4
    assert final["success_rate"] == sum(final["per_task"].values()) / 2
    saved = json.loads(
        (out / "learner" / "checkpoints" / "last" / "pretrained_model" / "train_config.json").read_text()
    )
    assert saved["env"]["inner"]["type"] == "pirl_metaworld" and saved["env"]["inner"]["shaping_coef"] == 1.0
    stats = saved["policy"]["dataset_stats"]["observation.state"]
    assert len(stats["min"]) == 39 + 2 and stats["min"][39:] == [0.0, 0.0] and stats["max"][39:] == [1.0, 1.0]
    assert saved["policy"]["input_features"]["observation.state"]["shape"] == [41]
    assert _digest(MT10) == frozen_before
    # Seam: the demo dates earlier checkpoints by LeRobot's actor episode lines (6 decisions each).
    from lerobot_pirl.demo.dsrl_demo import ACTOR_EPISODE_LINE

    steps = [int(step) for _, step in ACTOR_EPISODE_LINE.findall((out / "actor_0.log").read_text())]
    assert steps[:3] == [5, 11, 17]


def test_dsrl_checkpoints_are_dated_by_the_actors_episodes_when_lerobot_left_interaction_step_0(
    tmp_path: Path,
) -> None:
    import time

    from lerobot_pirl.demo.dsrl_demo import _env_steps

    def checkpoint(name: str, interaction_step: int, written: float) -> Path:
        state = tmp_path / name / "training_state" / "training_step.json"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"step": 800, "interaction_step": interaction_step}))
        os.utime(state, (written, written))
        return tmp_path / name / "pretrained_model"

    def stamp(seconds: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))

    base = 1_800_000_000.0
    log = tmp_path / "actor_0.log"
    lines = [(base + 10, 49), (base + 20, 99), (base + 30, 149)]
    log.write_text(
        "".join(
            f"INFO {stamp(t)} rl/actor.py:385 [ACTOR] Global step {n}: Episode reward: 0.5\n"
            for t, n in lines
        )
    )
    # Written at base + 25: the last episode before it ended at decision 99, i.e. 100 decisions × 4.
    assert _env_steps(checkpoint("a", 0, base + 25), log, executed=4) == 400
    assert _env_steps(checkpoint("b", 0, base + 5), log, executed=4) is None  # before any episode
    assert _env_steps(checkpoint("c", 37, base + 25), log, executed=4) == 148  # LeRobot's own count wins


def test_dsrl_demo_refuses_a_budget_that_ends_before_learning_starts(tmp_path: Path) -> None:
    """MT10's checkpoint executes 4 env steps per decision and LeRobot's learner waits for 100
    decisions: 400 env steps would train nothing, so the demo says so before starting anything."""
    from lerobot_pirl.demo.dsrl_demo import run_dsrl_demo
    from lerobot_pirl.demo.pi_rl_demo import DemoConfig
    from lerobot_pirl.demo.processes import DemoError

    config = DemoConfig(task="metaworld", env_steps=400, output_dir=tmp_path / "demo", progress=False)
    with pytest.raises(DemoError, match=r"100 decisions of 4 env steps.*accepted: env_steps > 400"):
        run_dsrl_demo(config)
    assert not (tmp_path / "demo").exists()
