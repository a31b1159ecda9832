"""The pi-rl actor's multi-env loop: batched sampling, per-env episodes, one policy version each."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lerobot_pirl.envs.pick_cube import ACTION_DIM, STATE_DIM, PickCubeEnvConfig  # noqa: E402
from lerobot_pirl.policies import PI_RL_CHAIN, PI_RL_STEP_INDEX  # noqa: E402
from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config  # noqa: E402
from lerobot_pirl.recipes.pi_rl.config import PiRLConfig  # noqa: E402
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe  # noqa: E402
from lerobot_pirl.recipes.pi_rl.transitions import RecordLayout  # noqa: E402
from lerobot_pirl.runtime.envs import make_envs  # noqa: E402
from lerobot_pirl.runtime.on_policy_actor import BatchedEpisodes  # noqa: E402
from lerobot_pirl.runtime.processors import PolicyIO  # noqa: E402

pytestmark = pytest.mark.timeout(240)
EPISODE_STEPS = 8  # 4 decisions of H' = 2
ENV = PickCubeEnvConfig(episode_length=EPISODE_STEPS, physics_dt=0.005)


def _recipe(seed: int = 0) -> PiRLRecipe:
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    torch.manual_seed(seed)
    config = tiny_xvla_config(
        STATE_DIM, ACTION_DIM, chunk_size=4, n_action_steps=2, num_denoising_steps=3, hidden_size=32, depth=1
    )
    policy = XVLAPolicy(config)
    return PiRLRecipe(
        policy, PiRLConfig(policy_config=config, noise_method="flow_sde", value_hidden_dims=[8])
    )


def _rescored_log_probs(policy, decisions) -> torch.Tensor:
    from lerobot_pirl.recipes.pi_rl.transitions import RecordLayout, decode_decision

    decoded = [decode_decision(t, RecordLayout.for_policy(policy)) for t in decisions]
    batch = {k: torch.stack([d.observation[k] for d in decoded]) for k in decoded[0].observation}
    batch[PI_RL_CHAIN] = torch.stack([d.chain for d in decoded])
    batch[PI_RL_STEP_INDEX] = torch.tensor([float(d.step_index) for d in decoded])
    with torch.no_grad():
        return policy.pi_rl_outputs(batch).log_prob, torch.stack(
            [d.old_token_log_prob.sum() for d in decoded]
        )


@pytest.fixture
def envs():
    made = make_envs(ENV, 3)  # LeRobot's make_env, one single-env vector env each
    yield made
    for env in made:
        env.close()


def _runner(envs, recipe, actor_id: int) -> BatchedEpisodes:
    io = PolicyIO.for_policy(recipe.policy.config, ENV)
    return BatchedEpisodes(envs, io, recipe, actor_id, seeds=list(range(len(envs))))


def test_three_envs_make_whole_single_version_episodes_with_one_sampling_call_per_step(envs) -> None:
    recipe = _recipe()
    runner = _runner(envs, recipe, actor_id=5)
    calls = []
    sample = recipe.policy.sample_actions
    recipe.policy.sample_actions = lambda batch: (
        calls.append(len(batch["observation.state"])) or sample(batch)
    )
    finished = []
    for _ in range(8):
        finished += runner.step()
    assert calls == [3] * 8  # every env's decision in one batched call
    assert len(finished) == 6  # each env: two 8-step episodes (the random policy never lifts)
    assert sorted(e.episode_id for e in finished) == list(range(6))
    for episode in finished:
        records = [t["complementary_info"]["pi_rl.record"] for t in episode.decisions]
        assert episode.env_steps == EPISODE_STEPS and len(records) == EPISODE_STEPS // 2

        def field(name: str, records: list = records) -> list[float]:
            return [r[RecordLayout.scalar_index(name)].item() for r in records]

        assert field("decision_index") == [0, 1, 2, 3]
        # The task's token ids are one tensor per episode (the transport stores them once).
        tokens = {id(t["state"]["observation.language.tokens"]) for t in episode.decisions}
        assert len(tokens) == 1
        assert set(field("episode_id")) == {episode.episode_id} and set(field("actor_id")) == {5}
        assert bool(episode.decisions[-1]["truncated"]) and not any(t["done"] for t in episode.decisions)
    # The three envs have their own block positions (distinct seeds).
    first_states = {tuple(e.decisions[0]["state"]["observation.state"][18:20].tolist()) for e in finished}
    assert len(first_states) == 6


def test_weights_arriving_mid_episode_leave_running_episodes_on_their_version(envs) -> None:
    recipe = _recipe()
    runner = _runner(envs[:2], recipe, actor_id=0)
    old_policy = _recipe().policy  # same seed: the version-0 weights
    finished = runner.step()  # both envs one decision into their first episode
    assert not finished and not runner.wants_weights()

    new_weights = recipe.actor_weights()
    new_weights["policy"] = {k: v + 0.05 * torch.randn_like(v) for k, v in new_weights["policy"].items()}
    new_weights["policy_version"] = torch.tensor(1)
    runner.freeze_live_episodes()  # what the actor does right before loading
    recipe.load_actor_weights(new_weights, device="cpu")

    while len(finished) < 4:
        finished += runner.step()
    by_version = {v: [e for e in finished if e.policy_version == v] for v in (0, 1)}
    assert len(by_version[0]) == 2 and len(by_version[1]) == 2  # first episodes stay on version 0
    for version, scorer in ((0, old_policy), (1, recipe.policy)):
        for episode in by_version[version]:
            scorer.attach_pi_rl(recipe.heads, recipe.policy.pi_rl_sampling)
            rescored, recorded = _rescored_log_probs(scorer, episode.decisions)
            torch.testing.assert_close(rescored, recorded, rtol=0, atol=1e-4)  # its own sampler
    wrong, recorded = _rescored_log_probs(recipe.policy, by_version[0][0].decisions)
    assert (wrong - recorded).abs().max() > 1e-2  # the new weights would have scored it differently
    assert runner._frozen == {}  # the frozen copy is gone once its episodes ended


def test_transitions_carry_the_preprocessed_observation_the_learner_rescores(envs) -> None:
    """The learner re-scores ``state`` / ``next_state`` of each transition: the observation after the
    policy's LeRobot preprocessor (tokenised task, XVLA image steps, domain id, normalised state). It
    is the one the actor sampled from, bit for bit, and survives the transport's byte encoding."""
    from lerobot.transport.utils import bytes_to_transitions, transitions_to_bytes

    from lerobot_pirl.runtime.envs import task_description

    recipe = _recipe()
    runner = _runner(envs[:1], recipe, actor_id=0)
    finished = []
    while not finished:
        finished += runner.step()
    [episode] = finished
    [fresh] = make_envs(ENV, 1)
    try:
        raw, _ = fresh.reset(seed=0)  # env 0's first reset seed in `_runner`
        expected = runner.io.observation(raw, task_description(fresh))
    finally:
        fresh.close()
    first = episode.decisions[0]["state"]
    assert set(first) == {
        "observation.state",
        "observation.images.front",
        "observation.language.tokens",
        "observation.language.attention_mask",
        "domain_id",
    }
    for key, value in expected.items():
        assert torch.equal(first[key], value[0]), key
    for earlier, later in zip(episode.decisions, episode.decisions[1:], strict=False):
        for key in earlier["next_state"]:
            assert torch.equal(earlier["next_state"][key], later["state"][key]), key
    received = bytes_to_transitions(transitions_to_bytes(episode.decisions))
    for sent, got in zip(episode.decisions, received, strict=True):
        for part in ("state", "next_state"):
            for key, value in sent[part].items():
                assert got[part][key].dtype == value.dtype and torch.equal(got[part][key], value), key


