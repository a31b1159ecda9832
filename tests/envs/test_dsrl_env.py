"""The ``pirl_dsrl`` env: the noise parametrisation, the frozen XVLA's chunk, and its frozenness."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from lerobot.envs import make_env
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

from lerobot_pirl.envs.noise_steered import DSRLEnvConfig, NoiseLayout, noise_layout
from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig
from lerobot_pirl.runtime.envs import make_envs, step_env, task_description
from lerobot_pirl.runtime.flow_policy import load_flow_policy
from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT

INNER = {"type": "pirl_pick_cube", "episode_length": 20}


def _env(**fields):
    fields.setdefault("inner", dict(INNER))
    config = DSRLEnvConfig(checkpoint=str(SHIPPED_CHECKPOINT), **fields)
    [vector_env] = make_env(config, n_envs=1)[config.type].values()
    return vector_env.envs[0].unwrapped


def test_noise_action_maps_onto_the_controlled_noise_and_back() -> None:
    # chunk 2, model dims 3, the agent sets the first 2 of each row: a = [a00 a01 a10 a11].
    layout = NoiseLayout(chunk_size=2, model_action_dim=3, controlled_dims=2, noise_scale=1.5)
    action = torch.tensor([1.0, -0.5, 0.0, 0.25])
    expected = torch.tensor([[1.5, -0.75, 0.0], [0.0, 0.375, 0.0]])  # 1.5·a, 0 in the third dim
    assert torch.equal(layout.noise_from_action(action), expected)
    assert torch.equal(layout.action_from_noise(expected), action)
    # Bijective between [-1, 1]^4 and the noises in [-1.5, 1.5] with a zero third dim.
    actions = torch.rand(100, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise = layout.noise_from_action(actions)
    assert noise.abs().max() <= 1.5 and torch.equal(noise[..., 2], torch.zeros(100, 2))
    torch.testing.assert_close(layout.action_from_noise(noise), actions, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="has 4 values"):
        layout.noise_from_action(torch.zeros(5))


def test_layout_reads_xvlas_own_sizes_from_the_checkpoint() -> None:
    """The layout comes from config.json alone; it must match the model XVLA builds from it."""
    policy = XVLAPolicy.from_pretrained(str(SHIPPED_CHECKPOINT))
    real = noise_layout(SHIPPED_CHECKPOINT, "real", 1.5)
    full = noise_layout(SHIPPED_CHECKPOINT, "full", 1.5)
    assert real.chunk_size == full.chunk_size == policy.config.chunk_size
    assert real.model_action_dim == policy.model.dim_action
    assert real.controlled_dims == policy.config.output_features["action"].shape[0]
    assert full.controlled_dims == policy.model.dim_action
    config = DSRLEnvConfig(checkpoint=str(SHIPPED_CHECKPOINT), inner=dict(INNER))
    assert config.features["action"].shape == (real.action_dim,)
    assert config.features["agent_pos"].shape == policy.config.input_features["observation.state"].shape


def test_zero_noise_action_runs_the_frozen_policys_deterministic_chunk() -> None:
    """a = 0 executes the chunk the frozen XVLA's deterministic sampler gives from zero noise, and
    its H' steps, rewards summed, are exactly those steps in the inner env."""
    env = _env()
    observation, _ = env.reset()
    policy, io = load_flow_policy(SHIPPED_CHECKPOINT, PickCubeEnvConfig(episode_length=20))
    [inner] = make_envs(PickCubeEnvConfig(episode_length=20), 1)
    raw, _ = inner.reset(seed=[0])  # the env's first reset is seeded with env.seed = 0
    assert np.array_equal(observation["agent_pos"], raw["agent_pos"][0])
    with torch.no_grad():
        zeros = torch.zeros(1, policy.config.chunk_size, policy.model.dim_action)
        observed = io.observation(raw, task_description(inner))
        chunk, _ = policy.sample_actions(observed, mode="deterministic", initial_noise=zeros)
    executed = policy.config.n_action_steps
    expected_actions = io.env_actions(chunk[0, :executed])
    np.testing.assert_array_equal(env.chunk_actions(np.zeros(env.layout.action_dim)), expected_actions)

    next_observation, reward, terminated, truncated, info = env.step(
        np.zeros(env.layout.action_dim, np.float32)
    )
    expected_reward = 0.0
    for action in expected_actions:
        result = step_env(inner, action)
        expected_reward += result.reward
    assert info["env_steps"] == executed and reward == expected_reward
    assert np.array_equal(next_observation["agent_pos"], result.observation["agent_pos"][0])
    assert not (terminated or truncated)
    env.close()
    inner.close()


