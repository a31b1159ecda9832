"""Policy-agnostic flow-matching RL math (πRL, arXiv 2510.25889).

Conventions, shared by every function here:

* ``t = 1`` is pure noise, ``t = 0`` is the action; the network predicts the clean
  action ``x0_hat`` (x̂₀) from ``(x_t, t)``.
* Denoising grid ``t_k = 1 - k/K`` for ``k = 0..K`` with step ``dt = Δ = 1/K``.
* A recorded chain has layout ``[..., K+1, H, D]``: ``chain[..., k, :, :]`` is ``x_{t_k}``,
  ``chain[..., 0, :, :]`` the initial noise and ``chain[..., K, :, :]`` the emitted action chunk
  (H chunk steps, D model action dims, possibly padded beyond the env's action dims).
* Log-probabilities and entropies are float32, whatever the dtype of the policy.

All functions are pure: no modules, no state, no randomness.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------- denoising steps


def time_grid(num_steps: int, device: torch.device | str | None = None) -> Tensor:
    """Return the grid ``t_k = 1 - k/K`` (k = 0..K), shape [K+1], float32.

    Built in float64 and cast so that every grid point is the closest float32 to its exact value
    (``t_0 = 1`` and ``t_K = 0`` exactly), which the Flow-SDE schedule relies on.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps (K) must be >= 1, got {num_steps}")
    k = torch.arange(num_steps + 1, dtype=torch.float64, device=device)
    return (1.0 - k / num_steps).to(torch.float32)


def velocity_and_noise(x_t: Tensor, x0_hat: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
    """Velocity ``v = (x_t - x̂₀)/t`` and implied noise ``x̂₁ = (x_t - (1-t)·x̂₀)/t``.

    The network predicts x̂₀; the flow step kernels are written in terms of (x̂₀, x̂₁), so this
    converts the prediction under the straight-line path ``x_t = t·x̂₁ + (1-t)·x̂₀``.
    ``t`` is a float or a tensor broadcastable to ``x_t`` and must be > 0 (true for steps k < K).
    """
    velocity = (x_t - x0_hat) / t
    noise = (x_t - (1.0 - t) * x0_hat) / t
    return velocity, noise


def ode_step_mean(x_t: Tensor, x0_hat: Tensor, t: float | Tensor, dt: float | Tensor) -> Tensor:
    """Deterministic (ODE) step from ``t`` to ``t - dt``: ``μ = x̂₀·(1-t+Δ) + x̂₁·(t-Δ)``.

    Identical to the Euler step ``x_t - Δ·v``; it is also the mean of every Flow-Noise step.
    """
    _, noise = velocity_and_noise(x_t, x0_hat, t)
    return x0_hat * (1.0 - t + dt) + noise * (t - dt)


def flow_sde_sigmas(num_steps: int, noise_level: float, device: torch.device | str | None = None) -> Tensor:
    """Flow-SDE noise scales ``σ_k = a·sqrt(t_k / (1 - t'_k))`` for k = 0..K-1, shape [K].

    ``t'_k = t_k`` except at ``t_0 = 1``, where ``t' = 1 - 1/K`` keeps σ_0 finite. These are the
    diffusion coefficients; the per-step Gaussian std is ``sqrt(Δ)·σ_k`` (see ``flow_sde_step``).
    """
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level}")
    t = time_grid(num_steps, device=device)[:-1]
    t_prime = t.clone()
    t_prime[0] = 1.0 - 1.0 / num_steps
    return noise_level * torch.sqrt(t / (1.0 - t_prime))


def flow_sde_step(
    x_t: Tensor, x0_hat: Tensor, t: float | Tensor, dt: float | Tensor, sigma: float | Tensor
) -> tuple[Tensor, Tensor]:
    """Gaussian Flow-SDE step from ``t`` to ``t - dt``: returns (mean, std).

    ``mean = x̂₀·(1-t+Δ) + x̂₁·(t - Δ - σ²·Δ/(2t))`` and ``std = sqrt(Δ)·σ``; with σ = 0 it
    reduces to ``ode_step_mean``. This SDE has the same marginals as the ODE, so sampling from it
    keeps the SFT policy's distribution while giving each step a tractable likelihood.
    """
    _, noise = velocity_and_noise(x_t, x0_hat, t)
    mean = x0_hat * (1.0 - t + dt) + noise * (t - dt - sigma**2 * dt / (2.0 * t))
    std = torch.as_tensor(dt**0.5 * sigma, dtype=mean.dtype, device=mean.device)
    return mean, std


# ----------------------------------------------------------------------------- Flow-Noise head


def std_bounds_to_log_var_bounds(std_min: float, std_max: float) -> tuple[float, float]:
    """Convert std bounds [s_min, s_max] into log-variance bounds (2·log s_min, 2·log s_max).

    The paper states the noise head's bounds as stds (e.g. [0.08, 0.16] for π0); the head works in
    log-variance.
    """
    if not 0.0 < std_min <= std_max:
        raise ValueError(f"need 0 < std_min <= std_max, got std_min={std_min}, std_max={std_max}")
    return 2.0 * math.log(std_min), 2.0 * math.log(std_max)