def test_observations_preprocessed_together_equal_one_env_at_a_time_and_own_their_storage(envs) -> None:
    """The actor preprocesses all pending envs in one pipeline call; every value must equal what a
    call for that env alone gives, and no row may be a view into the batch (it would put the whole
    batch's storage on the wire)."""
    recipe = _recipe()
    runner = _runner(envs, recipe, actor_id=0)
    raws = {index: env.reset(seed=[10 + index])[0] for index, env in enumerate(envs)}
    together = runner._policy_observations(raws)
    for index, raw in raws.items():
        alone = runner.io.observation(raw, runner.tasks[index])
        assert together[index].keys() == alone.keys()
        for key, value in together[index].items():
            assert torch.equal(value, alone[key][0]), key
            expected_bytes = sum(
                v.numel() * v.element_size() for v in together[index].values() if v.is_floating_point()
            )
            storage = value.untyped_storage().nbytes()
            assert storage == (
                expected_bytes if value.is_floating_point() else value.numel() * value.element_size()
            )
    states = torch.stack([together[i]["observation.state"] for i in raws])
    assert len({tuple(s.tolist()) for s in states}) == 3  # three different resets, three rows


def test_success_is_read_under_lerobots_and_gym_keys_or_the_configured_one() -> None:
    from lerobot_pirl.runtime.envs import EnvStep

    def step(info: dict) -> EnvStep:
        return EnvStep({}, 0.0, True, False, info, None)

    assert step({"is_success": np.array([True])}).success  # LeRobot's key
    assert step({"success": True, "is_success": np.array([False])}).success is False  # LeRobot's first
    assert step({"succeed": np.array([True])}).success  # gym-hil's
    assert not step({"solved": True}).success and step({"solved": True}).success_key(None) is None
    assert step({"solved": np.array([True]), "is_success": False}).success_under("solved")
    assert not step({"is_success": True}).success_under("solved")  # the named key only


def test_an_env_without_a_success_key_gets_one_warning(envs, caplog) -> None:
    recipe = _recipe()
    io = PolicyIO.for_policy(recipe.policy.config, ENV)
    runner = BatchedEpisodes(envs, io, recipe, 0, seeds=[0, 1, 2], success_key="solved")
    finished = []
    with caplog.at_level(logging.WARNING):
        for _ in range(8):
            finished += runner.step()
    warnings = [r.getMessage() for r in caplog.records if "reports no success" in r.getMessage()]
    assert len(finished) == 6 and not any(e.success for e in finished)
    assert len(warnings) == 1 and "looked for 'solved'" in warnings[0]
    assert "algorithm.success_key" in warnings[0]
