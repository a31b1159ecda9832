"""The πRL wire record: hand-made values survive LeRobot's transport at the documented positions."""

from __future__ import annotations

import pytest
import torch
from lerobot.transport.utils import bytes_to_transitions, transitions_to_bytes

from lerobot_pirl.recipes.pi_rl.transitions import (
    RECORD,
    SCALAR_FIELDS,
    PiRLTransitionError,
    RecordLayout,
    decode_decision,
    encode_decision,
)
from lerobot_pirl.runtime.on_policy_actor import packed_observation

LAYOUT = RecordLayout(num_points=3, chunk_size=2, model_action_dim=2, executed_steps=2)


def _decision(**overrides) -> dict:
    observation = packed_observation(
        {"observation.state": torch.tensor([0.5, -1.0]), "observation.images.front": torch.ones(3, 2, 2)}
    )
    fields = dict(
        observation=observation,
        next_observation=observation,
        executed_actions=torch.tensor([[0.1, 0.2], [0.0, 0.0]]),
        step_rewards=torch.tensor([0.25]),  # the episode ended after the first of H'=2 steps
        executed_steps=2,
        terminated=True,
        truncated=False,
        chain=torch.arange(12, dtype=torch.float32).view(3, 2, 2),
        step_index=1,
        old_token_log_prob=torch.tensor([-3.5, -1.25]),
        policy_version=7,
        actor_id=2,
        episode_id=41,
        decision_index=5,
    )
    return encode_decision(**{**fields, **overrides})


def test_record_layout_and_round_trip_through_lerobot_transport() -> None:
    [received] = bytes_to_transitions(transitions_to_bytes([_decision()]))

    assert list(received["complementary_info"]) == [RECORD]
    record = received["complementary_info"][RECORD]
    assert record.dtype == torch.float32 and record.shape == (LAYOUT.numel,) == (5 + 2 + 2 + 12,)
    assert record[:5].tolist() == [1.0, 7.0, 2.0, 41.0, 5.0]  # SCALAR_FIELDS order
    assert record[5:7].tolist() == [0.25, 0.0]  # step rewards, zero-padded to H'
    assert record[7:9].tolist() == [-3.5, -1.25]  # the behaviour policy's token log-probs
    assert record[9:].tolist() == list(range(12))  # the chain, flattened
    assert torch.equal(received["action"], torch.tensor([[0.1, 0.2], [0.0, 0.0]]))
    assert received["action"].untyped_storage().data_ptr() == record.untyped_storage().data_ptr()

    decision = decode_decision(received, LAYOUT)
    assert torch.equal(decision.chain, torch.arange(12, dtype=torch.float32).view(3, 2, 2))
    assert decision.step_index == 1 and decision.old_token_log_prob.tolist() == [-3.5, -1.25]
    assert (decision.policy_version, decision.actor_id, decision.episode_id, decision.decision_index) == (
        7,
        2,
        41,
        5,
    )
    assert decision.reward == 0.25 and decision.terminated and not decision.truncated
    assert torch.equal(decision.observation["observation.state"], torch.tensor([0.5, -1.0]))


def test_packed_observation_is_one_storage_with_the_same_values() -> None:
    state, image, tokens = torch.randn(5), torch.rand(3, 4, 4), torch.arange(6)
    packed = packed_observation({"s": state, "img": image, "tok": tokens})
    assert torch.equal(packed["s"], state) and torch.equal(packed["img"], image)
    assert packed["tok"] is tokens  # int64 token ids are left alone (shared across decisions)
    assert packed["s"].untyped_storage().data_ptr() == packed["img"].untyped_storage().data_ptr()


@pytest.mark.parametrize("field", SCALAR_FIELDS)
def test_a_non_finite_scalar_is_rejected_by_name(field: str) -> None:
    transition = _decision()
    transition["complementary_info"][RECORD][RecordLayout.scalar_index(field)] = float("nan")
    with pytest.raises(PiRLTransitionError, match=rf"pi_rl.record field {field} contains NaN or inf"):
        decode_decision(transition, LAYOUT)


def test_a_non_finite_token_log_prob_is_rejected_by_name() -> None:
    transition = _decision()
    transition["complementary_info"][RECORD][LAYOUT.log_probs_start + 1] = float("-inf")
    with pytest.raises(PiRLTransitionError, match=r"field old_token_log_prob contains NaN or inf"):
        decode_decision(transition, LAYOUT)


def test_one_token_log_prob_per_executed_step_is_required_at_the_actor() -> None:
    with pytest.raises(PiRLTransitionError, match=r"old_token_log_prob has 1 values, expected one per"):
        _decision(old_token_log_prob=torch.tensor([-3.5]))


def test_out_of_range_ids_and_step_counts_are_refused_at_the_actor() -> None:
    with pytest.raises(PiRLTransitionError, match=r"episode_id=16777216 must be in \[0, 2\*\*24\)"):
        _decision(episode_id=2**24)
    with pytest.raises(PiRLTransitionError, match=r"executes 1..2 env steps, got 3"):
        _decision(step_rewards=torch.zeros(3))
    with pytest.raises(PiRLTransitionError, match=r"executed_actions has 1 rows, expected H'=2"):
        _decision(executed_actions=torch.zeros(1, 2))
