"""Bad data reaching the learner is rejected precisely and never costs good data."""

from __future__ import annotations

import functools
import queue

import pytest
import torch
from helpers.pi_rl_decisions import make_recipe, record_episode
from lerobot.transport.utils import transitions_to_bytes

from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe
from lerobot_pirl.recipes.pi_rl.transitions import RECORD, PiRLTransitionError, RecordLayout, decode_decision
from lerobot_pirl.recipes.registry import RecipeEntry
from lerobot_pirl.runtime.algorithm_adapter import RecipeUpdateError, algorithm_class
from lerobot_pirl.runtime.ingest import drain_transitions


@pytest.fixture
def recipe() -> PiRLRecipe:
    return make_recipe("flow_sde", rollout_decisions=100)


def _states(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_nan_observation_is_rejected_by_name(recipe: PiRLRecipe) -> None:
    [transition] = record_episode(recipe, _states(1, 0), actor_id=0, episode_id=0)
    transition["state"]["observation.state"][1] = float("nan")
    with pytest.raises(PiRLTransitionError, match=r"state\['observation.state'\] contains NaN or inf"):
        decode_decision(transition, recipe.record_layout)


def test_learner_drops_bad_and_oversized_messages_and_keeps_the_good(recipe: PiRLRecipe) -> None:
    good = record_episode(recipe, _states(4, 1), actor_id=0, episode_id=0)
    mixed = record_episode(recipe, _states(3, 2), actor_id=1, episode_id=0)
    mixed[1]["complementary_info"][RECORD][RecordLayout.scalar_index("policy_version")] = float("inf")
    large = record_episode(recipe, _states(6, 3), actor_id=2, episode_id=0)
    recipe.config.max_message_bytes = len(transitions_to_bytes(good)) + 2000  # the 6-decision episode is over

    # A thread queue: the learner's torch.multiprocessing queue has the same get_nowait/Empty
    # interface, but its feeder thread may not have flushed a put yet when get_nowait runs.
    messages: queue.Queue = queue.Queue()
    for episode in (good, mixed, large):
        messages.put(transitions_to_bytes(episode))
    rejected = drain_transitions(messages, recipe)  # type: ignore[arg-type]

    assert rejected == 2  # the inf decision, and the oversized message as a whole
    assert recipe.assembler.pending() == 4 + 2  # every good decision kept, incl. the bad one's neighbours
    rollout = recipe.take_rollout()
    assert [(d.actor_id, d.decision_index) for d in rollout.decisions] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
        (1, 2),
    ]


def test_exception_in_update_step_names_the_recipe() -> None:
    class Exploding:
        name = "exploding"

        def __init__(self, policy, config):
            pass

        def build_optimizers(self):
            return {}

        def update_step(self, batches, step):
            raise ZeroDivisionError("division by zero in my loss")

    from lerobot_pirl.recipes.protocol import RecipeConfig

    entry = RecipeEntry("exploding", Exploding, RecipeConfig, "exploding-dist")  # type: ignore[arg-type]
    algorithm = algorithm_class(entry)(policy=torch.nn.Linear(1, 1), config=RecipeConfig())
    with pytest.raises(
        RecipeUpdateError,
        match=r"recipe 'exploding' \(from 'exploding-dist'\) failed in "
        r"update_step at learner step 0: ZeroDivisionError: division by zero in my loss",
    ):
        algorithm.update(iter([]))


@pytest.mark.integration
def test_start_up_problems_are_refused_before_anything_starts(tmp_path) -> None:
    """Each refusal is the process's exit 2 (or a parse error) with the field, the value and what
    is accepted, before it connects or writes anything. The programs run two at a time."""
    from helpers.configs import free_port, pi_rl_learner_config, write_json
    from helpers.learner_process import at_once, run_shim

    config = pi_rl_learner_config(tmp_path / "out", free_port())
    cases = []  # (module, config path, extra args, exit code 2 expected, messages)
    gym_manipulator = [
        (
            {"type": "gym_manipulator", "name": "gym_hil", "task": "PandaPickCubeBase-v0", "fps": 10},
            "only gym-hil's wrapped tasks accept (e.g. 'PandaPickCube-v0')",
        ),
        ({"type": "gym_manipulator", "name": "real_robot", "fps": 10}, "needs env.robot and env.teleop"),
    ]
    for index, (env, message) in enumerate(gym_manipulator):
        path = write_json(tmp_path / f"robot{index}.json", {**config, "env": env})
        for module in ("lerobot_pirl.runtime.learner", "lerobot_pirl.runtime.actor"):
            cases.append((module, path, (), True, ["env.type='gym_manipulator'", message]))
    path = write_json(tmp_path / "c.json", config)
    # The tiny XVLA's config against the pick-cube env.
    action_dim = [
        "env.type='pirl_pick_cube' cannot feed policy.type='xvla'",
        "the policy reads 'observation.state' as [3] but the env gives [21]",
        "the policy acts with 2 dims but the env's action space has 4",
    ]
    cases.append(("lerobot_pirl.runtime.actor", path, (), True, action_dim))
    noise_method = ["noise_method='flow_magic' (accepted: flow_sde, flow_noise)"]
    override = ("--algorithm.noise_method=flow_magic",)
    cases.append(("lerobot_pirl.runtime.learner", path, override, False, noise_method))

    runs = [functools.partial(run_shim, module, path, *args) for module, path, args, _, _ in cases]
    for (module, _, args, exits_2, messages), result in zip(cases, at_once(*runs), strict=True):
        assert result.returncode == 2 if exits_2 else result.returncode != 0, (module, args, result.stderr)
        for message in messages:
            assert message in result.stderr, (module, args, result.stderr[-2000:])
    assert not (tmp_path / "out").exists()  # nothing connected, nothing was written


