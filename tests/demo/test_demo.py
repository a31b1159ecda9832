"""`lerobot-pirl demo`, the shipped SFT checkpoint and the evaluation every success rate comes from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import pytest  # noqa: E402
import torch  # noqa: E402
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy  # noqa: E402
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy  # noqa: E402

from lerobot_pirl.demo.pi_rl_demo import DemoConfig  # noqa: E402
from lerobot_pirl.demo.processes import DemoError  # noqa: E402
from lerobot_pirl.envs.pick_cube import ACTION_DIM, STATE_DIM  # noqa: E402
from lerobot_pirl.runtime.flow_policy import load_flow_policy  # noqa: E402
from lerobot_pirl.runtime.processors import load_policy_config  # noqa: E402
from lerobot_pirl.tasks.pick_cube.evaluate import evaluate_policy, evaluation_env  # noqa: E402
from lerobot_pirl.tasks.pick_cube.sft import (  # noqa: E402
    PROVENANCE_FILE,
    SHIPPED_CHECKPOINT,
    SHIPPED_CHECKPOINTS,
    SFTConfig,
    collect_demonstrations,
)

STOCK_CLASSES = {"xvla": XVLAPolicy, "smolvla": SmolVLAPolicy}


def _provenance(policy_type: str) -> dict:
    return json.loads((SHIPPED_CHECKPOINTS[policy_type] / PROVENANCE_FILE).read_text())


@pytest.mark.parametrize("policy_type", list(SHIPPED_CHECKPOINTS))
def test_shipped_checkpoint_is_a_small_stock_checkpoint_with_provenance(policy_type):
    checkpoint = SHIPPED_CHECKPOINTS[policy_type]
    stock = STOCK_CLASSES[policy_type]
    # The stock class, from the checkpoint's own config (a SmolVLA's VLM folder resolved, as
    # `lerobot-pirl eval` passes it to lerobot-eval: --policy.vlm_model_name=<absolute path>).
    policy = stock.from_pretrained(str(checkpoint), config=load_policy_config(checkpoint), strict=True)
    assert policy.config.type == policy_type
    assert policy.config.input_features["observation.state"].shape == (STATE_DIM,)
    assert policy.config.output_features["action"].shape == (ACTION_DIM,)
    size = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    assert size < 2 * 2**20, f"the shipped checkpoint is {size} bytes"
    provenance = _provenance(policy_type)
    config = SFTConfig(**provenance["sft_config"])
    assert config == SFTConfig(policy_type=policy_type), "built with non-default settings"
    assert provenance["demonstrations"]["kept"] == config.demonstrations
    evaluation = provenance["evaluation"]
    assert evaluation["episodes"] >= 100 and evaluation["sampler"] == "deterministic"
    assert 0.0 < evaluation["success_rate"] <= 0.40  # a few-shot SFT: room for RL to improve


def test_shipped_smolvla_names_its_vlm_folder_relative_to_itself():
    """Nothing in the shipped SmolVLA names a path of the machine that built it: config.json names
    the VLM folder inside the checkpoint, the saved tokenizer step the bundled tokenizer."""
    checkpoint = SHIPPED_CHECKPOINTS["smolvla"]
    saved = json.loads((checkpoint / "config.json").read_text())
    assert saved["vlm_model_name"] == "vlm" and (checkpoint / "vlm" / "config.json").is_file()
    assert load_policy_config(checkpoint).vlm_model_name == str((checkpoint / "vlm").resolve())
    steps = json.loads((checkpoint / "policy_preprocessor.json").read_text())["steps"]
    [tokenizer] = [s for s in steps if s["registry_name"] == "tokenizer_processor"]
    assert tokenizer["config"]["tokenizer_name"] == "tokenizer"
    for path in checkpoint.rglob("*.json"):
        assert "/tmp" not in path.read_text() and str(Path.home()) not in path.read_text(), path


@pytest.mark.timeout(900)
@pytest.mark.parametrize("policy_type", list(SHIPPED_CHECKPOINTS))
def test_shipped_checkpoint_success_rate_matches_its_provenance(policy_type):
    """Re-measure the recorded SFT success rate: same seed, same episodes, the same number up to
    the few episodes another CPU's floating point can flip."""
    evaluation = _provenance(policy_type)["evaluation"]
    torch.manual_seed(0)
    env = evaluation_env(episode_length=evaluation["max_episode_steps"], physics_dt=evaluation["physics_dt"])
    policy, io = load_flow_policy(SHIPPED_CHECKPOINTS[policy_type], env)
    result = evaluate_policy(policy, io, env, episodes=evaluation["episodes"])
    # MuJoCo's contacts and torch's kernels differ in their last bits between CPU models (their
    # vector instruction paths), and an episode that ends near the success line can flip: the
    # recorded 31 / 100 re-measured as 32 / 100 on another 2-core machine (2026-12-04), with every
    # package the same. A broken input path (processors, sampler, loading) moves it far more.
    assert abs(result.successes - evaluation["successes"]) <= 5
    assert result.mean_episode_steps == pytest.approx(evaluation["mean_episode_steps"], abs=2.0)