def test_the_xvla_gets_no_gradient_and_is_bit_identical_after_steering() -> None:
    env = _env(noise_dims="full")
    assert env.layout.action_dim == env.layout.chunk_size * env.layout.model_action_dim
    assert not any(p.requires_grad for p in env.policy.parameters())
    before = _weights_digest(env.policy)
    env.reset()
    generator = np.random.default_rng(0)
    for _ in range(12):  # random noise actions, across an episode end
        env.step(generator.uniform(-1, 1, env.layout.action_dim).astype(np.float32))
    after = _weights_digest(env.policy)
    assert after == before
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        env.step(np.full(env.layout.action_dim, 1.5, np.float32))
    env.close()


def test_the_terminal_observation_has_the_shape_of_every_other_and_success_is_reported() -> None:
    """At the time limit the episode's last observation is as unbatched as the others ([21]), and
    the info carries ``is_success`` (LeRobot's evaluator) beside ``success`` on every step."""
    env = _env(inner={"type": "pirl_pick_cube", "episode_length": 4})
    observation, _ = env.reset()
    shape = observation["agent_pos"].shape
    assert shape == (21,)
    zeros = np.zeros(env.layout.action_dim, np.float32)
    steps, truncated = 0, False
    while not truncated:
        observation, _, terminated, truncated, info = env.step(zeros)
        steps += 1
        assert observation["agent_pos"].shape == shape, f"step {steps}"
        assert info["is_success"] == info["success"] and isinstance(info["is_success"], bool)
        assert not terminated
    assert steps * env.executed_steps == 4  # two decisions of H' = 2 fill the 4-step episode
    env.close()


def test_bad_dsrl_env_fields_are_named_with_what_is_accepted(tmp_path) -> None:
    with pytest.raises(ValueError) as error:
        DSRLEnvConfig(checkpoint="", noise_dims="half", noise_scale=0.0, executed_steps=0)
    message = str(error.value)
    for part in (
        "env.checkpoint is empty",
        "env.noise_dims='half' (accepted: real, full)",
        "env.noise_scale=0.0",
    ):
        assert part in message, message
    with pytest.raises(ValueError, match="has no config.json"):
        DSRLEnvConfig(checkpoint=str(tmp_path))
    with pytest.raises(ValueError, match="itself a pirl_dsrl env"):
        DSRLEnvConfig(checkpoint=str(SHIPPED_CHECKPOINT), inner={"type": "pirl_dsrl"})
    (tmp_path / "config.json").write_text('{"type": "act"}')
    with pytest.raises(ValueError, match=r"policy type is 'act'; DSRL steers .*: pi0, pi05, smolvla, xvla"):
        DSRLEnvConfig(checkpoint=str(tmp_path))


def _weights_digest(policy) -> str:
    """One hash of every tensor in the policy's state dict, byte for byte."""
    return hashlib.sha256(b"".join(v.numpy().tobytes() for v in policy.state_dict().values())).hexdigest()


@pytest.fixture(scope="module")
def smolvla_checkpoint(tmp_path_factory):
    from helpers.tiny_smolvla import tiny_smolvla_checkpoint

    return tiny_smolvla_checkpoint(
        PickCubeEnvConfig(episode_length=20), tmp_path_factory.mktemp("smolvla") / "ckpt"
    )