def flow_noise_std(raw: Tensor, log_var_min: float, log_var_max: float) -> Tensor:
    """Map the noise head's raw output to a bounded std.

    ``logvar = lmin + (lmax - lmin)·(tanh(raw) + 1)/2`` and ``std = exp(logvar/2)``, so the std
    stays in [exp(lmin/2), exp(lmax/2)] and the head can never collapse or explode the noise.
    """
    log_var = log_var_min + (log_var_max - log_var_min) * (torch.tanh(raw) + 1.0) / 2.0
    return torch.exp(log_var / 2.0)


# ----------------------------------------------------------------------------- Gaussians


def gaussian_log_prob(x: Tensor, mean: Tensor | float, std: Tensor | float) -> Tensor:
    """Elementwise log N(x; mean, std²), computed in float32 whatever the input dtype.

    PPO ratios are exponentials of log-prob differences summed over many elements; bf16/fp16
    rounding there would bias the ratio, so inputs are cast to float32 first.
    """
    x = x.to(torch.float32)
    mean = torch.as_tensor(mean, device=x.device).to(torch.float32)
    std = torch.as_tensor(std, device=x.device).to(torch.float32)
    return -((x - mean) ** 2) / (2.0 * std**2) - torch.log(std) - _LOG_SQRT_2PI


def gaussian_entropy(std: Tensor) -> Tensor:
    """Elementwise entropy ½·log(2πe·σ²) of N(·, σ²), in float32 (Flow-Noise entropy bonus)."""
    return 0.5 + _LOG_SQRT_2PI + torch.log(std.to(torch.float32))


# ----------------------------------------------------------------------------- chain log-probs


def gather_chain_step(chain: Tensor, step_index: Tensor) -> tuple[Tensor, Tensor]:
    """Pick ``(x_{t_k}, x_{t_{k+1}})`` per decision from a chain [..., K+1, H, D].

    ``step_index`` (integer, shape [...]) holds each decision's k in 0..K-1 (Flow-SDE's k*). The
    learner feeds ``x_{t_k}`` back to the network and scores ``x_{t_{k+1}}``. Both are [..., H, D].
    """
    horizon, dim = chain.shape[-2:]
    index = step_index.long()[..., None, None, None].expand(*step_index.shape, 1, horizon, dim)
    x_t = torch.gather(chain, -3, index).squeeze(-3)
    x_next = torch.gather(chain, -3, index + 1).squeeze(-3)
    return x_t, x_next


def flow_sde_chain_log_prob(chain: Tensor, step_index: Tensor, mean: Tensor, std: Tensor | float) -> Tensor:
    """Flow-SDE elementwise log-prob: log N(x_{t_{k*+1}}; μ_{k*}, std²), shape [..., H, D].

    Only step k* is stochastic (hybrid sampling); the other steps are deterministic and carry no
    likelihood. ``mean``/``std`` come from ``flow_sde_step`` at ``gather_chain_step(...)[0]``; a
    per-decision std must be shaped to broadcast against [..., H, D] (e.g. [B, 1, 1]).
    """
    _, x_next = gather_chain_step(chain, step_index)
    return gaussian_log_prob(x_next, mean, std)


def flow_noise_chain_log_prob(chain: Tensor, means: Tensor, stds: Tensor) -> Tensor:
    """Flow-Noise elementwise log-prob: mean over the K+1 chain terms, shape [..., H, D].

    Terms are ``log N(x_{t_0}; 0, I)`` and ``log N(x_{t_{k+1}}; μ_k, σ_k²)`` for k < K, where
    ``means``/``stds`` ([..., K, H, D], stds broadcastable) are the Euler means and noise-head stds
    evaluated at ``x_{t_k}``. Averaging (not summing) keeps the scale independent of K.
    """
    initial = gaussian_log_prob(chain[..., 0, :, :], 0.0, 1.0)
    transitions = gaussian_log_prob(chain[..., 1:, :, :], means, stds)
    return torch.cat([initial.unsqueeze(-3), transitions], dim=-3).mean(dim=-3)


# ----------------------------------------------------------------------------- chunk aggregation


def _executed_slice(per_element: Tensor, executed_steps: int, action_dim: int) -> Tensor:
    """Return ``per_element[..., :H', :D_env]`` after checking the bounds against [..., H, D]."""
    horizon, model_dim = per_element.shape[-2:]
    if not 1 <= executed_steps <= horizon:
        raise ValueError(f"executed_steps must be in [1, {horizon}], got {executed_steps}")
    if not 1 <= action_dim <= model_dim:
        raise ValueError(f"action_dim must be in [1, {model_dim}], got {action_dim}")
    return per_element[..., :executed_steps, :action_dim]


