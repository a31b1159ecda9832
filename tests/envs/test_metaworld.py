"""MetaWorld as a registered LeRobot env type (``pirl_metaworld``): built by LeRobot's ``make_env``,
LeRobot's task names, instructions and experts, success reporting, per-seed positions and the lean
camera."""

import os

# Headless MuJoCo: must be decided before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
from lerobot.envs import env_to_policy_features, make_env  # noqa: E402
from lerobot.envs.utils import preprocess_observation  # noqa: E402

from lerobot_pirl.envs.metaworld import (  # noqa: E402
    GOAL_SLICE,
    STATE_DIM,
    MetaWorldEnvConfig,
    expand_tasks,
    lerobot_metaworld,
)
from lerobot_pirl.envs.pick_cube import IMAGE_KEY, STATE_KEY, VIDEO_SIZE  # noqa: E402
from lerobot_pirl.runtime.envs import make_envs, step_env  # noqa: E402

pytestmark = [
    pytest.mark.timeout(120),
    # MetaWorld's scripted experts warn about their own gains on every action.
    pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high:UserWarning"),
]

LEROBOT_MW = lerobot_metaworld()
TASK_DESCRIPTIONS = LEROBOT_MW.TASK_DESCRIPTIONS
MT10 = [
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
]
OBJECT_XYZ = slice(4, 7)  # the first object's position in MetaWorld's observation


def build(config: MetaWorldEnvConfig, n_envs: int = 1):
    """The one vector env LeRobot's ``make_env`` gives for ``config``."""
    suites = make_env(config, n_envs=n_envs)
    assert list(suites) == ["pirl_metaworld"] and list(suites["pirl_metaworld"]) == [0]
    return suites["pirl_metaworld"][0]


def step(env, action):
    return env.step(np.asarray(action, dtype=np.float32).reshape(env.num_envs, -1))


@pytest.fixture(scope="module")
def multi_env():
    """Three sub-envs over two tasks, state observations, a 32 px blank image."""
    env = build(MetaWorldEnvConfig(task="push-v3,reach-v3", image_size=32), n_envs=3)
    yield env
    env.close()


@pytest.fixture(scope="module")
def reach_env():
    env = build(MetaWorldEnvConfig(task="reach-v3", episode_length=150))
    yield env
    env.close()


@pytest.fixture(scope="module")
def pixel_env():
    env = build(MetaWorldEnvConfig(task="reach-v3", obs_type="pixels_agent_pos"))
    yield env
    env.close()


# --- config: tasks -----------------------------------------------------------------------------


def test_mt10_and_mt50_expand_to_metaworlds_lists():
    assert expand_tasks("MT10") == MT10
    assert MetaWorldEnvConfig(task="mt10").task_names == MT10
    mt50 = expand_tasks("MT50")
    assert len(mt50) == 50 and set(mt50) == set(TASK_DESCRIPTIONS)


def test_difficulty_names_and_comma_lists_expand():
    for difficulty, tasks in LEROBOT_MW.DIFFICULTY_TO_TASKS.items():
        assert expand_tasks(difficulty) == tasks
    assert len(expand_tasks("easy")) == 28
    # Items may be groups; repeats are dropped; LeRobot's "metaworld-" prefix is accepted.
    assert expand_tasks(" reach-v3, metaworld-push-v3 ,reach-v3") == ["reach-v3", "push-v3"]
    assert expand_tasks("very_hard,shelf-place-v3") == LEROBOT_MW.DIFFICULTY_TO_TASKS["very_hard"]


def test_unknown_task_fails_at_config_time_in_one_line():
    with pytest.raises(
        ValueError, match=r"unknown MetaWorld task 'reach-v2' \(did you mean 'reach-v3'\?\)"
    ) as err:
        MetaWorldEnvConfig(task="reach-v3,reach-v2")
    message = str(err.value)
    assert "\n" not in message
    for accepted in ("MT10", "MT50", "easy", "medium", "hard", "very_hard"):
        assert accepted in message
    with pytest.raises(ValueError, match="no MetaWorld task"):
        MetaWorldEnvConfig(task=" , ")


def test_other_options_are_checked_at_config_time():
    with pytest.raises(ValueError, match="obs_type"):
        MetaWorldEnvConfig(task="reach-v3", obs_type="pixels")
    with pytest.raises(ValueError, match="reward_type"):
        MetaWorldEnvConfig(task="reach-v3", reward_type="shaped")
    with pytest.raises(ValueError, match=r"episode_length must be in \[1, 500\]"):
        MetaWorldEnvConfig(task="reach-v3", episode_length=501)


def test_sub_env_i_runs_task_i_mod_t_from_the_offset():
    config = MetaWorldEnvConfig(task="MT10")
    assert config.sub_env_tasks(12) == MT10 + MT10[:2]
    assert MetaWorldEnvConfig(task="reach-v3,push-v3", task_offset=1).sub_env_tasks(3) == [
        "push-v3",
        "reach-v3",
        "push-v3",
    ]