def test_dsrl_steers_a_smolvla_and_zero_noise_is_stock_smolvlas_chunk(smolvla_checkpoint) -> None:
    """Any adapted policy type: a tiny SmolVLA checkpoint's layout comes from its config (chunk ×
    the real action dims; the padded max_action_dim for "full"), and a = 0 executes the chunk that
    stock ``SmolVLAPolicy.predict_action_chunk`` denoises from zero noise."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    stock = SmolVLAPolicy.from_pretrained(str(smolvla_checkpoint)).eval()
    layout = noise_layout(smolvla_checkpoint, "real", 1.5)
    assert (layout.chunk_size, layout.model_action_dim, layout.controlled_dims) == (
        stock.config.chunk_size,
        stock.config.max_action_dim,
        4,  # PandaPickCube's action
    )
    assert noise_layout(smolvla_checkpoint, "full", 1.5).controlled_dims == stock.config.max_action_dim == 6

    config = DSRLEnvConfig(checkpoint=str(smolvla_checkpoint), inner=dict(INNER))
    [vector_env] = make_env(config, n_envs=1)[config.type].values()
    env = vector_env.envs[0].unwrapped
    env.reset()
    _, io = load_flow_policy(smolvla_checkpoint, PickCubeEnvConfig(episode_length=20))
    [inner] = make_envs(PickCubeEnvConfig(episode_length=20), 1)
    raw, _ = inner.reset(seed=[0])
    with torch.no_grad():
        zeros = torch.zeros(1, stock.config.chunk_size, stock.config.max_action_dim)
        chunk = stock.predict_action_chunk(io.observation(raw, task_description(inner)), noise=zeros)
    expected = io.env_actions(chunk[0, : stock.config.n_action_steps])
    np.testing.assert_allclose(env.chunk_actions(np.zeros(layout.action_dim)), expected, rtol=0, atol=1e-5)
    env.close()
    inner.close()


def test_the_frozen_smolvla_is_bit_identical_after_steering(smolvla_checkpoint) -> None:
    config = DSRLEnvConfig(checkpoint=str(smolvla_checkpoint), inner=dict(INNER), noise_dims="full")
    [vector_env] = make_env(config, n_envs=1)[config.type].values()
    env = vector_env.envs[0].unwrapped
    assert not any(p.requires_grad for p in env.policy.parameters())
    before = _weights_digest(env.policy)
    env.reset()
    generator = np.random.default_rng(0)
    for _ in range(12):  # random noise actions, across an episode end
        env.step(generator.uniform(-1, 1, env.layout.action_dim).astype(np.float32))
    after = _weights_digest(env.policy)
    assert after == before
    env.close()


def test_multi_task_inner_env_runs_tasks_round_robin_with_a_one_hot_and_each_instruction() -> None:
    """MT10 inside: one inner env per task, episodes round robin over the tasks (or the one a
    reset names), the agent's state = the inner 39-D state ⊕ one-hot(task), and the zero-noise
    decision is the frozen XVLA's deterministic chunk under that task's own instruction."""
    from lerobot.envs.metaworld import TASK_DESCRIPTIONS

    from lerobot_pirl.tasks.metaworld.configs import SHIPPED_CHECKPOINT as MT10
    from lerobot_pirl.tasks.metaworld.configs import mt10_env_config

    inner = {"type": "pirl_metaworld", "task": "reach-v3,push-v3,drawer-close-v3", "image_size": 16}
    config = DSRLEnvConfig(checkpoint=str(MT10), inner=inner, seed=7)
    assert config.features["agent_pos"].shape == (39 + 3,)
    [vector_env] = make_env(config, n_envs=1)[config.type].values()
    env = vector_env.envs[0].unwrapped
    seen = []
    for episode in range(4):
        observation, info = env.reset()
        seen.append(info["task"])
        assert observation["agent_pos"].shape == (42,)
        np.testing.assert_array_equal(observation["agent_pos"][39:], np.eye(3)[episode % 3])
    names = ["reach-v3", "push-v3", "drawer-close-v3"]
    assert seen == [TASK_DESCRIPTIONS[n] for n in [*names, names[0]]]

    observation, info = env.reset(options={"task": "push-v3"})
    assert info["task"] == TASK_DESCRIPTIONS["push-v3"]
    # The first push-v3 episode started from reset seed 7 + 1 (its task index); the env still
    # holds that start, so this episode's state is it.
    task_config = mt10_env_config(task="push-v3")
    [push] = make_envs(task_config, 1)
    raw, _ = push.reset(seed=[8])
    np.testing.assert_array_equal(observation["agent_pos"][:39], raw["agent_pos"][0])
    policy, io = load_flow_policy(MT10, task_config)
    with torch.no_grad():
        zeros = torch.zeros(1, policy.config.chunk_size, policy.model.dim_action)
        observed = io.observation(raw, TASK_DESCRIPTIONS["push-v3"])
        chunk, _ = policy.sample_actions(observed, mode="deterministic", initial_noise=zeros)
    expected = io.env_actions(chunk[0, : policy.config.n_action_steps])
    np.testing.assert_array_equal(env.chunk_actions(np.zeros(env.layout.action_dim)), expected)
    with pytest.raises(ValueError, match="unknown task 'pick-place-v3'"):
        env.reset(options={"task": "pick-place-v3"})
    push.close()
    env.close()