def test_learner_and_actors_bind_to_localhost_by_default() -> None:
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import ActorLearnerConfig

    from lerobot_pirl.recipes.pi_rl.config import PiRLConfig

    assert PiRLConfig().learner_host == "127.0.0.1"
    assert ActorLearnerConfig().learner_host == "127.0.0.1"  # what recipe=sac (stock loops) uses


def _fuzzed_messages(recipe: PiRLRecipe) -> tuple[list[bytes], int]:
    """Hostile or broken messages around two good episodes; returns (messages, bad items)."""
    import copy
    import io

    good_a = record_episode(recipe, _states(4, 11), actor_id=0, episode_id=0)
    good_b = record_episode(recipe, _states(3, 12), actor_id=1, episode_id=0)
    template = good_a[0]

    def variant(change) -> bytes:
        transition = copy.deepcopy(template)
        change(transition)
        return transitions_to_bytes([transition])

    def saved(obj) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    def set_scalar(name: str, value: float):
        return lambda t: t["complementary_info"][RECORD].__setitem__(RecordLayout.scalar_index(name), value)

    record_slot = lambda t, value: t["complementary_info"].__setitem__(RECORD, value)  # noqa: E731
    huge_state = lambda t: t["state"].__setitem__("observation.state", torch.zeros(3000))  # noqa: E731
    bad = [
        variant(huge_state),  # first of all: the policy cannot encode it, so it fixes no spec
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        .numpy()
        .tobytes(),  # random bytes
        transitions_to_bytes(good_a)[:700],  # a truncated torch.save payload
        saved({"not": "a list"}),
        saved([7]),  # a list, but not of transitions
        variant(lambda t: record_slot(t, t["complementary_info"][RECORD].double())),  # wrong dtype
        variant(lambda t: record_slot(t, torch.zeros(10**5))),  # an oversized record
        variant(lambda t: t["state"].__setitem__("observation.state", torch.zeros(0))),  # empty shape
        variant(
            lambda t: t["next_state"].__setitem__("observation.state", torch.zeros(3, dtype=torch.float64))
        ),
        variant(lambda t: t["complementary_info"].__setitem__("extra", torch.zeros(1))),  # extra key
        variant(lambda t: t.__setitem__("extra", 1.0)),  # an extra transition key
        variant(lambda t: t["complementary_info"][RECORD].__setitem__(-1, float("nan"))),  # NaN chain
        variant(lambda t: t["state"]["observation.state"].__setitem__(0, float("inf"))),
        variant(set_scalar("step_index", 99.0)),  # k* beyond K
        variant(set_scalar("episode_id", -3.0)),  # a negative id
        variant(lambda t: t.__setitem__("done", torch.ones(5))),
    ]
    messages = [bad[0], transitions_to_bytes(good_a), *bad[1:8], transitions_to_bytes(good_b), *bad[8:]]
    return messages, len(bad)


def test_fuzzed_messages_are_each_rejected_and_counted_and_training_goes_on() -> None:
    recipe = make_recipe("flow_sde", rollout_decisions=7)
    messages, bad = _fuzzed_messages(recipe)
    channel: queue.Queue = queue.Queue()
    for message in messages:
        channel.put(message)

    rejected = drain_transitions(channel, recipe, to_the_end=True)  # type: ignore[arg-type]

    assert rejected == bad
    assert recipe.rollout_ready() and recipe.assembler.pending() == 7  # every good decision kept
    rollout = recipe.take_rollout()
    assert sorted((d.actor_id, d.decision_index) for d in rollout.decisions) == [
        *((0, i) for i in range(4)),
        *((1, i) for i in range(3)),
    ]
    recipe.build_optimizers()
    metrics = recipe.update_step(iter([rollout]), step=0)  # the learner keeps training
    assert metrics["minibatch_steps"] > 0 and metrics["skipped_nonfinite_steps"] == 0


def test_each_fuzzed_transition_names_what_is_wrong(recipe: PiRLRecipe) -> None:
    import copy

    [good] = record_episode(recipe, _states(1, 3), actor_id=0, episode_id=0)
    recipe.accept(copy.deepcopy(good))  # fixes the observation spec
    cases = {
        "complementary_info must hold only 'pi_rl.record', got extra keys ['extra']": lambda t: t[
            "complementary_info"
        ].__setitem__("extra", torch.zeros(1)),
        "pi_rl.record must be a float32 tensor, got torch.float64": lambda t: t[
            "complementary_info"
        ].__setitem__(RECORD, t["complementary_info"][RECORD].double()),
        "transition keys differ from LeRobot's Transition: missing [], extra ['extra']": lambda t: (
            t.__setitem__("extra", 1)
        ),
        "done must be a bool, got Tensor": lambda t: t.__setitem__("done", torch.ones(2)),
        "field step_index=99.0 must be an integer in [-1, ": lambda t: t["complementary_info"][
            RECORD
        ].__setitem__(RecordLayout.scalar_index("step_index"), 99.0),
        "next_state['observation.state'] must be float32 of the policy's declared shape (3,)": lambda t: t[
            "next_state"
        ].__setitem__("observation.state", torch.zeros(5)),
        "state differs from the observations already accepted": lambda t: t["state"].__setitem__(
            "observation.language.tokens", torch.zeros(9, dtype=torch.long)
        ),
    }
    for message, change in cases.items():
        transition = copy.deepcopy(good)
        change(transition)
        with pytest.raises(PiRLTransitionError) as err:
            recipe.accept(transition)
        assert message in str(err.value)