def test_demonstrations_are_reproducible_successful_expert_episodes():
    config = SFTConfig(demonstrations=2)
    demos = collect_demonstrations(config, chunk_size=4)
    again = collect_demonstrations(config, chunk_size=4)
    torch.testing.assert_close(demos.states, again.states)
    assert demos.episodes_kept == 2 and demos.episodes_tried >= 2
    n = len(demos.states)
    assert demos.action_chunks.shape == (n, 4, ACTION_DIM) and demos.next_states.shape == (n, STATE_DIM)
    # Every kept episode ends in success: exactly one reward of 1.0 each, on a terminating step.
    assert demos.rewards.sum().item() == 2.0
    assert demos.terminated.sum().item() == 2 and bool(demos.terminated[-1])
    assert torch.equal(demos.terminated, demos.rewards == 1.0)
    # Chunks are the next actions: row t's second action is row t+1's first (within an episode).
    first_end = int(torch.nonzero(demos.terminated)[0])
    torch.testing.assert_close(demos.action_chunks[:first_end, 1], demos.action_chunks[1 : first_end + 1, 0])
    # Consecutive steps chain: next_state[t] == state[t+1] within the episode.
    torch.testing.assert_close(demos.next_states[:first_end], demos.states[1 : first_end + 1])
    assert torch.all(demos.action_chunks[..., :3].abs() <= 1.0)


def _demo(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "lerobot_pirl.commands", "demo", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=tmp_path,
    )


