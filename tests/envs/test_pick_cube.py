"""gym-hil PandaPickCube as a registered LeRobot env type: built by LeRobot's ``make_env``,
observations through LeRobot's ``preprocess_observation``, episode semantics, scripted expert,
throughput."""

import os
import time

# Headless MuJoCo: must be decided before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from lerobot.envs import make_env, make_env_config  # noqa: E402

from lerobot_pirl.envs import (  # noqa: E402
    ACTION_DIM,
    IMAGE_KEY,
    STATE_DIM,
    STATE_KEY,
    TASK_DESCRIPTION,
    PickCubeEnvConfig,
    policy_features,
    scripted_expert_action,
)
from lerobot_pirl.runtime.envs import SingleEnv  # noqa: E402

pytestmark = pytest.mark.timeout(120)

ZERO = np.zeros(ACTION_DIM, dtype=np.float32)


class Env(SingleEnv):
    """One env built by LeRobot's ``make_env`` (a vector env of one), unbatched."""

    def __init__(self, config: PickCubeEnvConfig):
        super().__init__(make_env(config, n_envs=1)[config.type][0])
        self.config = config
        self.vec = self.env

    @property
    def gym_hil(self):
        return self.vec.envs[0].unwrapped.gym_hil_env


@pytest.fixture(scope="module")
def state_env():
    env = Env(PickCubeEnvConfig(image_obs=False))
    yield env
    env.close()


@pytest.fixture(scope="module")
def image_env():
    env = Env(PickCubeEnvConfig(image_obs=True, image_size=16))
    yield env
    env.close()


def _check_obs(obs, image_size=16):
    assert set(obs) == {STATE_KEY, IMAGE_KEY}
    state, image = obs[STATE_KEY], obs[IMAGE_KEY]
    assert state.shape == (STATE_DIM,) and state.dtype == torch.float32
    assert image.shape == (3, image_size, image_size) and image.dtype == torch.float32
    assert torch.isfinite(state).all()
    assert 0.0 <= image.min().item() and image.max().item() <= 1.0


def test_registered_with_lerobot_and_built_by_its_factory():
    config = make_env_config("pirl_pick_cube", episode_length=7, physics_dt=0.005)
    assert isinstance(config, PickCubeEnvConfig) and config.type == "pirl_pick_cube"
    with Env(config) as env:
        assert env.vec.call("_max_episode_steps") == (7,)  # gymnasium's TimeLimit from gym_kwargs
        assert env.vec.call("task_description") == (TASK_DESCRIPTION,)
        assert env.gym_hil._n_substeps == 20
        assert isinstance(env.vec, gym.vector.SyncVectorEnv)


def test_state_obs_shapes_and_blank_image(state_env):
    obs = state_env.reset(seed=1)
    _check_obs(obs)
    assert torch.count_nonzero(obs[IMAGE_KEY]) == 0
    block = obs[STATE_KEY][18:21].numpy()
    # random_block_position samples x in [0.3, 0.5], y in [-0.15, 0.15]; the block rests at z = 0.02
    assert 0.3 <= block[0] <= 0.5 and -0.15 <= block[1] <= 0.15
    assert block[2] == pytest.approx(0.02, abs=1e-3)
    # agent_pos layout: gripper command (0 = open) then TCP xyz
    assert obs[STATE_KEY][14].item() == 0.0
    assert 0.2 <= obs[STATE_KEY][15].item() <= 0.6


def test_image_obs_shapes_and_content(image_env):
    obs = image_env.reset(seed=1)
    _check_obs(obs)
    first = obs[IMAGE_KEY]
    assert first.std().item() > 0.05  # a real frame, not a constant
    for _ in range(3):  # move the arm up and sideways: the front camera must see it
        obs, *_ = image_env.step(np.array([1.0, 1.0, 1.0, 0], dtype=np.float32))
    assert (obs[IMAGE_KEY] - first).abs().max().item() > 0.05


def test_image_size_is_configurable():
    with Env(PickCubeEnvConfig(image_obs=True, image_size=24)) as env:
        _check_obs(env.reset(), image_size=24)


def test_closing_one_env_keeps_other_frames_intact(image_env):
    before = image_env.reset(seed=2)[IMAGE_KEY]
    other = Env(PickCubeEnvConfig(image_obs=True))
    other.reset(seed=5)
    other.close()  # MuJoCo's Renderer.close() would otherwise free image_env's GL objects
    after = image_env.reset(seed=2)[IMAGE_KEY]
    torch.testing.assert_close(after, before)


def test_zero_actions_truncate_at_episode_length():
    with Env(PickCubeEnvConfig(episode_length=12)) as env:
        env.reset(seed=3)
        for t in range(1, 13):
            obs, reward, terminated, truncated, info = env.step(ZERO)
            assert reward == 0.0 and isinstance(reward, float)
            assert terminated is False and info["success"] is False
            assert truncated is (t == 12)
        _check_obs(obs)


def test_seeded_reset_is_reproducible_and_leaves_global_rng_alone(state_env):
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    a = state_env.reset(seed=7)[STATE_KEY]
    b = state_env.reset(seed=7)[STATE_KEY]
    c = state_env.reset(seed=8)[STATE_KEY]
    assert np.random.rand() == expected
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[18:21], c[18:21])


