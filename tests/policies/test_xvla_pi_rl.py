"""Value tests for the πRL XVLA mixin (lerobot_pirl.policies.xvla_pi_rl).

Expected values are recomputed independently: the stock XVLA pieces are called by hand and the
Gaussians come from torch.distributions, with the πRL formulas written out in the test.
"""

from __future__ import annotations

import logging
import math
import warnings

import pytest
import torch
from helpers.xvla_batches import (
    ACTION_DIM,
    CHUNK,
    EXECUTED,
    STEPS,
    make_pi_rl_policy,
    observations,
    training_batch,
)
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy
from lerobot.utils.constants import ACTION
from torch.distributions import Normal
from torch.testing import assert_close

from lerobot_pirl.flow_rl import clipped_value_loss, ode_step_mean
from lerobot_pirl.policies import (
    PI_RL_CHAIN,
    PI_RL_STEP_INDEX,
    PiRLHeads,
    PiRLLossConfig,
    PiRLSampling,
    PiRLXVLAPolicy,
)

METHODS = ["flow_sde", "flow_noise"]
BATCH = 16


def clean_action(policy: XVLAPolicy, observation: dict, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x̂₀ at (x_t, t [B]) from the stock XVLA pieces, called by hand (float32 policies)."""
    model = policy.model
    inputs = policy._build_model_inputs(observation)
    enc = model.forward_vlm(inputs["input_ids"], inputs["image_input"], inputs["image_mask"])
    proprio, x_model = model.action_space.preprocess(inputs["proprio"], x_t)
    return model.transformer(
        domain_id=inputs["domain_id"], action_with_noise=x_model, proprio=proprio, t=t, **enc
    )


def stock_copy(policy: PiRLXVLAPolicy) -> XVLAPolicy:
    """A plain stock XVLAPolicy with the same config and weights."""
    stock = XVLAPolicy(policy.config)
    stock.load_state_dict(policy.state_dict(), strict=True)
    return stock


def rollout(policy: PiRLXVLAPolicy, seed: int = 7, batch_size: int = BATCH):
    """Sample with the attached noise method; returns (observation, actions, record)."""
    observation = observations(policy, batch_size)
    actions, record = policy.sample_actions(observation, generator=torch.Generator().manual_seed(seed))
    return observation, actions, record


def ppo_batch(policy: PiRLXVLAPolicy, seed: int = 7) -> dict:
    observation, _, record = rollout(policy, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    advantage = torch.randn(BATCH, generator=generator)
    returns = policy.pi_rl_value(observation) + torch.randn(BATCH, generator=generator)
    return training_batch(policy, observation, record, advantage, returns)


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("action_mode,action_dim", [("auto", ACTION_DIM), ("ee6d", 20)])
def test_native_mode_reproduces_stock_predict_action_chunk(action_mode, action_dim):
    policy, _ = make_pi_rl_policy(action_mode=action_mode, action_dim=action_dim)
    stock = stock_copy(policy)
    observation = observations(policy, BATCH)

    torch.manual_seed(123)
    expected = stock.predict_action_chunk(observation)
    torch.manual_seed(123)
    actions, record = policy.sample_actions(observation, "native")

    assert torch.equal(actions, expected)
    assert record.chain.shape == (BATCH, STEPS + 1, CHUNK, 20)
    torch.manual_seed(123)
    assert torch.equal(record.chain[:, 0], torch.randn(BATCH, CHUNK, 20))  # stock's fixed x1
    assert torch.equal(record.step_index, torch.full((BATCH,), -1))
    assert torch.isnan(record.log_prob).all()  # a deterministic sampler has no density


def test_deterministic_mode_is_the_euler_ode_with_implied_noise():
    policy, _ = make_pi_rl_policy()
    observation = observations(policy, BATCH)
    actions, record = policy.sample_actions(observation, "deterministic", torch.Generator().manual_seed(5))

    assert torch.equal(
        record.chain[:, 0], torch.randn(BATCH, CHUNK, 20, generator=torch.Generator().manual_seed(5))
    )
    with torch.no_grad():
        x = record.chain[:, 0]
        expected = [x]
        for k in range(STEPS):
            t = 1.0 - k / STEPS
            x0_hat = clean_action(policy, observation, x, torch.full((BATCH,), t))
            x = ode_step_mean(x, x0_hat, t, 1.0 / STEPS)
            expected.append(x)
    assert_close(record.chain, torch.stack(expected, dim=1), rtol=0, atol=1e-6)
    assert torch.equal(actions, record.chain[:, -1, :, :ACTION_DIM])  # auto trims to the real dims
    assert torch.isnan(record.log_prob).all()

    # Same initial noise as the native sampler; the first step agrees (x̂₁ = x1 at t=1), the
    # endpoints do not: x̂₁ differs from the fixed x1 afterwards.
    torch.manual_seed(9)
    _, native = policy.sample_actions(observation, "native")
    torch.manual_seed(9)
    _, euler = policy.sample_actions(observation, "deterministic")
    assert torch.equal(native.chain[:, 0], euler.chain[:, 0])
    assert_close(native.chain[:, 1], euler.chain[:, 1], rtol=0, atol=1e-6)
    assert (native.chain[:, -1] - euler.chain[:, -1]).abs().max() > 1e-3


def test_pi_rl_value_is_the_scoring_value_dropout_free_and_leaves_the_mode():
    policy, _ = make_pi_rl_policy("flow_noise")
    batch = ppo_batch(policy)
    observation = {k: v for k, v in batch.items() if not k.startswith("pi_rl.")}
    expected = policy.pi_rl_outputs(batch).value.detach()
    policy.train()
    assert torch.equal(policy.pi_rl_value(observation), expected)
    assert policy.training
    other = observations(policy, BATCH, seed=2)
    assert not torch.equal(policy.pi_rl_value(other), expected)


def test_sampling_runs_dropout_free_even_after_train():
    policy, _ = make_pi_rl_policy("flow_sde")
    observation = observations(policy, BATCH, seed=3)
    _, in_eval = policy.sample_actions(observation, generator=torch.Generator().manual_seed(4))
    policy.model.transformer.blocks[0].train()  # one submodule in training mode is enough to switch
    _, after_train = policy.sample_actions(observation, generator=torch.Generator().manual_seed(4))
    assert not any(m.training for m in policy.modules())
    assert torch.equal(in_eval.chain, after_train.chain) and torch.equal(
        in_eval.log_prob, after_train.log_prob
    )


def test_sampling_with_the_same_generator_is_reproducible():
    policy, _ = make_pi_rl_policy("flow_noise")
    _, actions_a, record_a = rollout(policy, seed=3)
    _, actions_b, record_b = rollout(policy, seed=3)
    _, _, record_c = rollout(policy, seed=4)
    assert torch.equal(actions_a, actions_b)
    assert torch.equal(record_a.chain, record_b.chain)
    assert torch.equal(record_a.log_prob, record_b.log_prob)
    assert not torch.equal(record_a.chain, record_c.chain)


# ----------------------------------------------------------------------------- rollout log-probs


def test_flow_sde_rollout_log_prob_matches_an_independent_recomputation():
    noise_level = 0.5
    policy, _ = make_pi_rl_policy("flow_sde", sampling={"noise_level": noise_level})
    observation, _, record = rollout(policy)
    chain, k_star, dt = record.chain, record.step_index, 1.0 / STEPS
    assert len(set(k_star.tolist())) >= 2 and k_star.min() >= 0 and k_star.max() < STEPS
    rows = torch.arange(BATCH)

    with torch.no_grad():
        # Hybrid sampling: every step but k* is the deterministic ODE step.
        for k in range(STEPS):
            t = 1.0 - k / STEPS
            ode = ode_step_mean(
                chain[:, k], clean_action(policy, observation, chain[:, k], torch.full((BATCH,), t)), t, dt
            )
            off = (chain[:, k + 1] - ode).abs().amax(dim=(-2, -1))
            assert (off[k_star != k] < 1e-5).all()
            assert (off[k_star == k] > 1e-2).all()

        # The stochastic step's density, written out: σ = a·sqrt(t/(1-t')), t' = 1-1/K at t = 1.
        t = 1.0 - k_star.double() / STEPS
        t_prime = torch.where(k_star == 0, 1.0 - 1.0 / STEPS, t)
        sigma = (noise_level * torch.sqrt(t / (1.0 - t_prime))).float().view(-1, 1, 1)
        t = t.float().view(-1, 1, 1)
        x_t = chain[rows, k_star]
        x0_hat = clean_action(policy, observation, x_t, t.view(-1))
        x1_hat = (x_t - (1 - t) * x0_hat) / t
        mean = x0_hat * (1 - t + dt) + x1_hat * (t - dt - sigma**2 * dt / (2 * t))
        std = math.sqrt(dt) * sigma
        density = Normal(mean, std).log_prob(chain[rows, k_star + 1])
    expected = density[:, :EXECUTED, :ACTION_DIM].sum(dim=(-2, -1))
    assert record.log_prob.dtype == torch.float32
    assert_close(record.log_prob, expected, rtol=1e-5, atol=1e-4)


def test_flow_noise_rollout_log_prob_matches_an_independent_recomputation():
    policy, heads = make_pi_rl_policy("flow_noise", sampling={"noise_std_min": 0.05, "noise_std_max": 0.2})
    observation, _, record = rollout(policy)
    chain, dt = record.chain, 1.0 / STEPS
    log_var_min, log_var_max = 2 * math.log(0.05), 2 * math.log(0.2)

    tokens: list[torch.Tensor] = []
    hook = policy.model.transformer.norm.register_forward_hook(lambda _m, _i, out: tokens.append(out))
    terms = [Normal(0.0, 1.0).log_prob(chain[:, 0])]
    with torch.no_grad():
        for k in range(STEPS):
            t = 1.0 - k / STEPS
            x0_hat = clean_action(policy, observation, chain[:, k], torch.full((BATCH,), t))
            x1_hat = (chain[:, k] - (1 - t) * x0_hat) / t
            mean = x0_hat * (1 - t + dt) + x1_hat * (t - dt)
            log_var = (
                log_var_min + (log_var_max - log_var_min) * (torch.tanh(heads.noise_head(tokens[-1])) + 1) / 2
            )
            std = torch.exp(log_var / 2)
            assert std.min() >= 0.05 - 1e-6 and std.max() <= 0.2 + 1e-6
            terms.append(Normal(mean, std).log_prob(chain[:, k + 1]))
    hook.remove()
    per_element = torch.stack(terms).mean(dim=0)
    expected = per_element[:, :EXECUTED, :ACTION_DIM].sum(dim=(-2, -1))
    assert_close(record.log_prob, expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(record.step_index, torch.full((BATCH,), -1))


@pytest.mark.parametrize("method", METHODS)
def test_log_prob_counts_only_executed_steps_and_real_dims(method):
    policy, _ = make_pi_rl_policy(method)
    batch = ppo_batch(policy)
    if method == "flow_sde":
        batch[PI_RL_STEP_INDEX] = torch.full((BATCH,), STEPS - 1)  # score the final step
    reference = policy.pi_rl_outputs(batch).log_prob.detach()

    # x_{t_K} is only scored, never fed back: its padded dims and unexecuted steps must not
    # matter, one executed real element must.
    chain = batch[PI_RL_CHAIN].clone()
    chain[:, -1, :, ACTION_DIM:] += 3.0
    chain[:, -1, EXECUTED:, :] += 3.0
    assert_close(policy.pi_rl_outputs({**batch, PI_RL_CHAIN: chain}).log_prob, reference, rtol=0, atol=1e-5)
    chain[:, -1, 0, 0] += 0.5
    changed = policy.pi_rl_outputs({**batch, PI_RL_CHAIN: chain}).log_prob
    assert (changed - reference).abs().min() > 1e-3


# ----------------------------------------------------------------------------- PPO forward


@pytest.mark.parametrize("method", METHODS)
def test_ratio_is_one_for_unchanged_parameters_and_moves_after_a_step(method):
    policy, heads = make_pi_rl_policy(method)
    batch = ppo_batch(policy)
    policy.train()  # the πRL forward must still be dropout-free, like the rollout

    loss, metrics = policy.forward(batch, model="pi_rl")
    assert policy.training and policy.model.transformer.blocks[0].training  # modes restored
    assert abs(metrics["ratio_mean"] - 1.0) < 1e-5 and abs(metrics["ratio_max"] - 1.0) < 1e-5
    assert abs(metrics["approx_kl"]) < 1e-6
    assert metrics["clip_frac"] == 0.0
    expected_keys = {
        "loss", "loss_actor", "loss_value", "loss_entropy", "entropy", "approx_kl", "clip_frac",
        "ratio_mean", "ratio_max", "explained_variance", "value_mean", "log_prob_mean",
    }  # fmt: skip
    assert expected_keys <= metrics.keys() and all(isinstance(v, float) for v in metrics.values())
    assert metrics["loss"] == pytest.approx(loss.item())
    # ρ = 1 makes the surrogate -mean(Â).
    assert metrics["loss_actor"] == pytest.approx(-batch["pi_rl.advantage"].mean().item(), abs=1e-5)

    params = [p for p in policy.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        new_log_prob = policy.pi_rl_outputs(batch).log_prob
    assert (new_log_prob - batch["pi_rl.old_token_log_prob"].sum(-1)).abs().max() > 1e-3
    _, after = policy.forward(batch, model="pi_rl")
    assert after["approx_kl"] > 1e-6


def test_flow_noise_loss_includes_the_entropy_bonus_and_flow_sde_does_not():
    for method, coef in (("flow_noise", 0.1), ("flow_sde", 0.1)):
        policy, _ = make_pi_rl_policy(method)
        policy.attach_pi_rl(policy.pi_rl_heads, policy.pi_rl_sampling, PiRLLossConfig(entropy_coef=coef))
        _, metrics = policy.forward(ppo_batch(policy), model="pi_rl")
        expected_bonus = -coef * metrics["entropy"] if method == "flow_noise" else 0.0
        assert metrics["loss_entropy"] == pytest.approx(expected_bonus, abs=1e-7)
        total = metrics["loss_actor"] + metrics["loss_value"] + metrics["loss_entropy"]
        assert metrics["loss"] == pytest.approx(total, abs=1e-6)
    # Flow-Noise entropy: mean ½·log(2πe·σ²) with σ in the std bounds [0.08, 0.16].
    low, high = (0.5 * math.log(2 * math.pi * math.e * s**2) for s in (0.08, 0.16))
    policy, _ = make_pi_rl_policy("flow_noise")
    entropy = policy.pi_rl_outputs(ppo_batch(policy)).entropy
    assert entropy.shape == (BATCH,) and ((entropy > low) & (entropy < high)).all()


def test_frozen_vlm_parts_get_no_gradient_and_a_frozen_vlm_runs_without_autograd():
    policy, _ = make_pi_rl_policy(freeze_vision_encoder=True, freeze_language_encoder=True)
    grad_modes: list[bool] = []
    policy.model.vlm.language_model.encoder.register_forward_hook(
        lambda *_: grad_modes.append(torch.is_grad_enabled())
    )
    batch = ppo_batch(policy)
    grad_modes.clear()
    loss, _ = policy.forward(batch, model="pi_rl")
    loss.backward()
    vlm = policy.model.vlm
    frozen = list(vlm.vision_tower.parameters()) + list(vlm.language_model.encoder.parameters())
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is None for p in vlm.language_model.shared.parameters())
    # Stock freezing leaves the multimodal projector trainable, so the VLM still runs with autograd.
    assert grad_modes == [True]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vlm.multi_modal_projector.parameters())
    assert all(p.grad is not None for p in policy.model.transformer.action_decoder.parameters())

    for p in vlm.parameters():
        p.requires_grad_(False)
    grad_modes.clear()
    loss, _ = policy.forward(batch, model="pi_rl")
    assert grad_modes == [False] and loss.requires_grad


@pytest.mark.parametrize("detach", [True, False])
def test_value_loss_alone_moves_no_actor_parameter_when_detached(detach):
    policy, heads = make_pi_rl_policy("flow_noise", detach_value_input=detach)  # VLM trainable (stock)
    batch = ppo_batch(policy)
    outputs = policy.pi_rl_outputs(batch)
    clipped_value_loss(outputs.value, batch["pi_rl.old_value"], batch["pi_rl.return"], 0.2, 10.0).backward()

    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.value_head.parameters())
    assert all(p.grad is None for p in heads.noise_head.parameters())
    actor_grads = [p.grad for p in policy.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    if detach:
        assert actor_grads == []
    else:  # the test can fail: without detaching, the critic trains the shared VLM
        assert len(actor_grads) > 0


def test_default_forward_is_the_stock_sft_loss_and_other_models_are_rejected():
    policy, _ = make_pi_rl_policy()
    stock = stock_copy(policy)
    batch = observations(policy, BATCH)
    batch[ACTION] = torch.rand(BATCH, CHUNK, ACTION_DIM)
    policy.train()
    stock.train()
    torch.manual_seed(11)
    loss, metrics = policy.forward(batch)
    torch.manual_seed(11)
    expected_loss, expected_metrics = stock.forward(batch)
    assert torch.equal(loss, expected_loss) and metrics == expected_metrics
    with pytest.raises(ValueError, match=r"None, 'pi_rl'"):
        policy.forward(batch, model="ppo")


# ----------------------------------------------------------------------------- checkpoints


def test_policy_state_dict_is_stock_and_heads_stay_outside():
    policy, heads = make_pi_rl_policy("flow_noise")
    stock = XVLAPolicy(policy.config)
    assert policy.state_dict().keys() == stock.state_dict().keys()
    assert policy.name == "xvla" and policy.config.type == "xvla"
    head_ids = {id(p) for p in heads.parameters()}
    assert head_ids and not head_ids & {id(p) for p in policy.parameters()}


def test_pi_rl_checkpoint_loads_strictly_in_stock_xvla(tmp_path, caplog):
    policy, heads = make_pi_rl_policy("flow_sde")
    batch = ppo_batch(policy)
    loss, _ = policy.forward(batch, model="pi_rl")  # fine-tune a step so weights are not just init
    loss.backward()
    torch.optim.SGD(policy.parameters(), lr=0.1).step()
    policy.save_pretrained(tmp_path / "policy")

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        stock = XVLAPolicy.from_pretrained(tmp_path / "policy")
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert type(stock) is XVLAPolicy and stock.config.type == "xvla"
    expected = policy.state_dict()
    loaded = stock.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)

    observation = observations(policy, BATCH)
    torch.manual_seed(21)
    native, _ = policy.sample_actions(observation, "native")
    torch.manual_seed(21)
    assert torch.equal(stock.predict_action_chunk(observation), native)

    reloaded = PiRLXVLAPolicy.from_pretrained(tmp_path / "policy")
    assert type(reloaded) is PiRLXVLAPolicy and reloaded.state_dict().keys() == expected.keys()


def test_heads_state_dict_round_trips_exactly(tmp_path):
    policy, heads = make_pi_rl_policy("flow_noise")
    torch.save(heads.state_dict(), tmp_path / "heads.pt")
    torch.manual_seed(99)
    fresh = PiRLHeads.for_policy(policy, noise_head=True, value_hidden_dims=(32, 32), noise_hidden_dim=32)
    assert not torch.equal(fresh.value_head[0].weight, heads.value_head[0].weight)
    fresh.load_state_dict(torch.load(tmp_path / "heads.pt", weights_only=True), strict=True)
    expected = heads.state_dict()
    assert fresh.state_dict().keys() == expected.keys()
    assert all(torch.equal(fresh.state_dict()[key], expected[key]) for key in expected)


# ----------------------------------------------------------------------------- action modes, dtypes


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("action_mode,action_dim", [("auto", ACTION_DIM), ("ee6d", 20)])
def test_action_modes_sample_and_train(method, action_mode, action_dim):
    policy, _ = make_pi_rl_policy(method, action_mode=action_mode, action_dim=action_dim)
    assert policy.pi_rl_action_dim == action_dim  # auto: the action feature; ee6d: all 20 dims
    observation, actions, record = rollout(policy)
    final = record.chain[:, -1]
    assert actions.shape == (BATCH, CHUNK, action_dim)
    if action_mode == "ee6d":  # ee6d's postprocess squashes the two gripper channels
        grippers = [9, 19]
        assert_close(actions[..., grippers], torch.sigmoid(final[..., grippers]))
        others = [d for d in range(20) if d not in grippers]
        assert torch.equal(actions[..., others], final[..., others])
    else:
        assert torch.equal(actions, final[..., :action_dim])
    assert torch.isfinite(record.log_prob).all()

    batch = training_batch(policy, observation, record, torch.randn(BATCH), torch.randn(BATCH))
    loss, metrics = policy.forward(batch, model="pi_rl")
    loss.backward()
    assert abs(metrics["ratio_max"] - 1.0) < 1e-5
    assert policy.model.transformer.action_decoder.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", METHODS)
def test_bfloat16_policy_keeps_log_probs_and_values_in_float32(method):
    policy, _ = make_pi_rl_policy(method, dtype="bfloat16")
    assert policy.model.transformer.action_decoder.fc.weight.dtype == torch.bfloat16
    observation = observations(policy, BATCH)
    stock = stock_copy(policy)
    torch.manual_seed(4)
    expected = stock.predict_action_chunk(observation)
    torch.manual_seed(4)
    native, _ = policy.sample_actions(observation, "native")
    assert native.dtype == torch.bfloat16 and torch.equal(native, expected)

    _, actions, record = rollout(policy)
    assert actions.dtype == record.chain.dtype == record.log_prob.dtype == torch.float32
    assert policy.pi_rl_value(observations(policy, BATCH)).dtype == torch.float32
    assert torch.isfinite(record.log_prob).all()
    batch = training_batch(policy, observation, record, torch.randn(BATCH), torch.randn(BATCH))
    outputs = policy.pi_rl_outputs(batch)
    assert outputs.log_prob.dtype == outputs.value.dtype == outputs.entropy.dtype == torch.float32
    assert_close(outputs.log_prob, record.log_prob, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"noise_method": "ddpm"}, r"noise_method='ddpm' \(accepted: flow_sde, flow_noise\)"),
        ({"num_steps": 0}, r"num_steps=0 \(must be ≥ 1"),
        ({"noise_level": 0.0}, r"noise_level=0.0 \(must be > 0"),
        (
            {"noise_std_min": 0.2, "noise_std_max": 0.1},
            r"noise_std_min=0.2, noise_std_max=0.1 \(need 0 < min ≤ max\)",
        ),
        ({"executed_steps": 0}, r"executed_steps=0 \(must be ≥ 1"),
    ],
)
def test_sampling_config_rejects_bad_values(fields, match):
    with pytest.raises(ValueError, match=match):
        PiRLSampling(**fields)


def test_attach_and_sample_reject_inconsistent_setups():
    policy, heads = make_pi_rl_policy("flow_sde")
    with pytest.raises(ValueError, match=rf"executed_steps=5 \(must be in \[1, chunk_size={CHUNK}\]\)"):
        policy.attach_pi_rl(heads, PiRLSampling(executed_steps=5))
    with pytest.raises(ValueError, match="noise_head=True"):
        policy.attach_pi_rl(heads, PiRLSampling(noise_method="flow_noise"))
    with pytest.raises(ValueError, match="dims"):
        policy.attach_pi_rl(PiRLHeads(8, 3, 32, 20, noise_head=False))
    observation = observations(policy, 2)
    with pytest.raises(ValueError, match="noise_method='flow_sde'"):
        policy.sample_actions(observation, "flow_noise")
    with pytest.raises(ValueError, match=r"mode must be one of"):
        policy.sample_actions(observation, "ode")
    with pytest.raises(ValueError, match=r"invalid πRL loss settings: clip_eps=0.0 \(must be > 0\)"):
        PiRLLossConfig(clip_eps=0.0)
    unattached = PiRLXVLAPolicy(policy.config)
    with pytest.raises(RuntimeError, match="attach_pi_rl"):
        unattached.sample_actions(observation)


def test_sampling_defaults_resolve_from_the_policy_config():
    policy, _ = make_pi_rl_policy("flow_sde")
    assert policy.pi_rl_sampling.num_steps == STEPS and policy.pi_rl_sampling.executed_steps == EXECUTED
    policy.attach_pi_rl(policy.pi_rl_heads, PiRLSampling(num_steps=5, executed_steps=1))
    _, _, record = rollout(policy)
    assert record.chain.shape == (BATCH, 6, CHUNK, 20)
