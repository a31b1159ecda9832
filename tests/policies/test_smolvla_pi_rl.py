"""Value tests for πRL on LeRobot's SmolVLA (lerobot_pirl.policies.smolvla_pi_rl).

Expected values are recomputed independently of the adapter: the prefix cache is rebuilt by hand
from the stock pieces (as ``sample_actions`` builds it), the velocity comes from SmolVLA's own
``denoise_step``, and the Gaussians from torch.distributions with the πRL formulas written out here.
The policy is a stock-built tiny SmolVLA (`helpers.tiny_smolvla`), never downloaded.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import pytest
import torch
from helpers.tiny_smolvla import build_tiny_smolvlm, observation_batch, tiny_smolvla_config
from helpers.xvla_batches import training_batch
from lerobot.policies.common.vla_utils import make_att_2d_masks
from lerobot.policies.smolvla import SmolVLAPolicy
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS
from torch.distributions import Normal
from torch.testing import assert_close

from lerobot_pirl.flow_rl import FlowPolicyAdapter
from lerobot_pirl.policies import (
    PI_RL_CHAIN,
    PI_RL_STEP_INDEX,
    PiRLHeads,
    PiRLSampling,
)
from lerobot_pirl.policies.smolvla_pi_rl import PiRLSmolVLAPolicy, SmolVLAFlowAdapter

STATE_DIM, ACTION_DIM = 3, 2
MODEL_DIM = 6  # max_action_dim: the chain is padded beyond the env's action dims
CHUNK, EXECUTED, STEPS = 4, 2, 3
BATCH = 16


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_smolvlm(tmp_path_factory.mktemp("tiny_smolvlm"))


def make_policy(vlm_dir: Path, noise_method: str = "flow_sde", seed: int = 0, sampling=None, **overrides):
    """A seeded tiny PiRLSmolVLAPolicy (chunk 4, K=3, H'=2) with heads attached."""
    torch.manual_seed(seed)
    policy = PiRLSmolVLAPolicy(
        tiny_smolvla_config(
            vlm_dir,
            STATE_DIM,
            ACTION_DIM,
            chunk_size=CHUNK,
            n_action_steps=EXECUTED,
            num_steps=STEPS,
            **overrides,
        )
    )
    heads = PiRLHeads.for_policy(
        policy, noise_head=noise_method == "flow_noise", value_hidden_dims=(32, 32), noise_hidden_dim=32
    )
    policy.attach_pi_rl(heads, PiRLSampling(noise_method=noise_method, **(sampling or {})))
    return policy, heads


def observations(policy, batch_size: int = BATCH, seed: int = 1) -> dict[str, torch.Tensor]:
    """States uniform in [-1, 1] and random images, so every row's prefix differs."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.rand(batch_size, STATE_DIM, generator=generator) * 2 - 1
    images = {
        key: torch.rand(batch_size, *f.shape, generator=generator)
        for key, f in policy.config.image_features.items()
    }
    return observation_batch(policy.config, states, images)


def stock_copy(policy) -> SmolVLAPolicy:
    stock = SmolVLAPolicy(policy.config)
    stock.load_state_dict(policy.state_dict(), strict=True)
    return stock.eval()


@torch.no_grad()
def velocity(policy, observation: dict, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """SmolVLA's velocity at (x_t, t [B]): the prefix cached by hand as ``sample_actions`` does, then
    the model's own ``denoise_step``."""
    model = policy.model
    images, img_masks = policy.prepare_images(observation)
    state = policy.prepare_state(observation)
    embs, pad_masks, att_masks = model.embed_prefix(
        images,
        img_masks,
        observation[OBS_LANGUAGE_TOKENS],
        observation[OBS_LANGUAGE_ATTENTION_MASK],
        state=state,
    )
    _, cache = model.vlm_with_expert.forward(
        attention_mask=make_att_2d_masks(pad_masks, att_masks),
        position_ids=torch.cumsum(pad_masks, dim=1) - 1,
        past_key_values=None,
        inputs_embeds=[embs, None],
        use_cache=True,
    )
    return model.denoise_step(prefix_pad_masks=pad_masks, past_key_values=cache, x_t=x_t, timestep=t)


def rollout(policy, seed: int = 7):
    observation = observations(policy)
    actions, record = policy.sample_actions(observation, generator=torch.Generator().manual_seed(seed))
    return observation, actions, record


def test_adapter_reads_its_sizes_from_the_stock_policy(vlm_dir):
    policy, _ = make_policy(vlm_dir)
    adapter = policy.flow_adapter()
    assert isinstance(adapter, SmolVLAFlowAdapter) and isinstance(adapter, FlowPolicyAdapter)
    assert (adapter.chunk_size, adapter.model_action_dim, adapter.real_action_dim) == (
        CHUNK,
        MODEL_DIM,
        ACTION_DIM,
    )
    assert (adapter.feature_dim, adapter.token_dim, adapter.state_dim) == (64, 48, 6)  # expert 0.75 × 64
    assert (adapter.default_num_steps, adapter.default_executed_steps) == (STEPS, EXECUTED)
    assert adapter.vlm_parameters() == list(policy.model.vlm_with_expert.vlm.parameters())


@pytest.mark.parametrize(
    "override,match",
    [
        ({"use_cache": False}, "use_cache=False"),
        ({"adapt_to_pi_aloha": True}, "adapt_to_pi_aloha"),
    ],
)
def test_unsupported_stock_settings_are_refused_by_name(vlm_dir, override, match):
    torch.manual_seed(0)
    policy = PiRLSmolVLAPolicy(tiny_smolvla_config(vlm_dir, STATE_DIM, ACTION_DIM, **override))
    with pytest.raises(ValueError, match=match):
        policy.flow_adapter()


# ----------------------------------------------------------------------------- samplers


def test_native_chain_is_the_stock_sampler_exactly(vlm_dir):
    policy, _ = make_policy(vlm_dir)
    stock = stock_copy(policy)
    observation = observations(policy)
    noise = torch.randn(BATCH, CHUNK, MODEL_DIM, generator=torch.Generator().manual_seed(3))

    actions, record = policy.sample_actions(observation, "native", initial_noise=noise)
    assert torch.equal(actions, stock.predict_action_chunk(dict(observation), noise=noise))  # bit for bit
    torch.manual_seed(123)
    expected = stock.predict_action_chunk(dict(observation))  # the noise stock draws itself
    torch.manual_seed(123)
    assert torch.equal(policy.sample_actions(observation, "native")[0], expected)

    # The recorded chain is the Euler states x_{k+1} = x_k - v_k/K with denoise_step's velocity.
    assert record.chain.shape == (BATCH, STEPS + 1, CHUNK, MODEL_DIM) and torch.equal(
        record.chain[:, 0], noise
    )
    for k in range(STEPS):
        t = torch.full((BATCH,), 1.0 - k / STEPS)
        step = record.chain[:, k] + (-1.0 / STEPS) * velocity(policy, observation, record.chain[:, k], t)
        assert torch.equal(record.chain[:, k + 1], step)
    assert torch.equal(actions, record.chain[:, -1, :, :ACTION_DIM])
    assert torch.isnan(record.log_prob).all() and torch.equal(record.step_index, torch.full((BATCH,), -1))


def test_the_recipes_ode_is_smolvlas_euler_up_to_rounding(vlm_dir):
    """x̂₀ = x_t − t·v makes πRL's ODE step x̂₀(1−t+Δ) + x̂₁(t−Δ) equal to Euler's x_t − Δ·v: the
    deterministic sampler the recipe evaluates with is SmolVLA's own (unlike XVLA's)."""
    policy, _ = make_policy(vlm_dir)
    observation = observations(policy)
    noise = torch.randn(BATCH, CHUNK, MODEL_DIM, generator=torch.Generator().manual_seed(4))
    _, native = policy.sample_actions(observation, "native", initial_noise=noise)
    _, ode = policy.sample_actions(observation, "deterministic", initial_noise=noise)
    assert_close(ode.chain, native.chain, rtol=0, atol=1e-5)
    assert (native.chain[:, -1] - native.chain[:, 0]).abs().max() > 0.1  # the chain does move


def test_encoding_runs_once_per_decision_and_every_step_reuses_its_cache(vlm_dir):
    policy, _ = make_policy(vlm_dir, "flow_noise")
    vision_calls, expert_passes = [], []
    model = policy.model
    model.vlm_with_expert.vlm.model.vision_model.register_forward_hook(lambda *_: vision_calls.append(1))
    model.action_out_proj.register_forward_hook(lambda *_: expert_passes.append(1))
    observation, _, record = rollout(policy)
    assert (len(vision_calls), len(expert_passes)) == (1, STEPS)
    # Re-scoring all K steps is one encode and one expert pass over B·K rows (repeat_rows repeats
    # the cache), and gives back the rollout's log-probs.
    vision_calls.clear()
    expert_passes.clear()
    with torch.no_grad():
        outputs = policy.pi_rl_outputs(
            {**observation, PI_RL_CHAIN: record.chain, PI_RL_STEP_INDEX: record.step_index}
        )
    assert (len(vision_calls), len(expert_passes)) == (1, 1)
    assert_close(outputs.token_log_prob, record.token_log_prob, rtol=0, atol=1e-5)


def test_repeat_rows_repeats_the_cache_and_leaves_the_original_unchanged(vlm_dir):
    policy, _ = make_policy(vlm_dir)
    adapter = policy.flow_adapter()
    with torch.no_grad():
        obs = adapter.encode(observations(policy, 3))
        keys = [layer.keys.clone() for layer in obs.prefix_cache.layers]
        repeated = obs.repeat_rows(2)
        x_t = torch.randn(6, CHUNK, MODEL_DIM, generator=torch.Generator().manual_seed(5))
        t = torch.tensor([1.0, 0.5, 0.25, 0.75, 0.9, 0.1])
        together = adapter.predict_clean_action(repeated, x_t, t)
        one_by_one = torch.cat([adapter.predict_clean_action(obs, x_t[i::2], t[i::2]) for i in range(2)])
    assert [layer.keys.shape[0] for layer in repeated.prefix_cache.layers] == [6] * len(keys)
    order = torch.tensor([0, 2, 4, 1, 3, 5])  # row i of obs is rows 2i, 2i+1 of repeated (b-major)
    assert_close(together[order], one_by_one, rtol=0, atol=1e-6)
    assert all(torch.equal(layer.keys, key) for layer, key in zip(obs.prefix_cache.layers, keys, strict=True))
    assert torch.equal(repeated.features[::2], obs.features) and torch.equal(repeated.state[1::2], obs.state)


# ----------------------------------------------------------------------------- rollout log-probs


def test_flow_sde_log_prob_matches_a_recomputation_from_denoise_step(vlm_dir):
    noise_level = 0.5
    policy, _ = make_policy(vlm_dir, "flow_sde", sampling={"noise_level": noise_level})
    observation, actions, record = rollout(policy)
    chain, k_star, dt = record.chain, record.step_index, 1.0 / STEPS
    assert len(set(k_star.tolist())) >= 2 and k_star.min() >= 0 and k_star.max() < STEPS
    rows = torch.arange(BATCH)

    # Hybrid sampling: every step but k* is Euler, x_t − Δ·v.
    for k in range(STEPS):
        t = torch.full((BATCH,), 1.0 - k / STEPS)
        euler = chain[:, k] - dt * velocity(policy, observation, chain[:, k], t)
        off = (chain[:, k + 1] - euler).abs().amax(dim=(-2, -1))
        assert (off[k_star != k] < 1e-5).all() and (off[k_star == k] > 1e-2).all()

    # The stochastic step, written out from the velocity: x̂₀ = x_t − t·v, x̂₁ = x_t + (1−t)·v,
    # σ = a·sqrt(t/(1−t')) with t' = 1 − 1/K at t = 1, mean x̂₀(1−t+Δ) + x̂₁(t − Δ − σ²Δ/(2t)).
    t = 1.0 - k_star.double() / STEPS
    t_prime = torch.where(k_star == 0, 1.0 - 1.0 / STEPS, t)
    sigma = (noise_level * torch.sqrt(t / (1.0 - t_prime))).float().view(-1, 1, 1)
    t = t.float()
    x_t = chain[rows, k_star]
    v = velocity(policy, observation, x_t, t)
    t = t.view(-1, 1, 1)
    x0_hat, x1_hat = x_t - t * v, x_t + (1 - t) * v
    mean = x0_hat * (1 - t + dt) + x1_hat * (t - dt - sigma**2 * dt / (2 * t))
    density = Normal(mean, math.sqrt(dt) * sigma).log_prob(chain[rows, k_star + 1])
    expected = density[:, :EXECUTED, :ACTION_DIM].sum(dim=-1)  # per executed token, real dims only
    assert record.token_log_prob.dtype == torch.float32
    assert_close(record.token_log_prob, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(actions, chain[:, -1, :, :ACTION_DIM])


def test_flow_noise_log_prob_matches_a_recomputation_from_denoise_step(vlm_dir):
    policy, heads = make_policy(vlm_dir, "flow_noise", sampling={"noise_std_min": 0.05, "noise_std_max": 0.2})
    observation, _, record = rollout(policy)
    chain, dt = record.chain, 1.0 / STEPS
    log_var_min, log_var_max = 2 * math.log(0.05), 2 * math.log(0.2)

    # The noise head reads the expert's per-action-token output: action_out_proj's input.
    tokens: list[torch.Tensor] = []
    hook = policy.model.action_out_proj.register_forward_pre_hook(lambda _m, args: tokens.append(args[0]))
    terms = [Normal(0.0, 1.0).log_prob(chain[:, 0])]
    with torch.no_grad():
        for k in range(STEPS):
            t = 1.0 - k / STEPS
            v = velocity(policy, observation, chain[:, k], torch.full((BATCH,), t))
            mean = chain[:, k] - dt * v
            raw = heads.noise_head(tokens[-1])
            std = torch.exp((log_var_min + (log_var_max - log_var_min) * (torch.tanh(raw) + 1) / 2) / 2)
            assert (
                tokens[-1].shape == (BATCH, CHUNK, 48) and 0.05 - 1e-6 <= std.min() <= std.max() <= 0.2 + 1e-6
            )
            terms.append(Normal(mean, std).log_prob(chain[:, k + 1]))
    hook.remove()
    per_element = torch.stack(terms).mean(dim=0)
    expected = per_element[:, :EXECUTED, :ACTION_DIM].sum(dim=-1)
    assert_close(record.token_log_prob, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("method", ["flow_sde", "flow_noise"])
def test_ppo_forward_has_ratio_one_then_trains_the_expert_and_never_the_vlm(vlm_dir, method):
    policy, heads = make_policy(vlm_dir, method)
    observation, _, record = rollout(policy)
    batch = training_batch(policy, observation, record, torch.randn(BATCH), torch.randn(BATCH))
    policy.train()
    loss, metrics = policy.forward(batch, model="pi_rl")
    assert abs(metrics["ratio_max"] - 1.0) < 1e-5 and abs(metrics["approx_kl"]) < 1e-6
    loss.backward()

    model = policy.model
    assert all(p.grad is None for p in model.vlm_with_expert.vlm.parameters())  # train_expert_only
    expert_grads = [p.grad for p in model.vlm_with_expert.lm_expert.parameters() if p.requires_grad]
    assert expert_grads and all(g is not None for g in expert_grads)
    assert (
        model.action_in_proj.weight.grad.abs().sum() > 0 and model.action_out_proj.weight.grad.abs().sum() > 0
    )
    # train_state_proj: the state token's projection trains through the frozen VLM's prefix pass.
    assert model.state_proj.weight.grad.abs().sum() > 0

    params = [p for p in policy.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    optimizer.step()
    with torch.no_grad():
        moved = policy.pi_rl_outputs(batch).log_prob
    assert (moved - record.log_prob).abs().max() > 1e-3


def test_a_frozen_prefix_runs_without_autograd(vlm_dir):
    """With the VLM and state_proj frozen, nothing in the prefix trains: encode skips autograd."""
    policy, _ = make_policy(vlm_dir, "flow_sde", train_state_proj=False)
    grad_modes: list[bool] = []
    policy.model.vlm_with_expert.vlm.model.vision_model.register_forward_hook(
        lambda *_: grad_modes.append(torch.is_grad_enabled())
    )
    observation, _, record = rollout(policy)
    batch = training_batch(policy, observation, record, torch.randn(BATCH), torch.randn(BATCH))
    grad_modes.clear()
    loss, _ = policy.forward(batch, "pi_rl")
    assert grad_modes == [False] and loss.requires_grad


# ----------------------------------------------------------------------------- the recipe learns


def _recipe_bandit(vlm_dir: Path, noise_method: str, reward_sign: float, updates: int) -> tuple[float, float]:
    """A one-step contextual bandit through ``PiRLRecipe.update_step`` (GAE over one-decision
    episodes, the recipe's minibatches and optimizer): the first executed action a₀ of state s
    earns −‖a₀ − s/2‖ (times ``reward_sign``). Mean deterministic reward before and after."""
    from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
    from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe
    from lerobot_pirl.recipes.pi_rl.transitions import encode_decision

    batch, eval_batch = 32, 256
    torch.manual_seed(0)
    config = tiny_smolvla_config(vlm_dir, 2, 2, chunk_size=4, n_action_steps=1, num_steps=3)
    recipe = PiRLRecipe(
        PiRLSmolVLAPolicy(config),
        PiRLConfig(
            policy_config=config,
            noise_method=noise_method,
            rollout_decisions=batch,
            minibatch_size=16,
            update_epochs=2,
            actor_lr=1e-3,
            value_lr=1e-3,
            value_hidden_dims=[32, 32],
            noise_hidden_dim=16,
        ),
    )
    recipe.build_optimizers()
    policy = recipe.policy
    generator = torch.Generator().manual_seed(1)

    def states(n: int, g: torch.Generator) -> torch.Tensor:
        return torch.rand(n, 2, generator=g) * 2 - 1

    def reward(s: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return -(actions[:, 0] - 0.5 * s).norm(dim=-1)

    def deterministic_reward() -> float:
        s = states(eval_batch, torch.Generator().manual_seed(2))
        actions, _ = policy.sample_actions(
            observation_batch(config, s), "deterministic", torch.Generator().manual_seed(3)
        )
        return reward(s, actions).mean().item()

    before = deterministic_reward()
    for update in range(updates):
        s = states(batch, generator)
        observation = observation_batch(config, s)
        actions, record = policy.sample_actions(observation, generator=generator)
        rewards = reward_sign * reward(s, actions)
        for i in range(batch):
            row = {key: value[i] for key, value in observation.items()}
            recipe.accept(
                encode_decision(
                    observation=row,
                    next_observation=row,
                    executed_actions=actions[i, :1],
                    step_rewards=rewards[i : i + 1],
                    executed_steps=1,
                    terminated=True,
                    truncated=False,
                    chain=record.chain[i],
                    step_index=int(record.step_index[i]),
                    old_token_log_prob=record.token_log_prob[i],
                    policy_version=recipe.assembler.policy_version,
                    actor_id=0,
                    episode_id=update * batch + i,
                    decision_index=0,
                )
            )
        recipe.update_step(iter([recipe.take_rollout()]), step=update)
    return before, deterministic_reward()


@pytest.mark.parametrize("noise_method", ["flow_sde", "flow_noise"])
def test_recipe_update_step_learns_a_bandit_and_a_flipped_reward_unlearns_it(vlm_dir, noise_method):
    before, after = _recipe_bandit(vlm_dir, noise_method, 1.0, 60)
    assert after > 0.5 * before, (before, after)  # the mean distance to the target at least halves
    # Contextual: better, by 5 %, than any action that ignores s. For s uniform on [−1, 1]² the best
    # constant action is the geometric median of s/2, 0 by symmetry, at E‖s/2‖ = ½·E‖v‖ (v uniform on
    # the square, E‖v‖ = (√2 + ln(1 + √2))/3 ≈ 0.7652), so no constant does better than −0.3826.
    assert after > 0.95 * -0.3826, after
    before_flipped, after_flipped = _recipe_bandit(vlm_dir, noise_method, -1.0, 6)
    assert before_flipped == before and after_flipped < before, (before, after_flipped)


# ----------------------------------------------------------------------------- checkpoints


def test_save_load_round_trip_in_stock_and_pi_rl_smolvla(vlm_dir, tmp_path, caplog):
    policy, heads = make_policy(vlm_dir, "flow_noise")
    observation, _, record = rollout(policy)
    loss, _ = policy.forward(
        training_batch(policy, observation, record, torch.randn(BATCH), torch.randn(BATCH)), "pi_rl"
    )
    loss.backward()
    torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.1).step()  # not just init
    assert policy.state_dict().keys() == SmolVLAPolicy(policy.config).state_dict().keys()
    assert not {id(p) for p in heads.parameters()} & {id(p) for p in policy.parameters()}
    policy.save_pretrained(tmp_path / "policy")

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        stock = SmolVLAPolicy.from_pretrained(tmp_path / "policy")
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert type(stock) is SmolVLAPolicy and stock.config.type == "smolvla"
    expected, loaded = policy.state_dict(), stock.state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
    noise = torch.randn(BATCH, CHUNK, MODEL_DIM, generator=torch.Generator().manual_seed(8))
    native, _ = policy.sample_actions(observation, "native", initial_noise=noise)
    assert torch.equal(stock.predict_action_chunk(dict(observation), noise=noise), native)

    reloaded = PiRLSmolVLAPolicy.from_pretrained(tmp_path / "policy")
    assert type(reloaded) is PiRLSmolVLAPolicy
    reloaded.attach_pi_rl(heads, policy.pi_rl_sampling)
    _, expected_record = policy.sample_actions(observation, generator=torch.Generator().manual_seed(7))
    _, reloaded_record = reloaded.sample_actions(observation, generator=torch.Generator().manual_seed(7))
    assert torch.equal(reloaded_record.chain, expected_record.chain)
    assert torch.equal(reloaded_record.token_log_prob, expected_record.token_log_prob)