def token_log_prob(per_element: Tensor, executed_steps: int, action_dim: int) -> Tensor:
    """Per-action-token log-prob: for each executed step h < H', the sum over real env dims d < D_env.

    Unexecuted chunk steps never reach the env and padded model dims are not actions, so neither
    may influence the PPO ratio. [..., H, D_model] -> [..., H'] (one value per executed token; the
    elements are independent Gaussians given the chain, so the tokens' log-probs add up to the
    chunk's, ``aggregate_log_prob``).
    """
    return _executed_slice(per_element, executed_steps, action_dim).sum(dim=-1)


def aggregate_log_prob(per_element: Tensor, executed_steps: int, action_dim: int) -> Tensor:
    """Chunk-level log-prob: the sum of ``token_log_prob`` over h < H'. [..., H, D_model] -> [...]."""
    return token_log_prob(per_element, executed_steps, action_dim).sum(dim=-1)


def aggregate_entropy(per_element: Tensor, executed_steps: int, action_dim: int) -> Tensor:
    """Per-decision mean entropy over the same real slice as ``aggregate_log_prob``: [...]."""
    return _executed_slice(per_element, executed_steps, action_dim).mean(dim=(-2, -1))


# ----------------------------------------------------------------------------- PPO


def ppo_actor_loss(
    new_log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip_eps: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate ``-mean(min(ρ·Â, clip(ρ, 1-ε, 1+ε)·Â))``, ``ρ = exp(ℓ_new - ℓ_old)``.

    Returns (loss, diagnostics); diagnostics are detached: ``approx_kl`` (the low-variance
    estimator mean((ρ-1) - log ρ)), ``clip_frac`` (fraction with |ρ-1| > ε), ``ratio_mean``,
    ``ratio_max``.
    """
    log_ratio = new_log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -torch.min(unclipped, clipped).mean()
    with torch.no_grad():
        diagnostics = {
            "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
            "clip_frac": ((ratio - 1.0).abs() > clip_eps).float().mean(),
            "ratio_mean": ratio.mean(),
            "ratio_max": ratio.max(),
        }
    return loss, diagnostics


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, value_clip: float, huber_delta: float
) -> Tensor:
    """Clipped Huber critic loss ``mean(max(huber(R - V), huber(R - V_clipped)))``.

    ``V_clipped = V_old + clamp(V - V_old, ±value_clip)`` limits how far one update can move the
    value estimate; the Huber loss keeps large sparse-reward returns from dominating.
    """
    values_clipped = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
    loss_unclipped = F.huber_loss(values, returns, reduction="none", delta=huber_delta)
    loss_clipped = F.huber_loss(values_clipped, returns, reduction="none", delta=huber_delta)
    return torch.max(loss_unclipped, loss_clipped).mean()


def explained_variance(values: Tensor, returns: Tensor) -> Tensor:
    """Detached diagnostic ``1 - Var(R - V)/Var(R)``: 1 is perfect, <= 0 no better than a constant.

    Returns NaN when Var(R) = 0 (e.g. all episodes failed with zero reward): the ratio is undefined
    there, and NaN is what CleanRL/SB3 log, rather than a misleading 0 or 1.
    """
    with torch.no_grad():
        var_returns = torch.var(returns, correction=0)
        if var_returns == 0:
            return torch.full((), float("nan"), dtype=returns.dtype, device=returns.device)
        return 1.0 - torch.var(returns - values, correction=0) / var_returns


# ----------------------------------------------------------------------------- GAE


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over a time-ordered 1-D sequence of decisions.

    The sequence may hold several episodes back to back. ``next_values[i]`` is V of the
    observation after decision i; for a truncated decision that is the final observation of the
    episode (not the next episode's reset observation).

    * ``δ_i = r_i + γ·(1 - terminated_i)·next_values[i] - values[i]``: no bootstrap after a
      termination, bootstrap after a truncation (and after the last decision of the sequence).
    * ``A_i = δ_i + γλ·(1 - done_i)·A_{i+1}`` with ``done = terminated | truncated``: the λ-trace
      never crosses an episode boundary.

    Returns (advantages, returns = advantages + values), float32, shape [N].
    """
    n = rewards.shape[0]
    tensors = (rewards, values, next_values, terminated, truncated)
    if any(tensor.shape != (n,) for tensor in tensors):
        shapes = [tuple(tensor.shape) for tensor in tensors]
        raise ValueError(f"compute_gae expects 1-D tensors of equal length, got shapes {shapes}")
    rewards, values, next_values = (x.to(torch.float32) for x in (rewards, values, next_values))
    not_terminated = 1.0 - terminated.to(torch.float32)
    not_done = 1.0 - (terminated.bool() | truncated.bool()).to(torch.float32)

    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros((), dtype=torch.float32, device=rewards.device)
    for i in reversed(range(n)):
        next_advantage = deltas[i] + gamma * lam * not_done[i] * next_advantage
        advantages[i] = next_advantage
    return advantages, advantages + values


def normalize_advantages(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    """Standardise advantages over the batch: ``(Â - mean) / (std + eps)``.

    Uses the population std (correction=0), so a single-element batch gives 0 instead of NaN.
    """
    return (advantages - advantages.mean()) / (advantages.std(correction=0) + eps)
