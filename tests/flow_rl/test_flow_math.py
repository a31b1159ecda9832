"""Value tests for lerobot_pirl.flow_rl.math.

Expected numbers are computed independently of the code under test: by hand (shown in comments),
with plain numpy re-derivations of the formulas, or with torch.distributions.
"""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal
from torch.testing import assert_close

from lerobot_pirl.flow_rl import (
    aggregate_entropy,
    aggregate_log_prob,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    flow_noise_chain_log_prob,
    flow_noise_std,
    flow_sde_chain_log_prob,
    flow_sde_sigmas,
    flow_sde_step,
    gather_chain_step,
    gaussian_entropy,
    gaussian_log_prob,
    normalize_advantages,
    ode_step_mean,
    ppo_actor_loss,
    std_bounds_to_log_var_bounds,
    time_grid,
    token_log_prob,
    velocity_and_noise,
)

LOG_SQRT_2PI = 0.9189385332046727  # ½·log(2π)


def tensor(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# ----------------------------------------------------------------------------- time grid


def test_time_grid_k4_is_exact_float32():
    grid = time_grid(4)
    assert grid.dtype == torch.float32
    assert grid.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_time_grid_k1():
    assert time_grid(1).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("num_steps", [0, -3])
def test_time_grid_rejects_fewer_than_one_step(num_steps):
    with pytest.raises(ValueError, match="num_steps"):
        time_grid(num_steps)


# ----------------------------------------------------------------------------- ODE step


def test_velocity_and_noise_hand_example():
    # x_t = 1.0, x̂₀ = 0.2, t = 0.5:
    #   v  = (1.0 - 0.2) / 0.5         = 1.6
    #   x̂₁ = (1.0 - 0.5 * 0.2) / 0.5   = 1.8
    velocity, noise = velocity_and_noise(tensor([1.0]), tensor([0.2]), 0.5)
    assert_close(velocity, tensor([1.6]))
    assert_close(noise, tensor([1.8]))


def test_velocity_and_noise_reconstructs_x_t_with_per_sample_t():
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    x0_hat = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    t = torch.tensor([1.0, 0.6, 0.2], dtype=torch.float64).view(3, 1, 1)
    _, noise = velocity_and_noise(x_t, x0_hat, t)
    # straight-line path: x_t = t·x̂₁ + (1 - t)·x̂₀
    assert_close(t * noise + (1.0 - t) * x0_hat, x_t)


def test_ode_step_mean_hand_example():
    # x_t = 1.0, x̂₀ = 0.2, t = 0.5, Δ = 0.25, x̂₁ = 1.8 (above):
    #   μ = 0.2·(1 - 0.5 + 0.25) + 1.8·(0.5 - 0.25) = 0.15 + 0.45 = 0.6
    #   Euler: 1.0 - 0.25·1.6 = 0.6
    assert_close(ode_step_mean(tensor([1.0]), tensor([0.2]), 0.5, 0.25), tensor([0.6]))


@pytest.mark.parametrize("t", [1.0, 0.75, 0.5, 0.25])
def test_ode_step_mean_matches_numpy_and_euler(t):
    rng = np.random.default_rng(1)
    x_t_np = rng.normal(size=(2, 5, 3))
    x0_np = rng.normal(size=(2, 5, 3))
    dt = 0.25
    # Independent numpy derivation of μ = x̂₀·(1 - t + Δ) + x̂₁·(t - Δ).
    x1_np = (x_t_np - (1.0 - t) * x0_np) / t
    expected = x0_np * (1.0 - t + dt) + x1_np * (t - dt)
    euler = x_t_np - dt * (x_t_np - x0_np) / t

    mean = ode_step_mean(torch.from_numpy(x_t_np), torch.from_numpy(x0_np), t, dt)

    np.testing.assert_allclose(mean.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mean.numpy(), euler, rtol=1e-12, atol=1e-12)


def test_ode_step_mean_per_sample_t_equals_scalar_calls():
    generator = torch.Generator().manual_seed(2)
    x_t = torch.randn(3, 4, 2, generator=generator)
    x0_hat = torch.randn(3, 4, 2, generator=generator)
    t_values = [1.0, 0.5, 0.25]
    batched = ode_step_mean(x_t, x0_hat, torch.tensor(t_values).view(3, 1, 1), 0.25)
    for b, t in enumerate(t_values):
        assert_close(batched[b], ode_step_mean(x_t[b], x0_hat[b], t, 0.25))


# ----------------------------------------------------------------------------- Flow-SDE step


def test_flow_sde_sigmas_and_step_stds_k4():
    # K = 4, a = 0.5: t = [1, .75, .5, .25], Δ = 0.25; t'_0 = 1 - 1/4 = 0.75, t'_k = t_k otherwise.
    #   σ_0 = 0.5·sqrt(1 / (1 - .75))    = 0.5·2         = 1.0
    #   σ_1 = 0.5·sqrt(.75 / (1 - .75))  = 0.5·sqrt(3)   = 0.8660254
    #   σ_2 = 0.5·sqrt(.5 / (1 - .5))    = 0.5·1         = 0.5
    #   σ_3 = 0.5·sqrt(.25 / (1 - .25))  = 0.5/sqrt(3)   = 0.2886751
    # step std = sqrt(Δ)·σ_k = 0.5·σ_k = [0.5, 0.4330127, 0.25, 0.1443376]
    sigmas = flow_sde_sigmas(4, 0.5)
    assert_close(sigmas, tensor([1.0, 0.8660254, 0.5, 0.2886751]))

    x = torch.zeros(2, 3)
    grid = time_grid(4)
    stds = [flow_sde_step(x, x, grid[k].item(), 0.25, sigmas[k])[1] for k in range(4)]
    assert_close(torch.stack(stds), tensor([0.5, 0.4330127, 0.25, 0.1443376]))


def test_flow_sde_sigmas_k1_uses_t_prime_zero():
    # K = 1: t_0 = 1, t'_0 = 1 - 1/1 = 0 → σ_0 = a·sqrt(1 / 1) = a
    assert_close(flow_sde_sigmas(1, 0.3), tensor([0.3]))


def test_flow_sde_sigmas_reject_negative_noise_level():
    with pytest.raises(ValueError, match="noise_level"):
        flow_sde_sigmas(4, -0.1)


def test_flow_sde_step_hand_example():
    # x_t = 1.0, x̂₀ = 0.2, t = 0.5, Δ = 0.25, σ = 0.5, x̂₁ = 1.8:
    #   μ = 0.2·(1 - 0.5 + 0.25) + 1.8·(0.5 - 0.25 - 0.25·0.25/(2·0.5))
    #     = 0.15 + 1.8·(0.25 - 0.0625) = 0.15 + 0.3375 = 0.4875
    #   std = sqrt(0.25)·0.5 = 0.25
    mean, std = flow_sde_step(tensor([1.0]), tensor([0.2]), 0.5, 0.25, 0.5)
    assert_close(mean, tensor([0.4875]))
    assert_close(std, torch.tensor(0.25))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_flow_sde_step_matches_numpy(k):
    rng = np.random.default_rng(3)
    x_t_np = rng.normal(size=(2, 5, 3))
    x0_np = rng.normal(size=(2, 5, 3))
    t, dt = 1.0 - k / 4, 0.25
    sigma = 0.5 * math.sqrt(t / (1.0 - (0.75 if k == 0 else t)))
    # Independent numpy derivation: μ = x̂₀·(1 - t + Δ) + x̂₁·(t - Δ - σ²Δ/(2t)).
    x1_np = (x_t_np - (1.0 - t) * x0_np) / t
    expected = x0_np * (1.0 - t + dt) + x1_np * (t - dt - sigma**2 * dt / (2.0 * t))

    mean, std = flow_sde_step(torch.from_numpy(x_t_np), torch.from_numpy(x0_np), t, dt, sigma)

    np.testing.assert_allclose(mean.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert std.item() == pytest.approx(math.sqrt(dt) * sigma)


def test_flow_sde_step_with_zero_sigma_is_the_ode_step():
    generator = torch.Generator().manual_seed(4)
    x_t = torch.randn(4, 3, generator=generator)
    x0_hat = torch.randn(4, 3, generator=generator)
    mean, std = flow_sde_step(x_t, x0_hat, 0.75, 0.25, 0.0)
    assert_close(mean, ode_step_mean(x_t, x0_hat, 0.75, 0.25))
    assert std.item() == 0.0


# ----------------------------------------------------------------------------- Flow-Noise head


def test_std_bounds_to_log_var_bounds():
    # 2·ln(0.08) = -5.0514573, 2·ln(0.16) = -3.6651629
    low, high = std_bounds_to_log_var_bounds(0.08, 0.16)
    assert low == pytest.approx(-5.0514573)
    assert high == pytest.approx(-3.6651629)


@pytest.mark.parametrize("bounds", [(0.0, 0.1), (0.2, 0.1), (-0.1, 0.1)])
def test_std_bounds_to_log_var_bounds_rejects_invalid(bounds):
    with pytest.raises(ValueError, match="std_min"):
        std_bounds_to_log_var_bounds(*bounds)


def test_flow_noise_std_values():
    low, high = 2 * math.log(0.08), 2 * math.log(0.16)
    raw = tensor([-20.0, 0.0, math.atanh(0.5), 20.0])
    # tanh = -1 → logvar = lmin → std = 0.08
    # tanh =  0 → logvar = (lmin + lmax)/2 → std = sqrt(0.08·0.16) = 0.1131371
    # tanh = .5 → logvar = lmin + 0.75·(lmax - lmin) → std = 0.08^.25·0.16^.75 = 0.08·2^.75
    #                                                       = 0.1345434
    # tanh = +1 → std = 0.16
    expected = tensor([0.08, 0.1131371, 0.1345434, 0.16])
    assert_close(flow_noise_std(raw, low, high), expected)


# ----------------------------------------------------------------------------- Gaussians


def test_gaussian_log_prob_hand_values():
    # log N(0; 0, 1) = -½·log(2π)                          = -0.9189385
    # log N(1; 0, 2²) = -1/8 - ln 2 - ½·log(2π)
    #                 = -0.125 - 0.6931472 - 0.9189385     = -1.7370857
    log_prob = gaussian_log_prob(tensor([0.0, 1.0]), tensor([0.0, 0.0]), tensor([1.0, 2.0]))
    assert_close(log_prob, tensor([-0.9189385, -1.7370857]))


def test_gaussian_log_prob_matches_torch_normal():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(3, 6, 4, generator=generator)
    mean = torch.randn(3, 6, 4, generator=generator)
    std = torch.rand(3, 6, 4, generator=generator) + 0.05
    expected = Normal(mean.double(), std.double()).log_prob(x.double())
    assert_close(gaussian_log_prob(x, mean, std).double(), expected, rtol=1e-6, atol=1e-5)


def test_gaussian_log_prob_matches_closed_form_with_broadcast_std():
    x = tensor([[0.3, -1.2], [2.0, 0.1]])
    mean = tensor([[0.1, -1.0], [1.5, 0.1]])
    std = tensor([[0.5], [0.25]])
    expected = [
        [-((xi - mi) ** 2) / (2 * s**2) - math.log(s) - LOG_SQRT_2PI for xi, mi in zip(xr, mr, strict=True)]
        for xr, mr, (s,) in zip(x.tolist(), mean.tolist(), std.tolist(), strict=True)
    ]
    assert_close(gaussian_log_prob(x, mean, std), tensor(expected))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gaussian_log_prob_is_float32_for_half_inputs(dtype):
    # (300 - 0)² = 90000 overflows float16 (max 65504) and is not representable in bfloat16,
    # so only a float32 computation gives -90000/2 - 0 - 0.9189385 = -45000.9189385.
    x = torch.tensor([300.0, 0.5], dtype=dtype)
    log_prob = gaussian_log_prob(x, torch.zeros(2, dtype=dtype), torch.ones(2, dtype=dtype))
    assert log_prob.dtype == torch.float32
    # second element: -(0.5²)/2 - 0.9189385 = -1.0439385
    assert_close(log_prob, tensor([-45000.9189385, -1.0439385]))


def test_gaussian_entropy_values_and_dtype():
    # ½·log(2πe·σ²) = ½ + ½·log(2π) + log σ:  σ = 1 → 1.4189385, σ = 0.5 → 1.4189385 - ln 2 = 0.7257914
    std = torch.tensor([1.0, 0.5], dtype=torch.bfloat16)
    entropy = gaussian_entropy(std)
    assert entropy.dtype == torch.float32
    assert_close(entropy, tensor([1.4189385, 0.7257914]))
    assert_close(entropy, Normal(0.0, std.float()).entropy())


# ----------------------------------------------------------------------------- chain log-probs


def _labelled_chain(batch: int, num_steps: int, horizon: int, dim: int) -> torch.Tensor:
    """Chain whose step k of decision b is filled with the value 10·b + k."""
    labels = 10.0 * torch.arange(batch).view(-1, 1) + torch.arange(num_steps + 1).view(1, -1)
    return labels.view(batch, num_steps + 1, 1, 1).expand(batch, num_steps + 1, horizon, dim)


def test_gather_chain_step_picks_k_and_k_plus_one_per_decision():
    chain = _labelled_chain(batch=2, num_steps=3, horizon=2, dim=3)
    x_t, x_next = gather_chain_step(chain, torch.tensor([2, 0]))
    assert x_t.shape == x_next.shape == (2, 2, 3)
    # decision 0 at k=2: x_t = 2, x_next = 3; decision 1 at k=0: x_t = 10, x_next = 11
    assert_close(x_t, torch.tensor([2.0, 10.0]).view(2, 1, 1).expand(2, 2, 3))
    assert_close(x_next, torch.tensor([3.0, 11.0]).view(2, 1, 1).expand(2, 2, 3))


def test_flow_sde_chain_log_prob_scores_only_the_step_after_k_star():
    k_star = torch.tensor([1, 2])
    mean = torch.tensor([0.3, -0.7]).view(2, 1, 1).expand(2, 2, 3)
    std = torch.tensor([0.5, 0.25]).view(2, 1, 1)
    chain = torch.full((2, 4, 2, 3), 1e6)
    chain[0, 2] = 0.3 + 0.5  # x_{k*+1} = mean + std
    chain[1, 3] = -0.7 + 0.25
    # log N(μ + σ; μ, σ²) = -½ - ln σ - ½·log(2π)
    #   σ = 0.5:  -0.5 + 0.6931472 - 0.9189385 = -0.7257913
    #   σ = 0.25: -0.5 + 1.3862944 - 0.9189385 = -0.0326441
    expected = torch.tensor([-0.7257913, -0.0326441]).view(2, 1, 1).expand(2, 2, 3)
    assert_close(flow_sde_chain_log_prob(chain, k_star, mean, std), expected)

    chain[0, 0] = chain[0, 3] = chain[1, 1] = -123.0  # other steps must not matter
    assert_close(flow_sde_chain_log_prob(chain, k_star, mean, std), expected)


def test_flow_noise_chain_log_prob_hand_example():
    # K = 1, H = D = 1: x_{t0} = 0, x_{t1} = 1, μ_0 = 0, σ_0 = 1
    #   terms: log N(0; 0, 1) = -0.9189385,  log N(1; 0, 1) = -0.5 - 0.9189385 = -1.4189385
    #   mean over the K+1 = 2 terms = -1.1689385
    chain = torch.tensor([0.0, 1.0]).view(2, 1, 1)
    means = torch.zeros(1, 1, 1)
    stds = torch.ones(1, 1, 1)
    assert_close(flow_noise_chain_log_prob(chain, means, stds), torch.tensor([[-1.1689385]]))


def test_flow_noise_chain_log_prob_matches_normal_term_by_term():
    generator = torch.Generator().manual_seed(6)
    batch, num_steps, horizon, dim = 2, 3, 4, 5
    chain = torch.randn(batch, num_steps + 1, horizon, dim, generator=generator)
    means = torch.randn(batch, num_steps, horizon, dim, generator=generator)
    stds = torch.rand(batch, num_steps, horizon, dim, generator=generator) + 0.05
    terms = [Normal(0.0, 1.0).log_prob(chain[:, 0].double())]
    for k in range(num_steps):
        terms.append(Normal(means[:, k].double(), stds[:, k].double()).log_prob(chain[:, k + 1]))
    expected = sum(terms) / (num_steps + 1)
    result = flow_noise_chain_log_prob(chain, means, stds)
    assert result.shape == (batch, horizon, dim)
    assert_close(result.double(), expected, rtol=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------- aggregation


def _padded_per_element(garbage: float) -> torch.Tensor:
    """[2, H=3, D_model=4] with real slice (H'=2, D_env=2) set and `garbage` everywhere else."""
    per_element = torch.full((2, 3, 4), garbage)
    per_element[0, :2, :2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    per_element[1, :2, :2] = torch.tensor([[-1.0, 0.5], [0.0, 2.5]])
    return per_element


@pytest.mark.parametrize("garbage", [1e6, -7.0, float("nan")])
def test_aggregate_log_prob_ignores_padding_and_unexecuted_steps(garbage):
    # decision 0: 1 + 2 + 3 + 4 = 10;  decision 1: -1 + 0.5 + 0 + 2.5 = 2
    result = aggregate_log_prob(_padded_per_element(garbage), executed_steps=2, action_dim=2)
    assert_close(result, tensor([10.0, 2.0]))


@pytest.mark.parametrize("garbage", [1e6, float("nan")])
def test_token_log_prob_sums_each_executed_step_over_real_dims(garbage):
    # decision 0: [1 + 2, 3 + 4] = [3, 7];  decision 1: [-1 + 0.5, 0 + 2.5] = [-0.5, 2.5]
    result = token_log_prob(_padded_per_element(garbage), executed_steps=2, action_dim=2)
    assert_close(result, tensor([[3.0, 7.0], [-0.5, 2.5]]))


@pytest.mark.parametrize("garbage", [1e6, float("nan")])
def test_aggregate_entropy_is_mean_over_real_slice(garbage):
    # decision 0: 10 / 4 = 2.5;  decision 1: 2 / 4 = 0.5
    result = aggregate_entropy(_padded_per_element(garbage), executed_steps=2, action_dim=2)
    assert_close(result, tensor([2.5, 0.5]))


@pytest.mark.parametrize(
    ("executed_steps", "action_dim", "match"),
    [
        (0, 2, "executed_steps"),
        (4, 2, "executed_steps"),
        (2, 0, "action_dim"),
        (2, 5, "action_dim"),
    ],
)
def test_aggregation_rejects_out_of_range_slices(executed_steps, action_dim, match):
    with pytest.raises(ValueError, match=match):
        aggregate_log_prob(torch.zeros(2, 3, 4), executed_steps, action_dim)


# ----------------------------------------------------------------------------- PPO


def test_ppo_actor_loss_hand_example():
    # ε = 0.2; per sample ρ, Â → min(ρ·Â, clip(ρ)·Â):
    #   ρ=1.1 (inside),  Â=+1 → min(1.1, 1.1)   =  1.1   unclipped active
    #   ρ=1.5 (above),   Â=+1 → min(1.5, 1.2)   =  1.2   clipped
    #   ρ=0.5 (below),   Â=-1 → min(-0.5, -0.8) = -0.8   clipped
    #   ρ=1.5 (above),   Â=-2 → min(-3.0, -2.4) = -3.0   unclipped active
    #   ρ=0.5 (below),   Â=+1 → min(0.5, 0.8)   =  0.5   unclipped active
    # objective mean = (1.1 + 1.2 - 0.8 - 3.0 + 0.5)/5 = -0.2 → loss = 0.2
    ratios = [1.1, 1.5, 0.5, 1.5, 0.5]
    advantages = tensor([1.0, 1.0, -1.0, -2.0, 1.0])
    old_log_prob = tensor([0.3, -1.0, 2.0, 0.0, -0.5])
    new_log_prob = (old_log_prob + torch.log(tensor(ratios))).requires_grad_()

    loss, diagnostics = ppo_actor_loss(new_log_prob, old_log_prob, advantages, clip_eps=0.2)
    assert loss.item() == pytest.approx(0.2, abs=1e-6)

    # d loss / d ℓ_new = -ρ·Â/N on active unclipped samples, 0 on clipped ones:
    #   [-1.1/5, 0, 0, -(1.5·-2)/5, -0.5/5] = [-0.22, 0, 0, 0.6, -0.1]
    loss.backward()
    assert_close(new_log_prob.grad, tensor([-0.22, 0.0, 0.0, 0.6, -0.1]))

    # approx_kl = mean((ρ-1) - ln ρ):
    #   1.1: 0.1 - 0.0953102 = 0.0046898;  1.5: 0.5 - 0.4054651 = 0.0945349 (×2);
    #   0.5: -0.5 + 0.6931472 = 0.1931472 (×2) → sum 0.5800540, mean 0.1160108
    assert diagnostics["approx_kl"].item() == pytest.approx(0.1160108, abs=1e-6)
    assert diagnostics["clip_frac"].item() == pytest.approx(0.8)  # 4 of 5 have |ρ-1| > 0.2
    assert diagnostics["ratio_mean"].item() == pytest.approx(1.02)  # 5.1 / 5
    assert diagnostics["ratio_max"].item() == pytest.approx(1.5)
    assert not any(value.requires_grad for value in diagnostics.values())


def test_ppo_actor_loss_on_policy_is_minus_mean_advantage():
    # ρ = 1 everywhere: loss = -mean(Â) = -(2 - 1 + 0.5)/3 = -0.5, no KL, nothing clipped
    log_prob = tensor([-3.0, 0.4, 1.0])
    loss, diagnostics = ppo_actor_loss(log_prob, log_prob, tensor([2.0, -1.0, 0.5]), clip_eps=0.2)
    assert loss.item() == pytest.approx(-0.5)
    assert diagnostics["approx_kl"].item() == 0.0
    assert diagnostics["clip_frac"].item() == 0.0


def test_clipped_value_loss_hand_example():
    # clip c = 0.2, Huber δ = 1: huber(r) = ½r² if |r| <= 1 else |r| - ½
    #   R=1,  V_old=0, V=0.5:  R-V = 0.5 → 0.125;  V_clip = 0.2,  R-V_clip = 0.8  → 0.32  → 0.32
    #   R=0,  V_old=0, V=0.1:  R-V = -0.1 → 0.005; V_clip = 0.1 (inside)          → 0.005 → 0.005
    #   R=3,  V_old=1, V=0.0:  R-V = 3 → 2.5;      V_clip = 0.8,  R-V_clip = 2.2  → 1.7   → 2.5
    #   R=-2, V_old=0, V=-1.9: R-V = -0.1 → 0.005; V_clip = -0.2, R-V_clip = -1.8 → 1.3   → 1.3
    # mean = (0.32 + 0.005 + 2.5 + 1.3)/4 = 4.125/4 = 1.03125
    loss = clipped_value_loss(
        values=tensor([0.5, 0.1, 0.0, -1.9]),
        old_values=tensor([0.0, 0.0, 1.0, 0.0]),
        returns=tensor([1.0, 0.0, 3.0, -2.0]),
        value_clip=0.2,
        huber_delta=1.0,
    )
    assert loss.item() == pytest.approx(1.03125, abs=1e-6)


def test_clipped_value_loss_inside_clip_is_plain_half_squared_error():
    # |V - V_old| <= c and |R - V| <= δ: loss = mean(½(R-V)²) = (½·0.01 + ½·0.04)/2 = 0.0125
    loss = clipped_value_loss(
        values=tensor([1.0, 2.0]),
        old_values=tensor([1.05, 1.9]),
        returns=tensor([1.1, 1.8]),
        value_clip=0.2,
        huber_delta=10.0,
    )
    assert loss.item() == pytest.approx(0.0125, abs=1e-6)


def test_explained_variance_values():
    returns = tensor([1.0, 2.0, 3.0])
    assert explained_variance(returns, returns).item() == pytest.approx(1.0)
    # V = mean(R): Var(R - V) = Var(R) → 0
    assert explained_variance(torch.full((3,), 2.0), returns).item() == pytest.approx(0.0)
    # V = [1, 2, 4]: R - V = [0, 0, -1], Var = 2/9; Var(R) = 2/3 → 1 - (2/9)/(2/3) = 2/3
    assert explained_variance(tensor([1.0, 2.0, 4.0]), returns).item() == pytest.approx(2 / 3)


def test_explained_variance_is_nan_for_constant_returns():
    assert math.isnan(explained_variance(tensor([0.1, 0.2]), tensor([0.0, 0.0])).item())


# ----------------------------------------------------------------------------- GAE

# One 3-decision episode, γ = λ = 0.5 (γλ = 0.25), rewards [1, 0, 2], values [0.5, 1, 1.5].
REWARDS = [1.0, 0.0, 2.0]
VALUES = [0.5, 1.0, 1.5]
# Terminated: the last next value (9.0) must be ignored.
#   δ2 = 2 - 1.5 = 0.5                → A2 = 0.5
#   δ1 = 0 + 0.5·1.5 - 1 = -0.25      → A1 = -0.25 + 0.25·0.5     = -0.125
#   δ0 = 1 + 0.5·1.0 - 0.5 = 1.0      → A0 = 1.0 + 0.25·(-0.125)  = 0.96875
#   returns = A + V = [1.46875, 0.875, 2.0]
TERMINATED_EPISODE = {
    "next_values": [1.0, 1.5, 9.0],
    "terminated": [False, False, True],
    "truncated": [False, False, False],
    "advantages": [0.96875, -0.125, 0.5],
    "returns": [1.46875, 0.875, 2.0],
}
# Truncated: bootstrap with V(final obs) = 2.0.
#   δ2 = 2 + 0.5·2.0 - 1.5 = 1.5      → A2 = 1.5
#   δ1 = -0.25                        → A1 = -0.25 + 0.25·1.5     = 0.125
#   δ0 = 1.0                          → A0 = 1.0 + 0.25·0.125     = 1.03125
#   returns = A + V = [1.53125, 1.125, 3.0]
TRUNCATED_EPISODE = {
    "next_values": [1.0, 1.5, 2.0],
    "terminated": [False, False, False],
    "truncated": [False, False, True],
    "advantages": [1.03125, 0.125, 1.5],
    "returns": [1.53125, 1.125, 3.0],
}


def _run_gae(episodes, gamma=0.5, lam=0.5):
    def cat(key, dtype=torch.float32):
        return torch.tensor([x for episode in episodes for x in episode[key]], dtype=dtype)

    return compute_gae(
        rewards=torch.tensor(REWARDS * len(episodes)),
        values=torch.tensor(VALUES * len(episodes)),
        next_values=cat("next_values"),
        terminated=cat("terminated", torch.bool),
        truncated=cat("truncated", torch.bool),
        gamma=gamma,
        lam=lam,
    )


@pytest.mark.parametrize(
    "episodes",
    [
        [TERMINATED_EPISODE],
        [TRUNCATED_EPISODE],
        [TERMINATED_EPISODE, TRUNCATED_EPISODE],  # trace must stop at the termination
        [TRUNCATED_EPISODE, TERMINATED_EPISODE],  # trace must stop at the truncation
    ],
    ids=["terminated", "truncated", "terminated_then_truncated", "truncated_then_terminated"],
)
def test_compute_gae_hand_examples(episodes):
    advantages, returns = _run_gae(episodes)
    assert_close(advantages, tensor([a for episode in episodes for a in episode["advantages"]]))
    assert_close(returns, tensor([r for episode in episodes for r in episode["returns"]]))


def test_compute_gae_lambda_one_gives_discounted_returns():
    # λ = 1, γ = 0.5: returns are reward-to-go (+ bootstrap), independent of the values.
    #   terminated: [1 + 0.5·0 + 0.25·2, 0 + 0.5·2, 2]                    = [1.5, 1.0, 2.0]
    #   truncated:  [1 + 0 + 0.25·2 + 0.125·2.0, 0 + 0.5·2 + 0.25·2.0, 2 + 0.5·2.0]
    #             = [1.75, 1.5, 3.0]
    _, returns = _run_gae([TERMINATED_EPISODE, TRUNCATED_EPISODE], lam=1.0)
    assert_close(returns, tensor([1.5, 1.0, 2.0, 1.75, 1.5, 3.0]))


def test_compute_gae_lambda_zero_is_td0():
    # λ = 0: returns = r + γ·(1 - terminated)·next_value
    #   terminated: [1 + 0.5, 0 + 0.75, 2 + 0]   = [1.5, 0.75, 2.0]
    #   truncated:  [1 + 0.5, 0 + 0.75, 2 + 1.0] = [1.5, 0.75, 3.0]
    _, returns = _run_gae([TERMINATED_EPISODE, TRUNCATED_EPISODE], lam=0.0)
    assert_close(returns, tensor([1.5, 0.75, 2.0, 1.5, 0.75, 3.0]))


def test_compute_gae_bootstraps_a_rollout_cut_mid_episode():
    # Not done, last decision of the sequence: A = 1 + 0.5·2 - 0.5 = 1.5
    advantages, returns = compute_gae(
        tensor([1.0]),
        tensor([0.5]),
        tensor([2.0]),
        torch.tensor([False]),
        torch.tensor([False]),
        gamma=0.5,
        lam=0.5,
    )
    assert_close(advantages, tensor([1.5]))
    assert_close(returns, tensor([2.0]))


def test_compute_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal length"):
        compute_gae(
            torch.zeros(3),
            torch.zeros(3),
            torch.zeros(2),
            torch.zeros(3, dtype=torch.bool),
            torch.zeros(3, dtype=torch.bool),
            gamma=0.99,
            lam=0.95,
        )


def test_normalize_advantages_values():
    # [1, 2, 3]: mean 2, population std sqrt(2/3) = 0.8164966 → [-1.2247449, 0, 1.2247449]
    assert_close(normalize_advantages(tensor([1.0, 2.0, 3.0])), tensor([-1.2247449, 0.0, 1.2247449]))
    assert normalize_advantages(tensor([5.0])).tolist() == [0.0]