# --- features and observations -------------------------------------------------------------------


def test_features_map_to_the_policy_keys():
    config = MetaWorldEnvConfig(task="reach-v3", image_size=32)
    features = env_to_policy_features(config)
    assert {key: tuple(ft.shape) for key, ft in features.items()} == {
        "action": (4,),
        STATE_KEY: (STATE_DIM,),
        IMAGE_KEY: (3, 32, 32),
    }


def test_state_observation_is_metaworlds_39d_with_a_blank_image(multi_env):
    raw, info = multi_env.reset(seed=[0, 1, 2])
    assert raw["agent_pos"].shape == (3, STATE_DIM) and raw["agent_pos"].dtype == np.float32
    assert raw["pixels"]["front"].shape == (3, 32, 32, 3) and raw["pixels"]["front"].dtype == np.uint8
    assert not raw["pixels"]["front"].any()
    assert not info["is_success"].any()
    # The goal is part of the state (MetaWorld's multi-task observability): never all zeros.
    assert np.all(np.abs(raw["agent_pos"][:, GOAL_SLICE]).sum(axis=1) > 0.1)
    # It is MetaWorld's own observation, as a float32 copy.
    inner = multi_env.envs[0].unwrapped.metaworld_env
    np.testing.assert_allclose(raw["agent_pos"][0, :3], inner.get_endeff_pos(), atol=1e-5)
    np.testing.assert_allclose(raw["agent_pos"][0, GOAL_SLICE], inner._target_pos, atol=1e-5)
    observation = preprocess_observation(raw)
    assert observation[STATE_KEY].shape == (3, STATE_DIM)
    assert observation[IMAGE_KEY].shape == (3, 3, 32, 32)
    assert multi_env.call("_max_episode_steps") == (200, 200, 200)


def test_instruction_per_sub_env_is_lerobots(multi_env):
    tasks = ("push-v3", "reach-v3", "push-v3")
    assert multi_env.call("task") == tasks
    instructions = multi_env.call("task_description")
    assert instructions == tuple(TASK_DESCRIPTIONS[task] for task in tasks)
    assert instructions[0] != instructions[1]
    assert instructions[0] == "Push the puck to a goal"


# --- success -------------------------------------------------------------------------------------


def test_lerobots_expert_solves_reach_and_is_success_turns_true(reach_env):
    expert = LEROBOT_MW.TASK_POLICY_MAPPING["reach-v3"]()
    raw, _ = reach_env.reset(seed=[3])
    steps = 0
    while steps < 150:
        steps += 1
        action = expert.get_action(raw["agent_pos"][0].astype(np.float64))
        raw, reward, terminated, truncated, info = step(reach_env, action)
        if terminated[0] or truncated[0]:
            break
        assert info["is_success"].dtype == bool and not info["is_success"][0]
        assert reward[0] == 0.0
    assert terminated[0] and not truncated[0], f"the expert did not succeed in {steps} steps"
    final = info["final_info"]
    assert final["is_success"][0] == np.True_ and final["success"][0] == 1.0  # MetaWorld's, kept
    assert reward[0] == 1.0  # sparse: the success step
    assert final["dense_reward"][0] > 0.0
    assert final["task"][0] == "reach-v3"


def test_zero_action_episode_never_succeeds(reach_env):
    reach_env.reset(seed=[3])
    for _ in range(150):
        raw, reward, terminated, truncated, info = step(reach_env, np.zeros(4))
        if truncated[0] or terminated[0]:
            break
        assert not info["is_success"][0] and reward[0] == 0.0
    assert truncated[0] and not terminated[0]
    assert not info["final_info"]["is_success"][0]


def test_dense_reward_is_metaworlds():
    env = build(MetaWorldEnvConfig(task="reach-v3", reward_type="dense", episode_length=5))
    try:
        env.reset(seed=[0])
        _, reward, _, _, info = step(env, [0.5, 0.5, 0.0, 0.0])
        assert reward[0] > 0.0 and reward[0] == pytest.approx(info["dense_reward"][0])
    finally:
        env.close()


# --- seeds ---------------------------------------------------------------------------------------


def test_positions_follow_the_reset_seed(multi_env):
    def positions(seed):
        raw, _ = multi_env.reset(seed=[seed, seed, seed])
        # The next episode's positions (an unseeded reset continues the env's own stream).
        follow, _ = multi_env.reset()
        return raw["agent_pos"][0].copy(), follow["agent_pos"][0].copy()

    first, follow = positions(11)
    again, follow_again = positions(11)
    other, _ = positions(12)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(follow, follow_again)
    for changed in (other, follow):  # push-v3: both the puck and the goal move
        assert np.linalg.norm(changed[OBJECT_XYZ] - first[OBJECT_XYZ]) > 1e-3
        assert np.linalg.norm(changed[GOAL_SLICE] - first[GOAL_SLICE]) > 1e-3
    np.testing.assert_array_equal(first[:3], other[:3])  # the hand starts where it always does


