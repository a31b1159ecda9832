"""πRL's algorithm is policy-agnostic: it runs on any `FlowPolicyAdapter` — XVLA's and a toy's.

The toy (``helpers.toy_flow_policy``) is a second flow-matching policy written the way a third
party would (one file: the policy class, its adapter, the registration hook), so these tests show
that the contract is enough for sampling, scoring, the loss and the recipe's update, and that the
registry resolves adapters by policy type.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.distributions import make_distribution
from helpers.toy_flow_policy import STATE_KEY, PiRLToyFlowPolicy, ToyFlowAdapter, ToyFlowConfig
from helpers.xvla_batches import make_pi_rl_policy, observations
from torch.distributions import Normal

from lerobot_pirl import discover
from lerobot_pirl.flow_rl import (
    EncodedObservation,
    FlowAdapterError,
    FlowAdapterRegistry,
    FlowPolicyAdapter,
    PiRLHeads,
    PiRLLossConfig,
    PiRLOutputs,
    PiRLSampling,
    pi_rl_loss,
)
from lerobot_pirl.flow_rl.math import flow_sde_sigmas, flow_sde_step, ode_step_mean
from lerobot_pirl.policies import (
    PI_RL_ADVANTAGE,
    PI_RL_CHAIN,
    PI_RL_OLD_TOKEN_LOG_PROB,
    PI_RL_OLD_VALUE,
    PI_RL_RETURN,
    PI_RL_STEP_INDEX,
)
from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe
from lerobot_pirl.recipes.pi_rl.transitions import encode_decision

BATCH = 6


def toy_policy(noise_method: str = "flow_sde", seed: int = 0) -> PiRLToyFlowPolicy:
    torch.manual_seed(seed)
    policy = PiRLToyFlowPolicy(ToyFlowConfig())
    heads = PiRLHeads.for_policy(policy, noise_head=noise_method == "flow_noise", value_hidden_dims=(8,))
    policy.attach_pi_rl(heads, PiRLSampling(noise_method=noise_method))
    return policy


def toy_batch(seed: int = 1) -> dict[str, torch.Tensor]:
    return {STATE_KEY: torch.rand(BATCH, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1}


def test_both_adapters_satisfy_the_protocol() -> None:
    xvla, _ = make_pi_rl_policy()
    for policy, batch in ((xvla, observations(xvla, 2)), (toy_policy(), toy_batch())):
        adapter = policy.flow_adapter()
        assert isinstance(adapter, FlowPolicyAdapter)
        assert isinstance(adapter.encode(batch), EncodedObservation)
        assert adapter.real_action_dim <= adapter.model_action_dim


def test_flow_sde_sample_on_the_toy_is_one_gaussian_step_at_k_star_and_odes_elsewhere() -> None:
    policy = toy_policy("flow_sde")
    adapter, sampling = policy.pi_rl_adapter, policy.pi_rl_sampling
    batch = toy_batch()
    actions, record = policy.sample_actions(batch, generator=torch.Generator().manual_seed(3))
    K, H, D = sampling.num_steps, sampling.executed_steps, adapter.real_action_dim  # 4, 2, 2
    assert record.chain.shape == (BATCH, K + 1, 3, 3) and actions.shape == (BATCH, 3, 2)
    assert torch.equal(actions, record.chain[:, -1, :, :2])

    # By hand: every step but k* is the deterministic Euler step; the k* step's density is the
    # Gaussian of flow_sde_step, counted over the H'=2 executed steps and the 2 real dims only.
    with torch.no_grad():
        obs = adapter.encode(batch)
        sigmas = flow_sde_sigmas(K, sampling.noise_level)
        expected = torch.zeros(BATCH)
        for k in range(K):
            x_k, t = record.chain[:, k], torch.full((BATCH,), 1.0 - k / K)
            x0_hat = adapter.predict_clean_action(obs, x_k, t)
            ode = ode_step_mean(x_k, x0_hat, t.view(-1, 1, 1), 1 / K)
            mean, std = flow_sde_step(x_k, x0_hat, t.view(-1, 1, 1), 1 / K, sigmas[k].expand(BATCH, 1, 1))
            for b in range(BATCH):
                if k != int(record.step_index[b]):
                    torch.testing.assert_close(record.chain[b, k + 1], ode[b])
                    continue
                density = Normal(mean[b, :H, :D], std[b].expand(H, D))
                expected[b] = density.log_prob(record.chain[b, k + 1, :H, :D]).sum()
    torch.testing.assert_close(record.log_prob, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("noise_method", ["flow_sde", "flow_noise"])
def test_the_toy_rescores_its_own_chains_and_the_loss_trains_only_what_it_should(noise_method) -> None:
    policy = toy_policy(noise_method)
    for parameter in policy.flow_adapter().vlm_parameters():
        parameter.requires_grad_(False)
    batch = toy_batch()
    _, record = policy.sample_actions(batch, generator=torch.Generator().manual_seed(4))
    training = {
        **batch,
        PI_RL_CHAIN: record.chain,
        PI_RL_STEP_INDEX: record.step_index.float(),
        PI_RL_OLD_TOKEN_LOG_PROB: record.token_log_prob,
        PI_RL_OLD_VALUE: policy.pi_rl_value(batch),
        PI_RL_ADVANTAGE: torch.linspace(-1, 1, BATCH),
        PI_RL_RETURN: torch.ones(BATCH),
    }
    outputs = policy.pi_rl_outputs(training)
    torch.testing.assert_close(outputs.log_prob.detach(), record.log_prob, rtol=0, atol=1e-5)
    loss, metrics = policy.forward(training, model="pi_rl")
    assert metrics["ratio_max"] == pytest.approx(1.0, abs=1e-5)
    loss.backward()
    assert policy.velocity.weight.grad is not None and policy.velocity.weight.grad.abs().sum() > 0
    assert policy.encoder.weight.grad is None  # the frozen "VLM"
    stock_loss, _ = policy.forward(batch)  # model=None: the toy's own loss
    assert torch.equal(stock_loss, policy.encoder(batch[STATE_KEY]).square().mean())


def test_the_recipe_updates_a_non_xvla_policy() -> None:
    torch.manual_seed(0)
    policy = PiRLToyFlowPolicy(ToyFlowConfig())
    config = PiRLConfig(rollout_decisions=8, minibatch_size=8, update_epochs=1, value_hidden_dims=[8])
    recipe = PiRLRecipe(policy, config)
    recipe.build_optimizers()
    assert recipe.policy is policy and all(not p.requires_grad for p in policy.encoder.parameters())
    batch = toy_batch()
    actions, record = policy.sample_actions(batch)
    for i in range(8):
        row = {STATE_KEY: batch[STATE_KEY][i % BATCH]}
        recipe.accept(
            encode_decision(
                observation=row,
                next_observation=row,
                executed_actions=actions[i % BATCH, :2],
                step_rewards=torch.tensor([float(i % 2), 0.0]),
                executed_steps=2,
                terminated=i % 4 == 3,
                truncated=False,
                chain=record.chain[i % BATCH],
                step_index=int(record.step_index[i % BATCH]),
                old_token_log_prob=record.token_log_prob[i % BATCH],
                policy_version=0,
                actor_id=0,
                episode_id=i // 4,
                decision_index=i % 4,
            )
        )
    before = policy.velocity.weight.detach().clone()
    metrics = recipe.update_step(iter([recipe.take_rollout()]), step=0)
    # One minibatch step on the decisions as sampled: the recipe rescored them exactly (ratio 1).
    assert metrics["minibatch_steps"] == 1.0 and abs(metrics["ratio_max"] - 1.0) < 1e-5
    assert not torch.equal(policy.velocity.weight, before)


def test_a_third_party_adapter_is_discovered_through_an_entry_point(site: Path) -> None:
    make_distribution(site, "acme-flow", {}, {"acme-flow": "helpers.toy_flow_policy"})
    catalog = discover(blocked=())
    assert not catalog.failures
    assert catalog.adapters.resolve("toy_flow").policy_class is PiRLToyFlowPolicy
    assert catalog.adapters.resolve("toy_flow").distribution == "acme-flow"
    assert catalog.adapters.resolve("xvla").distribution == "lerobot-pirl"  # ours, the same way
    with pytest.raises(
        FlowAdapterError, match=r"policy.type='act'.*installed for: pi0, pi05, smolvla, toy_flow, xvla"
    ):
        catalog.adapters.resolve("act")


def test_registrations_that_break_the_contract_are_refused_with_the_reason() -> None:
    registry = FlowAdapterRegistry()

    class NoAdapter(PiRLToyFlowPolicy):
        flow_adapter_class = None  # type: ignore[assignment]

    class HalfAdapter:
        policy_type = "half"

        def encode(self, batch):  # the other methods are missing
            return batch

    class HalfPolicy(PiRLToyFlowPolicy):
        flow_adapter_class = HalfAdapter  # type: ignore[assignment]

    with pytest.raises(FlowAdapterError, match="flow_adapter_class"):
        registry.add(NoAdapter)
    with pytest.raises(FlowAdapterError, match="missing methods: state, predict_clean_action"):
        registry.add(HalfPolicy)
    registry.add(PiRLToyFlowPolicy)
    with pytest.raises(FlowAdapterError, match="two πRL adapters"):
        registry.add(PiRLToyFlowPolicy)
    assert isinstance(ToyFlowAdapter(PiRLToyFlowPolicy(ToyFlowConfig())), FlowPolicyAdapter)


def _ratio_case() -> tuple[PiRLOutputs, torch.Tensor, torch.Tensor]:
    """Two decisions of H'=2 tokens with token ratios [1.5, 1.0] and [0.5, 1.1] (chunk ratios 1.5
    and 0.55), advantages [1, -2]; values equal the returns, so the value loss is 0."""
    old = torch.tensor([[-1.0, -2.0], [0.5, -0.3]])
    new = (old + torch.log(torch.tensor([[1.5, 1.0], [0.5, 1.1]]))).requires_grad_()
    value = torch.tensor([0.2, -0.4])
    return PiRLOutputs(token_log_prob=new, value=value, entropy=torch.zeros(2)), old, value


@pytest.mark.parametrize(
    ("granularity", "expected_loss", "expected_clip_frac", "expected_grad"),
    [
        # Decision: min(1.5·1, 1.2·1) = 1.2 (clipped: no gradient); min(0.55·-2, 0.8·-2) = -1.6
        # (clipped: no gradient). Loss -mean(1.2, -1.6) = 0.2; both ratios outside ±0.2.
        ("decision", 0.2, 1.0, [[0.0, 0.0], [0.0, 0.0]]),
        # Token: min(1.5, 1.2) = 1.2 (clipped), 1.0·1 = 1.0 (grad -ρA/4 = -0.25), min(0.5·-2,
        # 0.8·-2) = -1.6 (clipped), 1.1·-2 = -2.2 (inside: grad -ρA/4 = 0.55). Loss -mean = 0.4.
        ("token", 0.4, 0.5, [[0.0, -0.25], [0.0, 0.55]]),
    ],
)
def test_pi_rl_loss_forms_the_ratio_per_decision_or_per_token(
    granularity, expected_loss, expected_clip_frac, expected_grad
) -> None:
    outputs, old, value = _ratio_case()
    settings = PiRLLossConfig(clip_eps=0.2, ratio_granularity=granularity)
    total, metrics = pi_rl_loss(outputs, old, value, torch.tensor([1.0, -2.0]), value, settings, "flow_sde")
    total.backward()
    assert metrics["loss_actor"] == pytest.approx(expected_loss, abs=1e-6)
    assert metrics["loss_value"] == 0.0 and total.item() == pytest.approx(expected_loss, abs=1e-6)
    assert metrics["clip_frac"] == pytest.approx(expected_clip_frac)
    torch.testing.assert_close(outputs.token_log_prob.grad, torch.tensor(expected_grad))
    # approx_kl is the chunk's in both modes: mean((ρ - 1) - log ρ) over ρ = 1.5, 0.55.
    chunk = torch.tensor([1.5, 0.55])
    assert metrics["approx_kl"] == pytest.approx(float(((chunk - 1) - chunk.log()).mean()), abs=1e-6)


def test_unknown_ratio_granularity_is_refused_with_the_accepted_values() -> None:
    with pytest.raises(ValueError, match=r"ratio_granularity='step' \(accepted: decision, token\)"):
        PiRLLossConfig(ratio_granularity="step")
    with pytest.raises(ValueError, match=r"ratio_granularity='step' \(accepted: decision, token\)"):
        PiRLConfig(ratio_granularity="step").validate()
