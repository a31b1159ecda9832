"""The memory levers of benchmarks/scale.py: its saved-activation meter counts what autograd keeps
(hand-computed), and activation checkpointing changes the update's memory, not its gradients."""

from __future__ import annotations

import pytest
import torch
from helpers.benchmarks import load_benchmark
from helpers.pi_rl_decisions import make_recipe, record_episode


@pytest.fixture(scope="module")
def scale():
    return load_benchmark("scale")


def test_meter_counts_each_saved_storage_once_and_skips_parameters(scale) -> None:
    weight = torch.nn.Parameter(torch.ones(1000))
    x = torch.rand(1000, requires_grad=True)
    with scale.SavedTensorMeter(exclude=[weight]) as meter:
        # mul saves both operands: x (1000 float32 = 4000 B) and the excluded weight. y * y saves
        # y twice, one storage (4000 B). sum saves nothing. Peak: 8000 B.
        y = x * weight
        loss = (y * y).sum()
    assert (meter.peak_bytes, meter.live_bytes) == (8000, 8000)
    loss.backward()
    del loss, y
    assert meter.live_bytes == 0
    torch.testing.assert_close(x.grad, 2 * x.detach())  # d/dx Σ(x·1)² = 2x


def _first_minibatch_gradients(recipe, scale) -> tuple[float, dict[str, torch.Tensor], int]:
    """Loss, gradients and kept activation bytes of one πRL forward/backward on the rollout."""
    for transition in record_episode(
        recipe, torch.linspace(-1, 1, 24).reshape(8, 3), actor_id=0, episode_id=0
    ):
        recipe.accept(transition)
    recipe.policy.eval()
    batch, _, _ = recipe.prepare_update(recipe.take_rollout())
    recipe.optimizer.zero_grad(set_to_none=True)
    with scale.SavedTensorMeter(exclude=list(recipe.policy.parameters())) as meter:
        loss, _ = recipe.policy.forward(batch, model="pi_rl")
    loss.backward()
    grads = {n: p.grad.clone() for n, p in recipe.policy.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads, meter.peak_bytes


def test_activation_checkpointing_keeps_less_for_backward_and_gives_the_same_gradients(scale, device) -> None:
    plain = make_recipe("flow_sde", device=device, seed=3)
    checkpointed = make_recipe("flow_sde", device=device, seed=3, activation_checkpointing=True)
    loss_a, grads_a, kept_a = _first_minibatch_gradients(plain, scale)
    loss_b, grads_b, kept_b = _first_minibatch_gradients(checkpointed, scale)
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grads_a.keys() == grads_b.keys() and any(k.startswith("model.transformer.blocks") for k in grads_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    assert kept_b < kept_a
    # The blocks' internals are recomputed in backward, so their states are no longer kept; the
    # saved tensors left are the blocks' inputs and what lies outside them.
    assert set(checkpointed.policy.state_dict()) == set(plain.policy.state_dict())