def test_action_validation_and_clipping(state_env):
    state_env.reset(seed=0)
    env = state_env.vec.envs[0].unwrapped
    with pytest.raises(ValueError, match="4-D"):
        env.step(np.zeros(7, dtype=np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full(ACTION_DIM, np.nan, dtype=np.float32))
    # Out-of-range actions are clipped to [-1, 1].
    obs, *_ = state_env.step(np.array([0.0, 0.0, 5.0, 1.0]))
    assert obs[STATE_KEY][14].item() == pytest.approx(1.0)  # grasp_delta +1 closes fully in one step


def test_policy_features_match_observations(state_env):
    inputs, outputs = policy_features(state_env.config)  # LeRobot's env_to_policy_features
    obs = state_env.reset(seed=0)
    assert {k: tuple(f.shape) for k, f in inputs.items()} == {k: tuple(v.shape) for k, v in obs.items()}
    assert tuple(outputs["action"].shape) == (ACTION_DIM,)


def test_scripted_expert_succeeds_on_randomised_episodes(state_env):
    rng = np.random.default_rng(0)
    successes = 0
    for episode in range(5):
        obs = state_env.reset(seed=100 + episode)
        for _ in range(state_env.config.episode_length):
            action = scripted_expert_action(obs[STATE_KEY], rng, noise_std=0.01)
            assert action.shape == (ACTION_DIM,) and action.dtype == np.float32
            assert np.all(np.abs(action[:3]) <= 1.0)
            obs, reward, terminated, truncated, info = state_env.step(action)
            if terminated or truncated:
                break
        assert (reward == 1.0) == info["success"]
        successes += info["success"]
    assert successes >= 3, f"scripted expert succeeded in only {successes}/5 episodes"


@pytest.mark.parametrize("which", ["state", "image"])
def test_forty_small_random_steps_keep_every_observation_valid(which, state_env, image_env):
    """What the env guarantees step after step (throughput is a benchmark's business:
    ``benchmarks/actor_learner_throughput.py``; the rate is printed for information only)."""
    env = state_env if which == "state" else image_env
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n = 40
    start = time.perf_counter()
    for _ in range(n):
        obs, reward, terminated, truncated, _ = env.step(
            rng.uniform(-0.02, 0.02, ACTION_DIM).astype(np.float32)
        )
        _check_obs(obs)
        assert np.isfinite(reward) and not truncated
        if terminated:
            env.reset(seed=1)
    print(f"\nPandaPickCube {which} obs: {n / (time.perf_counter() - start):.1f} env steps/s")


def test_shaped_reward_is_the_potential_difference_and_success_stays_sparse():
    """Expert episode with shaping: each step's reward = sparse + coef·(Φ(s') − Φ(s)), with Φ
    recomputed here from the reported state, so the episode's shaping sums to coef·(Φ_T − Φ_0)."""
    coef, grasp = 2.0, 0.5
    config = PickCubeEnvConfig(
        episode_length=60, physics_dt=0.005, shaping_coef=coef, shaping_grasp_weight=grasp
    )
    rng = np.random.default_rng(0)

    def potential(state: np.ndarray, z0: float) -> float:  # the formula, restated independently
        reach = np.exp(-20.0 * np.linalg.norm(state[18:21] - state[15:18]))
        return 0.3 * reach + grasp * reach * state[14] + 0.7 * min(max((state[20] - z0) / 0.1, 0.0), 1.0)

    with Env(config) as env:
        obs = env.reset(seed=3)
        z0 = float(obs[STATE_KEY][20])
        phi0 = phi = potential(obs[STATE_KEY].numpy(), z0)
        total, sparse_total, success = 0.0, 0.0, False
        for _ in range(60):
            obs, reward, terminated, truncated, info = env.step(
                scripted_expert_action(obs[STATE_KEY], rng, 0.0)
            )
            new_phi = potential(obs[STATE_KEY].numpy(), z0)
            assert reward == pytest.approx(info["sparse_reward"] + coef * (new_phi - phi), abs=1e-6)
            assert info["sparse_reward"] in (0.0, 1.0)
            phi, total, sparse_total = new_phi, total + reward, sparse_total + info["sparse_reward"]
            success = success or info["success"]
            if terminated or truncated:
                break
    assert success and sparse_total == 1.0  # the noiseless expert lifts the block
    assert total == pytest.approx(sparse_total + coef * (phi - phi0), abs=1e-5)
    assert phi > 0.7 > phi0  # lifted (lift term full) from far away (reach term ~0)
    assert obs[STATE_KEY][14] == 1.0  # closed on the block: the grasp term counted at the end


def test_physics_dt_sets_the_controller_substeps_and_is_validated():
    with Env(PickCubeEnvConfig(physics_dt=0.005)) as env:
        assert env.gym_hil._n_substeps == 20  # 0.1 s control period / 0.005 s
    with pytest.raises(ValueError, match=r"env.physics_dt must be in \(0, 0.1\] s, got 0.5"):
        PickCubeEnvConfig(physics_dt=0.5)
    with pytest.raises(
        ValueError, match="env.shaping_coef and env.shaping_grasp_weight must be >= 0, got -1, 0.0"
    ):
        PickCubeEnvConfig(shaping_coef=-1)
    with pytest.raises(ValueError, match="env.episode_length must be >= 1, got 0"):
        PickCubeEnvConfig(episode_length=0)