@pytest.mark.integration
@pytest.mark.timeout(720)
@pytest.mark.parametrize("policy_type", list(SHIPPED_CHECKPOINTS))
def test_demo_runs_learner_and_actor_and_writes_a_learning_curve(tmp_path, policy_type):
    out = tmp_path / "run"
    algorithm = json.dumps(
        {"rollout_decisions": 16, "minibatch_size": 8, "update_epochs": 1, "envs_per_actor": 1}
    )
    done = _demo(
        tmp_path,
        "--env-steps=150",
        "--actors=1",
        "--eval-every-updates=2",
        "--eval-episodes=2",
        "--noise-method=flow_sde",
        f"--output-dir={out}",
        f"--algorithm={algorithm}",
        f"--policy={policy_type}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "learning_curve.json").read_text())
    assert (out / "learning_curve.png").stat().st_size > 10_000
    points = summary["evaluations"]
    assert points[0]["update"] == 0 and points[0]["env_steps"] == 0  # the SFT checkpoint itself
    assert [p["update"] for p in points] == sorted({p["update"] for p in points})
    assert len(points) >= 3 and points[-1]["env_steps"] >= 150  # the learner stopped at the budget
    assert all(p["episodes"] == 2 for p in points)
    assert summary["method"] == "pi-rl/flow_sde"
    assert summary["checkpoint_provenance"]["sft_config"]["seed"] == 0
    train_config = json.loads((out / "train_config.json").read_text())
    assert train_config["recipe"] == "pi-rl" and train_config["policy"]["type"] == policy_type
    assert Path(train_config["policy"]["pretrained_path"]) == SHIPPED_CHECKPOINTS[policy_type]
    assert "success rate" in done.stdout
    learner_log = (out / "learner.log").read_text()
    assert "stopped after" in learner_log and "rejected=0" in learner_log
    last = out / "learner" / "checkpoints" / "last" / "pretrained_model"
    _check_lerobot_loads_the_fine_tuned_checkpoint(last, STOCK_CLASSES[policy_type])
    _check_training_moved_the_weights_but_never_the_frozen_vlms(SHIPPED_CHECKPOINTS[policy_type], last)
    if policy_type != "xvla":  # XVLA's is compared on its shipped checkpoint (test_lerobot_eval.py)
        _check_lerobots_evaluator_agrees_with_ours(last)


def _check_training_moved_the_weights_but_never_the_frozen_vlms(start, trained):
    before, _ = load_flow_policy(start)
    after, _ = load_flow_policy(trained)
    vlm = {id(p) for p in before.pi_rl_adapter.vlm_parameters()}
    vlm_names = {name for name, p in before.named_parameters() if id(p) in vlm}
    assert vlm_names, "the adapter names no frozen VLM parameters"
    start_state, trained_state = before.state_dict(), after.state_dict()
    assert start_state.keys() == trained_state.keys()
    changed = {k for k in start_state if not torch.equal(start_state[k], trained_state[k])}
    assert changed and not changed & vlm_names  # the updates moved weights, never the frozen VLM's


def _check_lerobots_evaluator_agrees_with_ours(pretrained):
    """LeRobot's ``eval_policy`` on the fine-tuned checkpoint counts what our evaluator counts."""
    from helpers.evaluation import assert_same_success_rate

    from lerobot_pirl.runtime.lerobot_eval import eval_checkpoint
    from lerobot_pirl.tasks.pick_cube.evaluate import EVAL_SEED_OFFSET

    episodes = 30
    env = evaluation_env(episode_length=50, physics_dt=0.005)
    stock = eval_checkpoint(pretrained, env, n_episodes=episodes, start_seed=EVAL_SEED_OFFSET)
    policy, io = load_flow_policy(pretrained, env)
    ours = evaluate_policy(policy, io, env, episodes=episodes, sampler="native")
    assert_same_success_rate(stock, ours, episodes)


def _check_lerobot_loads_the_fine_tuned_checkpoint(pretrained, stock_class):
    """LeRobot's own loaders (no overrides, offline) give the policy inputs the actor gives, and the
    same actions: stock ``predict_action_chunk`` = the actor's sampler in native mode for the same
    RNG state, and the same env actions through LeRobot's postprocessor."""
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies import make_pre_post_processors

    from lerobot_pirl.runtime.envs import make_envs, task_description

    assert (pretrained / "policy_preprocessor.json").is_file() and (pretrained / "tokenizer").is_dir()
    stock = stock_class.from_pretrained(str(pretrained), strict=True).eval()
    pre, post = make_pre_post_processors(stock.config, pretrained_path=str(pretrained))
    env = evaluation_env(episode_length=10, physics_dt=0.005)
    policy, io = load_flow_policy(pretrained, env)  # the actor's path (runtime.processors)
    [vec] = make_envs(env, 1)
    try:
        raw, _ = vec.reset(seed=[3])
        observation = preprocess_observation(raw)
        observation["task"] = [task_description(vec)]
        theirs = {k: v for k, v in pre(observation).items() if isinstance(v, torch.Tensor)}
        ours = io.observation(raw, task_description(vec))
    finally:
        vec.close()
    assert set(theirs) == set(ours)
    for key in ours:
        assert torch.equal(theirs[key], ours[key]), key
    assert theirs["observation.language.tokens"][0, 0].item() == 0  # the bundled tokenizer's <s>
    torch.manual_seed(5)
    stock_chunk = stock.predict_action_chunk(theirs)
    torch.manual_seed(5)
    actor_chunk, _ = policy.sample_actions(ours, mode="native")
    torch.testing.assert_close(actor_chunk, stock_chunk, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        torch.from_numpy(io.env_actions(actor_chunk[:, 0])), post(stock_chunk[:, 0]), rtol=0, atol=1e-6
    )


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_metaworld_demo_trains_and_plots_a_curve_per_task(tmp_path):
    """``--env metaworld``: the MT10 checkpoint, the tasks spread over the actor's envs, every
    evaluation per task (here two tasks, one episode each), the per-task lines in the PNG."""
    out = tmp_path / "run"
    algorithm = {"rollout_decisions": 16, "minibatch_size": 8, "update_epochs": 1, "envs_per_actor": 2}
    env = {"task": "reach-v3,window-close-v3", "episode_length": 24}
    done = _demo(
        tmp_path,
        "--env=metaworld",
        "--env-steps=200",
        "--actors=1",
        "--eval-every-updates=2",
        "--eval-episodes=1",
        f"--output-dir={out}",
        f"--algorithm={json.dumps(algorithm)}",
        f"--env-overrides={json.dumps(env)}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "learning_curve.json").read_text())
    assert summary["task"] == "metaworld"
    points = summary["evaluations"]
    assert len(points) >= 2 and points[0]["env_steps"] == 0 and points[-1]["env_steps"] >= 200
    for point in points:
        assert set(point["per_task"]) == {"reach-v3", "window-close-v3"}
        assert point["episodes"] == 2 and point["episodes_per_task"] == 1
        assert point["success_rate"] == sum(point["per_task"].values()) / 2
    train_config = json.loads((out / "train_config.json").read_text())
    assert train_config["env"]["type"] == "pirl_metaworld" and train_config["env"]["shaping_coef"] == 1.0
    assert train_config["algorithm"]["envs_per_actor"] == 2
    assert json.loads(
        (out / "learner" / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text()
    )["input_features"]["observation.state"]["shape"] == [39]
    assert (out / "learning_curve.png").stat().st_size > 10_000


@pytest.mark.integration
def test_demo_refuses_bad_settings_before_starting(tmp_path):
    from helpers.learner_process import at_once

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("user data")
    done, bad, unknown = at_once(
        lambda: _demo(tmp_path, "--env-steps=0", f"--output-dir={tmp_path / 'taken'}"),
        lambda: _demo(tmp_path, "--noise-method=flow_magic"),
        lambda: _demo(tmp_path, "--env=libero"),
    )
    assert done.returncode == 2
    assert "env_steps=0 (must be ≥ 1)" in done.stderr and "exists and is not empty" in done.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "user data"
    assert bad.returncode == 2 and "flow_noise" in bad.stderr
    assert unknown.returncode == 2 and "metaworld" in unknown.stderr and "pick_cube" in unknown.stderr


def test_a_policy_without_a_shipped_checkpoint_or_with_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(DemoError, match=r"policy='pi0' \(shipped for metaworld: xvla, smolvla\)"):
        DemoConfig(task="metaworld", policy="pi0", output_dir=tmp_path / "a").validate()
    both = DemoConfig(policy="smolvla", checkpoint=SHIPPED_CHECKPOINT, output_dir=tmp_path / "b")
    with pytest.raises(DemoError, match="give one of them"):
        both.validate()
    chosen = DemoConfig(policy="smolvla", output_dir=tmp_path / "c")
    chosen.validate()
    assert chosen.checkpoint == SHIPPED_CHECKPOINTS["smolvla"]


@pytest.mark.timeout(300)
def test_evaluation_does_not_depend_on_how_episodes_are_batched():
    """Each evaluation episode has its own reset seed and start-noise stream: one env at a time
    and four at a time give the same successes, returns and episode lengths."""
    env = evaluation_env(episode_length=20, physics_dt=0.005)
    policy, io = load_flow_policy(SHIPPED_CHECKPOINT, env)
    one = evaluate_policy(policy, io, env, episodes=6, batch_envs=1)
    torch.manual_seed(123)  # nothing may come from the global RNG either
    four = evaluate_policy(policy, io, env, episodes=6, batch_envs=4)
    assert one == four
    assert one.episodes == 6 and 0 < one.mean_episode_steps <= 20