# --- the lean camera -----------------------------------------------------------------------------


def test_pixels_show_the_scene_and_change_when_the_arm_moves(pixel_env):
    raw, _ = pixel_env.reset(seed=[5])
    first = raw["pixels"]["front"][0].copy()
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert first.std() > 20.0 and len(np.unique(first.reshape(-1, 3), axis=0)) > 100
    for _ in range(10):
        raw, *_ = step(pixel_env, [1.0, 0.0, 1.0, 1.0])
    moved = raw["pixels"]["front"][0]
    changed = np.abs(moved.astype(int) - first.astype(int)).max(axis=-1) > 30
    assert changed.mean() > 0.01  # the arm's pixels
    assert preprocess_observation(raw)[IMAGE_KEY].shape == (1, 3, 64, 64)


def test_pixels_are_lerobots_camera_view_upright(pixel_env):
    """Our lean frame matches LeRobot's own full-size frame of the same scene, shrunk, far better
    than it matches the same frame turned 180° (LeRobot's corner2 fix applies)."""
    ours, _ = pixel_env.reset(seed=[5])
    ours = ours["pixels"]["front"][0].astype(np.float32)
    reference_env = LEROBOT_MW.MetaworldEnv("reach-v3", obs_type="pixels")
    try:
        reference, _ = reference_env.reset(seed=5)
    finally:
        reference_env.close()
    shrunk = (
        F.interpolate(
            torch.from_numpy(reference["pixels"].copy()).permute(2, 0, 1)[None].float(),
            size=(64, 64),
            mode="area",
        )[0]
        .permute(1, 2, 0)
        .numpy()
    )
    upright = np.abs(ours - shrunk).mean()
    turned = np.abs(ours[::-1, ::-1] - shrunk).mean()
    assert upright < 15.0 and upright < 0.5 * turned


def test_render_gives_a_video_frame(pixel_env):
    pixel_env.reset(seed=[5])
    [frame] = pixel_env.call("render")
    assert frame.shape == (VIDEO_SIZE, VIDEO_SIZE, 3) and frame.dtype == np.uint8
    assert frame.std() > 20.0


def test_the_runtimes_envs_spread_the_tasks_over_envs_and_actors():
    from lerobot.envs.metaworld import TASK_DESCRIPTIONS

    from lerobot_pirl.runtime.envs import task_description

    config = MetaWorldEnvConfig(task="reach-v3,push-v3,pick-place-v3")
    first_actor = make_envs(config, 2, first_index=0)
    second_actor = make_envs(config, 2, first_index=2)
    try:
        tasks = [task_description(env) for env in (*first_actor, *second_actor)]
    finally:
        for env in (*first_actor, *second_actor):
            env.close()
    names = ["reach-v3", "push-v3", "pick-place-v3", "reach-v3"]  # env k of actor a: task (2a + k) mod 3
    assert tasks == [TASK_DESCRIPTIONS[name] for name in names]


def test_shaping_adds_the_change_of_metaworlds_reward_over_10_and_telescopes():
    """reward = success + c·(Φ(s') − Φ(s)), Φ = dense / 10, Φ of the start := Φ after step 1, so an
    episode's shaping sums to c·(Φ_last − Φ_first): lingering near the goal earns nothing."""
    config = MetaWorldEnvConfig(task="reach-v3", shaping_coef=0.5, episode_length=60)
    [env] = make_envs(config, 1)
    raw, _ = env.reset(seed=[3])
    expert = env.envs[0].unwrapped.expert_policy
    rewards, denses, success = [], [], False
    for _ in range(60):
        result = step_env(env, expert.get_action(raw["agent_pos"][0]))
        rewards.append(result.reward)
        denses.append(result.info["dense_reward"])
        success = result.success
        if result.done:
            break
        raw = result.observation
    env.close()
    assert success and len(rewards) > 5
    shaping = [r - (i == len(rewards) - 1) for i, r in enumerate(rewards)]  # success only at the end
    assert shaping[0] == 0.0
    for t in range(1, len(rewards)):
        assert shaping[t] == pytest.approx(0.5 * (denses[t] - denses[t - 1]) / 10, abs=1e-9)
    assert sum(shaping) == pytest.approx(0.5 * (denses[-1] - denses[0]) / 10, abs=1e-9)
    with pytest.raises(ValueError, match="shaping_coef must be >= 0 and is added to the sparse reward only"):
        MetaWorldEnvConfig(task="reach-v3", shaping_coef=1.0, reward_type="dense")
