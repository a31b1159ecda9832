"""πRL, read top to bottom: sample a denoising chain, score a recorded chain, the PPO loss.

Policy-agnostic: the policy is reached only through a `FlowPolicyAdapter` (``flow_rl.adapter``) and
the recipe-owned `PiRLHeads`; every formula is a function of ``flow_rl.math``. Chains are float32
with ``x_{t_0}`` the initial noise and ``x_{t_K}`` the action (t=1 noise, t=0 action, grid
``t_k = 1 - k/K``, step ``dt = 1/K``).

* **Flow-SDE (hybrid)**: per row one random step k* is stochastic, the others follow the ODE; the
  chain's density is the Gaussian of that one transition, so scoring needs one transformer pass.
* **Flow-Noise**: every step adds noise with a learned per-element std (the noise head reads the
  action-token features of the same pass); scoring runs all K steps in one batched pass.
* **deterministic**: the x̂₁-based ODE with no noise (evaluation; no density).

Log-probs cover the executed steps h < H' and the real action dims only: one per action token
(``token_log_prob``, summed over dims), and their sum per decision. The loss forms the PPO ratio
per decision or per token (``PiRLLossConfig.ratio_granularity``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .adapter import EncodedObservation, FlowPolicyAdapter
from .heads import PiRLHeads
from .math import (
    aggregate_entropy,
    clipped_value_loss,
    explained_variance,
    flow_noise_chain_log_prob,
    flow_sde_chain_log_prob,
    flow_sde_sigmas,
    flow_sde_step,
    gather_chain_step,
    gaussian_entropy,
    ode_step_mean,
    ppo_actor_loss,
    std_bounds_to_log_var_bounds,
    time_grid,
    token_log_prob,
)
from .settings import PiRLLossConfig, PiRLSampling


@dataclass
class ChainSample:
    """A sampled chain [B, K+1, H, D], Flow-SDE's k* [B] (-1 when none) and the per-token log-probs
    [B, H'] of its executed tokens (NaN for the deterministic sampler, which has no density)."""

    chain: Tensor
    step_index: Tensor
    token_log_prob: Tensor

    @property
    def log_prob(self) -> Tensor:
        """The chunk's log-prob [B]: the sum over its executed tokens."""
        return self.token_log_prob.sum(dim=-1)


@dataclass
class PiRLOutputs:
    """Recomputed, differentiable: ``token_log_prob`` [B, H'], ``value`` [B], ``entropy`` [B]
    (float32)."""

    token_log_prob: Tensor
    value: Tensor
    entropy: Tensor

    @property
    def log_prob(self) -> Tensor:
        """The chunk's log-prob [B]: the sum over its executed tokens."""
        return self.token_log_prob.sum(dim=-1)


def randn(
    shape: tuple[int, ...], device: torch.device, dtype: torch.dtype, generator: torch.Generator | None
) -> Tensor:
    """Standard normal draw from ``generator`` (on its own device) or the global RNG."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def randint(high: int, size: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """Uniform integers in [0, high) drawn like ``randn``."""
    if generator is None:
        return torch.randint(high, (size,), device=device)
    return torch.randint(high, (size,), generator=generator, device=generator.device).to(device)


@torch.no_grad()
def sample_chain(
    adapter: FlowPolicyAdapter,
    heads: PiRLHeads,
    obs: EncodedObservation,
    sampling: PiRLSampling,
    mode: str,
    *,
    generator: torch.Generator | None = None,
    initial_noise: Tensor | None = None,
) -> ChainSample:
    """Run the chain from x_{t_0} = ``initial_noise`` (default N(0, I)) with ``mode`` =
    ``flow_sde`` / ``flow_noise`` / ``deterministic`` (``sampling`` resolved: K and H' set)."""
    assert sampling.num_steps is not None and sampling.executed_steps is not None
    num_steps, dt = sampling.num_steps, 1.0 / sampling.num_steps
    batch_size, device = obs.state.shape[0], obs.state.device
    shape = (batch_size, adapter.chunk_size, adapter.model_action_dim)
    grid = time_grid(num_steps, device=device)
    x = randn(shape, device, torch.float32, generator) if initial_noise is None else initial_noise.float()
    x = x.to(device)

    step_index = torch.full((batch_size,), -1, dtype=torch.long, device=device)
    if mode == "flow_sde":
        step_index = randint(num_steps, batch_size, device, generator)
        sigmas = flow_sde_sigmas(num_steps, sampling.noise_level, device=device)
        sde_noise = randn(shape, device, torch.float32, generator)
        sde_mean, sde_std = torch.zeros_like(x), torch.zeros(batch_size, 1, 1, device=device)
    log_var_bounds = std_bounds_to_log_var_bounds(sampling.noise_std_min, sampling.noise_std_max)

    chain, means, stds = [x], [], []
    for k in range(num_steps):
        t = grid[k].expand(batch_size)
        if mode == "flow_noise":
            x0_hat, tokens = adapter.predict_with_tokens(obs, x, t)
            mean = ode_step_mean(x, x0_hat, t.view(-1, 1, 1), dt)
            std = heads.noise_std(tokens, log_var_bounds)
            x = mean + std * randn(shape, device, torch.float32, generator)
            means.append(mean)
            stds.append(std)
        elif mode == "flow_sde":
            x0_hat = adapter.predict_clean_action(obs, x, t)
            stochastic = (step_index == k).view(-1, 1, 1)
            sigma = torch.where(stochastic, sigmas[k], 0.0)
            mean, std = flow_sde_step(x, x0_hat, t.view(-1, 1, 1), dt, sigma)
            x = mean + std * sde_noise
            sde_mean = torch.where(stochastic, mean, sde_mean)
            sde_std = torch.where(stochastic, std, sde_std)
        elif mode == "deterministic":
            x = ode_step_mean(x, adapter.predict_clean_action(obs, x, t), t.view(-1, 1, 1), dt)
        else:
            raise ValueError(f"mode must be flow_sde, flow_noise or deterministic, got {mode!r}")
        chain.append(x)
    chain_t = torch.stack(chain, dim=1)

    if mode == "flow_sde":
        per_element = flow_sde_chain_log_prob(chain_t, step_index, sde_mean, sde_std)
    elif mode == "flow_noise":
        per_element = flow_noise_chain_log_prob(chain_t, torch.stack(means, 1), torch.stack(stds, 1))
    else:
        no_density = torch.full((batch_size, sampling.executed_steps), float("nan"), device=device)
        return ChainSample(chain_t, step_index, no_density)
    tokens_log_prob = token_log_prob(per_element, sampling.executed_steps, adapter.real_action_dim)
    return ChainSample(chain_t, step_index, tokens_log_prob)


def score_chain(
    adapter: FlowPolicyAdapter,
    heads: PiRLHeads,
    obs: EncodedObservation,
    chain: Tensor,
    step_index: Tensor,
    sampling: PiRLSampling,
) -> PiRLOutputs:
    """Log-prob, value and entropy of recorded chains under the current weights, with gradients.

    ``chain`` [B, K+1, H, D] float32; ``step_index`` [B] integer k* (Flow-SDE only). Flow-SDE runs
    the transformer once, at each row's k*, and its entropy (fixed by the schedule) is reported,
    never optimised; Flow-Noise scores all K steps in one pass over B·K rows.
    """
    assert sampling.num_steps is not None and sampling.executed_steps is not None
    num_steps, executed_steps, dt = sampling.num_steps, sampling.executed_steps, 1.0 / sampling.num_steps
    batch_size, device = obs.state.shape[0], obs.state.device
    expected = (batch_size, num_steps + 1, adapter.chunk_size, adapter.model_action_dim)
    if tuple(chain.shape) != expected:
        raise ValueError(f"chain must have shape [B, K+1, H, D] = {expected}, got {tuple(chain.shape)}")
    grid = time_grid(num_steps, device=device)
    value = heads.value(obs.features, obs.state)

    if sampling.noise_method == "flow_sde":
        if step_index.shape != (batch_size,) or not bool(
            ((step_index >= 0) & (step_index < num_steps)).all()
        ):
            raise ValueError(f"step_index must be [B] with values in [0, {num_steps - 1}]")
        x_t, _ = gather_chain_step(chain, step_index)
        t = grid[step_index]
        x0_hat = adapter.predict_clean_action(obs, x_t, t)
        sigma = flow_sde_sigmas(num_steps, sampling.noise_level, device=device)[step_index]
        mean, std = flow_sde_step(x_t, x0_hat, t.view(-1, 1, 1), dt, sigma.view(-1, 1, 1))
        per_element = flow_sde_chain_log_prob(chain, step_index, mean, std)
        entropy = gaussian_entropy(std).view(batch_size)
    else:
        horizon, dim = chain.shape[-2:]
        x_t = chain[:, :num_steps].flatten(0, 1)
        t = grid[:num_steps].repeat(batch_size)
        x0_hat, tokens = adapter.predict_with_tokens(obs.repeat_rows(num_steps), x_t, t)
        means = ode_step_mean(x_t, x0_hat, t.view(-1, 1, 1), dt)
        log_var_bounds = std_bounds_to_log_var_bounds(sampling.noise_std_min, sampling.noise_std_max)
        stds = heads.noise_std(tokens, log_var_bounds)
        means = means.view(batch_size, num_steps, horizon, dim)
        stds = stds.view(batch_size, num_steps, horizon, dim)
        per_element = flow_noise_chain_log_prob(chain, means, stds)
        entropy = aggregate_entropy(
            gaussian_entropy(stds).mean(dim=1), executed_steps, adapter.real_action_dim
        )
    tokens_log_prob = token_log_prob(per_element, executed_steps, adapter.real_action_dim)
    return PiRLOutputs(token_log_prob=tokens_log_prob, value=value, entropy=entropy)


def pi_rl_loss(
    outputs: PiRLOutputs,
    old_token_log_prob: Tensor,
    old_value: Tensor,
    advantage: Tensor,
    returns: Tensor,
    loss: PiRLLossConfig,
    noise_method: str,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clipped actor + value_coef · clipped-Huber critic − entropy_coef · entropy.

    ``old_token_log_prob`` [B, H'] are the behaviour policy's per-token log-probs. With
    ``ratio_granularity="decision"`` the ratio is the chunk's, exp of the summed token log-prob
    differences; with ``"token"`` each executed token has its own ratio, clipped on its own, and
    every token of a decision shares the decision's advantage (the surrogate is their mean);
    ``approx_kl`` is the chunk's in both modes.
    The entropy term is on for Flow-Noise only (Flow-SDE's std is fixed by its schedule). Returns
    the total loss and TorchRL-style ``loss_*`` terms plus diagnostics, all detached floats.
    """
    new_chunk, old_chunk = outputs.log_prob, old_token_log_prob.sum(dim=-1)
    if loss.ratio_granularity == "token":
        token_advantage = advantage.unsqueeze(-1)
        loss_actor, diagnostics = ppo_actor_loss(
            outputs.token_log_prob, old_token_log_prob, token_advantage, loss.clip_eps
        )
        # approx_kl stays the chunk's in both modes, so target_kl means the same policy change.
        with torch.no_grad():
            log_ratio = new_chunk - old_chunk
            diagnostics["approx_kl"] = (torch.expm1(log_ratio) - log_ratio).mean()
    else:
        loss_actor, diagnostics = ppo_actor_loss(new_chunk, old_chunk, advantage, loss.clip_eps)
    loss_value = clipped_value_loss(outputs.value, old_value, returns, loss.value_clip, loss.huber_delta)
    entropy = outputs.entropy.mean()
    entropy_coef = loss.entropy_coef if noise_method == "flow_noise" else 0.0
    loss_entropy = -entropy_coef * entropy
    total = loss_actor + loss.value_coef * loss_value + loss_entropy
    metrics = {
        "loss": total,
        "loss_actor": loss_actor,
        "loss_value": loss_value,
        "loss_entropy": loss_entropy,
        "entropy": entropy,
        "explained_variance": explained_variance(outputs.value, returns),
        "value_mean": outputs.value.mean(),
        "log_prob_mean": outputs.log_prob.mean(),
        **diagnostics,
    }
    return total, {name: float(value.detach()) for name, value in metrics.items()}
