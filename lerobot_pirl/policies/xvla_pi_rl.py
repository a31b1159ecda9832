"""πRL for LeRobot's XVLA: stochastic flow sampling with exact log-probs, and a PPO forward.

``PiRLMixin`` adds the πRL contract to the stock ``XVLAPolicy`` without registering anything:
``policy.type`` stays ``"xvla"``, ``state_dict()`` keys are the stock ones, and a fine-tuned
checkpoint loads in stock LeRobot as a plain XVLA policy. The value and noise heads
(``PiRLHeads``) belong to the recipe, which owns, optimises and checkpoints them; the policy only
borrows them through ``attach_pi_rl``.

Conventions follow ``lerobot_pirl.flow_rl.math`` (RLinf's): t=1 noise, t=0 action, grid
``t_k = 1 - k/K``. XVLA's transformer predicts the clean action x̂₀ in *model* action space
(``model.dim_action``, e.g. 20 for ``action_mode="auto"``); the chain ``x_{t_0..t_K}`` lives in that
space and the env receives ``action_space.postprocess(x_{t_K})``. Log-probs count only the executed
steps h < H' and the *real* action dims: the prefix of model dims that ``postprocess`` hands to the
env (auto: the action feature's dim; ee6d: all 20 — its gripper sigmoid is a fixed bijection whose
Jacobian cancels in the PPO ratio).

Where this reaches into XVLA internals (all by import, nothing copied): ``_build_model_inputs``,
``model.forward_vlm``, ``model.transformer`` (called as a whole; per-action-token features are
read with a forward hook on ``transformer.norm``), ``model.action_space`` and
``model._get_target_dtype``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from lerobot.policies.xvla.configuration_xvla import XVLAConfig
from lerobot.policies.xvla.modeling_xvla import XVLAModel, XVLAPolicy
from torch import Tensor, nn

from lerobot_pirl.flow_rl.math import (
    aggregate_entropy,
    aggregate_log_prob,
    clipped_value_loss,
    explained_variance,
    flow_noise_chain_log_prob,
    flow_noise_std,
    flow_sde_chain_log_prob,
    flow_sde_sigmas,
    flow_sde_step,
    gather_chain_step,
    gaussian_entropy,
    ode_step_mean,
    ppo_actor_loss,
    std_bounds_to_log_var_bounds,
    time_grid,
)

NoiseMethod = Literal["flow_sde", "flow_noise"]
SampleMode = Literal["flow_sde", "flow_noise", "deterministic", "native"]
NOISE_METHODS: tuple[str, ...] = get_args(NoiseMethod)
SAMPLE_MODES: tuple[str, ...] = get_args(SampleMode)
FORWARD_MODELS: tuple[str | None, ...] = (None, "pi_rl")

# Batch keys of the πRL forward (besides the observation keys the stock policy reads).
PI_RL_CHAIN = "pi_rl.chain"
PI_RL_STEP_INDEX = "pi_rl.step_index"
PI_RL_OLD_LOG_PROB = "pi_rl.old_log_prob"
PI_RL_OLD_VALUE = "pi_rl.old_value"
PI_RL_ADVANTAGE = "pi_rl.advantage"
PI_RL_RETURN = "pi_rl.return"


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PiRLSampling:
    """How rollouts are sampled and scored.

    ``num_steps`` (K) and ``executed_steps`` (H') default to the policy config's
    ``num_denoising_steps`` and ``n_action_steps``; ``attach_pi_rl`` resolves them. ``noise_level``
    is Flow-SDE's a (paper: 0.3–0.8); the std bounds are Flow-Noise's (π0: [0.08, 0.16]).
    """

    noise_method: NoiseMethod = "flow_sde"
    num_steps: int | None = None
    noise_level: float = 0.5
    noise_std_min: float = 0.08
    noise_std_max: float = 0.16
    executed_steps: int | None = None

    def __post_init__(self) -> None:
        if self.noise_method not in NOISE_METHODS:
            raise ValueError(
                f"PiRLSampling.noise_method must be one of {NOISE_METHODS}, got {self.noise_method!r}"
            )
        if self.num_steps is not None and self.num_steps < 1:
            raise ValueError(f"PiRLSampling.num_steps must be >= 1 (or None), got {self.num_steps}")
        if not self.noise_level > 0:
            raise ValueError(f"PiRLSampling.noise_level must be > 0 (paper: 0.3-0.8), got {self.noise_level}")
        if not 0 < self.noise_std_min <= self.noise_std_max:
            raise ValueError(
                "PiRLSampling needs 0 < noise_std_min <= noise_std_max, got "
                f"noise_std_min={self.noise_std_min}, noise_std_max={self.noise_std_max}"
            )
        if self.executed_steps is not None and self.executed_steps < 1:
            raise ValueError(f"PiRLSampling.executed_steps must be >= 1 (or None), got {self.executed_steps}")

    def resolve(self, config: XVLAConfig) -> PiRLSampling:
        """Fill the defaults from ``config`` and check H' against its chunk size."""
        resolved = dataclasses.replace(
            self,
            num_steps=self.num_steps if self.num_steps is not None else config.num_denoising_steps,
            executed_steps=self.executed_steps if self.executed_steps is not None else config.n_action_steps,
        )
        if resolved.executed_steps > config.chunk_size:
            raise ValueError(
                f"PiRLSampling.executed_steps must be in [1, chunk_size={config.chunk_size}], "
                f"got {resolved.executed_steps}"
            )
        return resolved


@dataclass(frozen=True)
class PiRLLossConfig:
    """PPO hyperparameters of ``forward(batch, model="pi_rl")`` (πRL paper defaults)."""

    clip_eps: float = 0.2
    value_clip: float = 0.2
    huber_delta: float = 10.0
    entropy_coef: float = 0.005
    value_coef: float = 1.0

    def __post_init__(self) -> None:
        for name in ("clip_eps", "value_clip", "huber_delta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PiRLLossConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("entropy_coef", "value_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"PiRLLossConfig.{name} must be >= 0, got {getattr(self, name)}")


# ----------------------------------------------------------------------------- heads


def _mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for hidden in hidden_dims:
        layers += [nn.Linear(in_dim, hidden), nn.GELU()]
        in_dim = hidden
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class PiRLHeads(nn.Module):
    """The recipe-owned πRL heads: a critic, and Flow-Noise's std head.

    * ``value_head``: MLP on [mean-pooled VLM encoder features ⊕ normalised padded proprio
      state]. The proprio is included because state may reach XVLA only through proprio (e.g. a
      blank image). Raw proprio mixes metres, radians and velocities, which an MLP critic fits
      poorly: it is standardised with running statistics (``observe_state``, buffers that travel
      with the heads' state dict; identity until the first call). With ``detach_value_input`` the
      critic never trains shared (VLM) parameters.
    * ``noise_head`` (Flow-Noise only): per-action-token transformer features → raw per-element
      log-variance logits of size ``action_dim``, bounded by ``flow_noise_std``.

    Heads run in float32 whatever the policy dtype.
    """

    state_mean: Tensor
    state_var: Tensor
    state_count: Tensor

    def __init__(
        self,
        vlm_dim: int,
        proprio_dim: int,
        token_dim: int,
        action_dim: int,
        *,
        noise_head: bool,
        value_hidden_dims: Sequence[int] = (256, 256, 256),
        noise_hidden_dim: int = 128,
        detach_value_input: bool = True,
    ) -> None:
        super().__init__()
        self.vlm_dim = vlm_dim
        self.proprio_dim = proprio_dim
        self.token_dim = token_dim
        self.action_dim = action_dim
        self.detach_value_input = detach_value_input
        self.value_head = _mlp(vlm_dim + proprio_dim, value_hidden_dims, 1)
        self.noise_head = _mlp(token_dim, (noise_hidden_dim,), action_dim) if noise_head else None
        self.register_buffer("state_mean", torch.zeros(proprio_dim))
        self.register_buffer("state_var", torch.ones(proprio_dim))
        self.register_buffer("state_count", torch.zeros(()))

    @classmethod
    def for_policy(cls, policy: XVLAPolicy, *, noise_head: bool, **kwargs: Any) -> PiRLHeads:
        """Heads sized for ``policy`` (VLM projection dim, proprio dim, hidden size, model action dim)."""
        model: XVLAModel = policy.model
        return cls(
            vlm_dim=policy.config.get_florence_config().vision_config.projection_dim,
            proprio_dim=model.dim_proprio,
            token_dim=policy.config.hidden_size,
            action_dim=model.dim_action,
            noise_head=noise_head,
            **kwargs,
        ).to(policy.config.device)

    @torch.no_grad()
    def observe_state(self, proprio: Tensor) -> None:
        """Merge a batch of padded proprio rows [N, P] into the running mean / variance.

        Parallel-variance merge (Chan et al.): with batch mean m_b, variance v_b over n_b rows and
        running (m, v, n): δ = m_b − m, n' = n + n_b, m' = m + δ·n_b/n', and
        v' = (v·n + v_b·n_b + δ²·n·n_b/n') / n'.
        """
        rows = proprio.detach().float().reshape(-1, self.proprio_dim).to(self.state_mean.device)
        n_b = float(rows.shape[0])
        if n_b == 0:
            return
        mean_b, var_b = rows.mean(dim=0), rows.var(dim=0, unbiased=False)
        n = float(self.state_count)
        total = n + n_b
        delta = mean_b - self.state_mean
        if n == 0:
            self.state_mean.copy_(mean_b)
            self.state_var.copy_(var_b)
        else:
            self.state_mean.add_(delta * (n_b / total))
            self.state_var.copy_(
                (self.state_var * n + var_b * n_b + delta.square() * (n * n_b / total)) / total
            )
        self.state_count.fill_(total)

    def normalized_state(self, proprio: Tensor) -> Tensor:
        """(proprio − mean) / sqrt(var + 1e-8), clipped to ±10 (constant padded dims map to 0);
        the raw proprio before any statistics were observed."""
        if not bool(self.state_count > 0):
            return proprio.float()
        scaled = (proprio.float() - self.state_mean) / torch.sqrt(self.state_var + 1e-8)
        return scaled.clamp(-10.0, 10.0)

    def value(self, vlm_features: Tensor, proprio: Tensor) -> Tensor:
        """V(s) from VLM features [B, T, C] and padded proprio [B, P] -> [B] float32."""
        inputs = torch.cat([vlm_features.float().mean(dim=1), self.normalized_state(proprio)], dim=-1)
        if self.detach_value_input:
            inputs = inputs.detach()
        return self.value_head(inputs).squeeze(-1)

    def noise_std(self, token_features: Tensor, log_var_bounds: tuple[float, float]) -> Tensor:
        """Per-element Flow-Noise std from action-token features [..., H, hidden] -> [..., H, D]."""
        if self.noise_head is None:
            raise RuntimeError("these PiRLHeads were built without a noise head (noise_head=False)")
        return flow_noise_std(self.noise_head(token_features.float()), *log_var_bounds)


# ----------------------------------------------------------------------------- records


@dataclass
class PiRLRecord:
    """What a rollout decision records (float32 except ``step_index``).

    ``chain`` [B, K+1, H, D_model] is x_{t_0..t_K}; ``step_index`` [B] is Flow-SDE's k* (-1 when
    no single stochastic step exists); ``log_prob`` [B] is the chunk-level log-prob over the
    executed real slice (NaN for the deterministic samplers, which have no density); ``value`` [B].
    """

    chain: Tensor
    step_index: Tensor
    log_prob: Tensor
    value: Tensor

    def row(self, index: int) -> PiRLRecord:
        """Row ``index`` as a record of batch size one."""
        rows = slice(index, index + 1)
        return PiRLRecord(self.chain[rows], self.step_index[rows], self.log_prob[rows], self.value[rows])

    def to_batch(self) -> dict[str, Tensor]:
        """The record under the batch keys ``forward(model="pi_rl")`` reads (as its *old* values)."""
        return {
            PI_RL_CHAIN: self.chain,
            PI_RL_STEP_INDEX: self.step_index,
            PI_RL_OLD_LOG_PROB: self.log_prob,
            PI_RL_OLD_VALUE: self.value,
        }


@dataclass
class PiRLOutputs:
    """Recomputed, differentiable: ``log_prob`` [B], ``value`` [B], ``entropy`` [B] (float32)."""

    log_prob: Tensor
    value: Tensor
    entropy: Tensor


@dataclass
class _Attachment:
    """Plain (non-Module) holder, so attached heads never enter the policy's state_dict."""

    heads: PiRLHeads
    sampling: PiRLSampling  # resolved: num_steps and executed_steps are set
    loss: PiRLLossConfig
    num_steps: int  # K
    executed_steps: int  # H'
    real_action_dim: int
    vlm_parameters: list[nn.Parameter]  # to check cheaply, per forward, whether the VLM trains
    modules: list[nn.Module]  # the policy's modules, for the per-forward dropout guard


@dataclass
class _Observation:
    """Encoded observation: VLM outputs and transformer inputs, computed once per batch."""

    enc: dict[str, Tensor]
    proprio: Tensor  # [B, P] in the model dtype, as XVLA feeds its transformer
    state: Tensor  # [B, P] float32, the value head's proprio input
    domain_id: Tensor

    def repeat_rows(self, times: int) -> _Observation:
        """Each row repeated ``times`` times in place (b-major), to batch K denoising steps."""

        def rep(x: Tensor) -> Tensor:
            return x.repeat_interleave(times, dim=0)

        return _Observation(
            {k: rep(v) for k, v in self.enc.items()}, rep(self.proprio), rep(self.state), rep(self.domain_id)
        )


@contextmanager
def _captured_output(module: nn.Module) -> Iterator[list[Tensor]]:
    """Collect ``module``'s forward outputs while the context is open."""
    outputs: list[Tensor] = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


@contextmanager
def _dropout_free(module: nn.Module, modules: Sequence[nn.Module] | None = None) -> Iterator[None]:
    """Eval mode for the duration, then each submodule's own mode back.

    The PPO ratio compares the recomputed density with the rollout's, which ran in eval mode;
    dropout (XVLA's transformer and BART have some) would make the ratio noise.
    """
    # ``modules``: ``module.modules()`` listed once (walking the tree costs ~1 ms a forward).
    # Usually none is training: the recipe runs its updates in eval mode.
    training = [m for m in (module.modules() if modules is None else modules) if m.training]
    if training:
        module.eval()
    try:
        yield
    finally:
        for m in training:
            m.training = True


def _randn(
    shape: tuple[int, ...], device: torch.device, dtype: torch.dtype, generator: torch.Generator | None
) -> Tensor:
    """Standard normal draw from ``generator`` (on its own device) or the global RNG like stock XVLA."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def _randint(high: int, size: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """Uniform integers in [0, high) drawn like ``_randn``."""
    if generator is None:
        return torch.randint(high, (size,), device=device)
    return torch.randint(high, (size,), generator=generator, device=generator.device).to(device)


# ----------------------------------------------------------------------------- mixin


# Type checkers see the mixin as an XVLAPolicy; at run time it stays a plain cooperative mixin.
if TYPE_CHECKING:
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy as _MixinBase
else:
    _MixinBase = object


class PiRLMixin(_MixinBase):
    """Adds πRL sampling and ``forward(batch, model="pi_rl")`` to an ``XVLAPolicy`` subclass."""

    config: XVLAConfig

    def __init__(self, config: XVLAConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._pi_rl: _Attachment | None = None

    # -------------------------------------------------------------- attachment

    def attach_pi_rl(
        self, heads: PiRLHeads, sampling: PiRLSampling | None = None, loss: PiRLLossConfig | None = None
    ) -> None:
        """Borrow the recipe's heads and settings; the heads stay out of ``state_dict()``."""
        sampling = (sampling or PiRLSampling()).resolve(self.config)
        projection_dim = self.config.get_florence_config().vision_config.projection_dim
        expected = (projection_dim, self.model.dim_proprio, self.config.hidden_size, self.model.dim_action)
        got = (heads.vlm_dim, heads.proprio_dim, heads.token_dim, heads.action_dim)
        if got != expected:
            raise ValueError(
                "PiRLHeads dims (vlm, proprio, token, action) do not fit this policy: "
                f"got {got}, expected {expected}; build them with PiRLHeads.for_policy(policy, ...)"
            )
        if sampling.noise_method == "flow_noise" and heads.noise_head is None:
            raise ValueError("noise_method='flow_noise' needs PiRLHeads built with noise_head=True")
        # postprocess keeps a prefix of the model dims for every stock action space: its width is
        # the number of real env dims.
        probe = torch.zeros(1, 1, self.model.dim_action)
        real_action_dim = int(self.model.action_space.postprocess(probe).shape[-1])
        assert sampling.num_steps is not None and sampling.executed_steps is not None  # resolved
        self._pi_rl = _Attachment(
            heads,
            sampling,
            loss or PiRLLossConfig(),
            sampling.num_steps,
            sampling.executed_steps,
            real_action_dim,
            list(self.model.vlm.parameters()),
            list(self.modules()),
        )

    def _attachment(self) -> _Attachment:
        if self._pi_rl is None:
            raise RuntimeError("call policy.attach_pi_rl(heads, sampling) before using πRL methods")
        return self._pi_rl

    @property
    def pi_rl_heads(self) -> PiRLHeads:
        """The attached (recipe-owned) heads."""
        return self._attachment().heads

    @property
    def pi_rl_sampling(self) -> PiRLSampling:
        """The resolved sampling settings (K and H' filled in)."""
        return self._attachment().sampling

    @property
    def pi_rl_action_dim(self) -> int:
        """Number of real env action dims that log-probs are aggregated over."""
        return self._attachment().real_action_dim

    # -------------------------------------------------------------- model access

    def _encode_observation(self, batch: dict[str, Tensor]) -> _Observation:
        """Stock input preparation + VLM encoding; without autograd when no VLM weight trains."""
        inputs = self._build_model_inputs(batch)
        dtype = self.model._get_target_dtype()
        attachment = self._pi_rl
        vlm_parameters = attachment.vlm_parameters if attachment is not None else self.model.vlm.parameters()
        vlm_trains = torch.is_grad_enabled() and any(p.requires_grad for p in vlm_parameters)
        with torch.set_grad_enabled(vlm_trains):
            enc = self.model.forward_vlm(
                inputs["input_ids"], inputs["image_input"].to(dtype=dtype), inputs["image_mask"]
            )
        proprio = inputs["proprio"]
        return _Observation(enc, proprio.to(dtype=dtype), proprio.float(), inputs["domain_id"])

    def _predict_clean_action(self, obs: _Observation, x_t: Tensor, t: Tensor) -> Tensor:
        """One transformer pass: x̂₀ at (x_t, t [B]), in the model dtype.

        Inputs go through ``action_space.preprocess`` exactly as in stock ``generate_actions``.
        """
        dtype = self.model._get_target_dtype()
        proprio_m, x_t_m = self.model.action_space.preprocess(obs.proprio, x_t.to(dtype=dtype))
        return self.model.transformer(
            domain_id=obs.domain_id, action_with_noise=x_t_m, proprio=proprio_m, t=t.to(dtype), **obs.enc
        )

    def _predict_with_tokens(self, obs: _Observation, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """x̂₀ plus the per-action-token features [B, H, hidden] (``transformer.norm``'s output)."""
        with _captured_output(self.model.transformer.norm) as captured:
            x0_hat = self._predict_clean_action(obs, x_t, t)
        return x0_hat, captured[0]

    # -------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample_actions(
        self,
        batch: dict[str, Tensor],
        mode: SampleMode | None = None,
        generator: torch.Generator | None = None,
        initial_noise: Tensor | None = None,
    ) -> tuple[Tensor, PiRLRecord]:
        """Sample an action chunk [B, chunk, D_env] and its πRL record from a preprocessed batch.

        ``mode`` (default: the attached ``noise_method``): ``"flow_sde"`` (hybrid: one random
        stochastic step k* per row, the others ODE), ``"flow_noise"`` (every step stochastic with
        the noise head's std), ``"deterministic"`` (the Euler/x̂₁ ODE the recipe trains with) or
        ``"native"`` (stock XVLA's fixed-x1 sampler; equals ``predict_action_chunk`` for the same
        RNG state when K == ``config.num_denoising_steps``). A stochastic mode must match the
        attached ``noise_method``, since that is how the learner scores the chain.
        ``initial_noise`` [B, chunk, D_model] replaces the chain's start x_{t_0} ~ N(0, I) (e.g.
        per-episode noise streams that do not depend on how episodes are batched).
        """
        attachment = self._attachment()
        sampling = attachment.sampling
        mode = mode or sampling.noise_method
        if mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
        if mode in NOISE_METHODS and mode != sampling.noise_method:
            raise ValueError(
                f"mode={mode!r} differs from the attached noise_method={sampling.noise_method!r}; "
                "the learner would score the chain with the wrong density"
            )
        if any(m.training for m in attachment.modules):  # Module.eval() walks the tree: ~1 ms
            self.eval()
        obs = self._encode_observation(batch)
        if initial_noise is not None:
            expected = (obs.proprio.shape[0], self.config.chunk_size, self.model.dim_action)
            if tuple(initial_noise.shape) != expected:
                raise ValueError(
                    f"initial_noise must have shape {expected}, got {tuple(initial_noise.shape)}"
                )
        if mode == "native":
            chain, model_action = self._native_chain(obs, attachment.num_steps, generator, initial_noise)
            actions = self.model.action_space.postprocess(model_action)
            step_index = torch.full_like(obs.domain_id, -1)
            log_prob = torch.full(step_index.shape, float("nan"), device=chain.device)
        else:
            chain, step_index, log_prob = self._flow_chain(obs, mode, generator, initial_noise)
            actions = self.model.action_space.postprocess(chain[:, -1].clone())
        value = attachment.heads.value(obs.enc["vlm_features"], obs.state)
        return actions, PiRLRecord(chain=chain, step_index=step_index, log_prob=log_prob, value=value)

    def _native_chain(
        self,
        obs: _Observation,
        num_steps: int,
        generator: torch.Generator | None,
        initial_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Stock XVLA's sampler, op for op: x_t = t·x1 + (1-t)·x̂₀ with the *fixed* initial x1."""
        dtype = self.model._get_target_dtype()
        batch_size, device = obs.proprio.shape[0], obs.proprio.device
        shape = (batch_size, self.config.chunk_size, self.model.dim_action)
        x1 = (
            _randn(shape, device, dtype, generator)
            if initial_noise is None
            else initial_noise.to(device, dtype)
        )
        action = torch.zeros_like(x1)
        chain = []
        for i in range(num_steps, 0, -1):
            t = torch.full((batch_size,), i / num_steps, device=device, dtype=dtype)
            x_t = x1 * t.view(-1, 1, 1) + action * (1 - t).view(-1, 1, 1)
            chain.append(x_t.float())
            action = self._predict_clean_action(obs, x_t, t)
        chain.append(action.float())
        return torch.stack(chain, dim=1), action

    def _flow_chain(
        self,
        obs: _Observation,
        mode: SampleMode,
        generator: torch.Generator | None,
        initial_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The x̂₁-based chain (ODE / hybrid Flow-SDE / Flow-Noise) in float32, with its log-prob."""
        attachment = self._attachment()
        sampling, heads = attachment.sampling, attachment.heads
        num_steps, dt = attachment.num_steps, 1.0 / attachment.num_steps
        batch_size, device = obs.proprio.shape[0], obs.proprio.device
        shape = (batch_size, self.config.chunk_size, self.model.dim_action)
        grid = time_grid(num_steps, device=device)

        x = (
            _randn(shape, device, torch.float32, generator)
            if initial_noise is None
            else initial_noise.to(device, torch.float32)
        )
        step_index = torch.full((batch_size,), -1, dtype=torch.long, device=device)
        if mode == "flow_sde":
            step_index = _randint(num_steps, batch_size, device, generator)
            sigmas = flow_sde_sigmas(num_steps, sampling.noise_level, device=device)
            sde_noise = _randn(shape, device, torch.float32, generator)
            sde_mean, sde_std = torch.zeros_like(x), torch.zeros(batch_size, 1, 1, device=device)
        log_var_bounds = std_bounds_to_log_var_bounds(sampling.noise_std_min, sampling.noise_std_max)

        chain, means, stds = [x], [], []
        for k in range(num_steps):
            t = grid[k].expand(batch_size)
            if mode == "flow_noise":
                x0_hat, tokens = self._predict_with_tokens(obs, x, t)
                mean = ode_step_mean(x, x0_hat.float(), t.view(-1, 1, 1), dt)
                std = heads.noise_std(tokens, log_var_bounds)
                x = mean + std * _randn(shape, device, torch.float32, generator)
                means.append(mean)
                stds.append(std)
            elif mode == "flow_sde":
                x0_hat = self._predict_clean_action(obs, x, t).float()
                stochastic = (step_index == k).view(-1, 1, 1)
                sigma = torch.where(stochastic, sigmas[k], 0.0)
                mean, std = flow_sde_step(x, x0_hat, t.view(-1, 1, 1), dt, sigma)
                x = mean + std * sde_noise
                sde_mean = torch.where(stochastic, mean, sde_mean)
                sde_std = torch.where(stochastic, std, sde_std)
            else:
                x = ode_step_mean(x, self._predict_clean_action(obs, x, t).float(), t.view(-1, 1, 1), dt)
            chain.append(x)
        chain_t = torch.stack(chain, dim=1)

        if mode == "flow_sde":
            per_element = flow_sde_chain_log_prob(chain_t, step_index, sde_mean, sde_std)
        elif mode == "flow_noise":
            per_element = flow_noise_chain_log_prob(chain_t, torch.stack(means, 1), torch.stack(stds, 1))
        else:
            return chain_t, step_index, torch.full((batch_size,), float("nan"), device=device)
        log_prob = aggregate_log_prob(per_element, attachment.executed_steps, attachment.real_action_dim)
        return chain_t, step_index, log_prob

    @torch.no_grad()
    def pi_rl_observe_state(self, batch: dict[str, Tensor]) -> None:
        """Update the value head's running proprio statistics with a batch of observations."""
        self._attachment().heads.observe_state(self._build_model_inputs(batch)["proprio"])

    @torch.no_grad()
    def pi_rl_value(self, batch: dict[str, Tensor]) -> Tensor:
        """V(s) [B] float32 of observations without sampling, e.g. to bootstrap a truncation."""
        with _dropout_free(self, self._attachment().modules):
            obs = self._encode_observation(batch)
        return self._attachment().heads.value(obs.enc["vlm_features"], obs.state)

    # -------------------------------------------------------------- learning

    def pi_rl_outputs(self, batch: dict[str, Tensor]) -> PiRLOutputs:
        """Recompute log-prob, value and entropy of recorded chains, with gradients.

        Needs the observation keys plus ``pi_rl.chain`` [B, K+1, H, D_model] and
        ``pi_rl.step_index`` [B] (float is accepted: transport stores float32). Flow-SDE runs the
        transformer once, at each row's k*; Flow-Noise scores all K steps in one transformer call
        over B·K rows with the VLM features computed once and repeated. Runs dropout-free.
        """
        attachment = self._attachment()
        sampling, heads = attachment.sampling, attachment.heads
        num_steps, executed_steps = attachment.num_steps, attachment.executed_steps
        dt = 1.0 / num_steps
        with _dropout_free(self, self._attachment().modules):
            obs = self._encode_observation(batch)
            device = obs.proprio.device
            chain = batch[PI_RL_CHAIN].to(device=device, dtype=torch.float32)
            batch_size = obs.proprio.shape[0]
            expected = (batch_size, num_steps + 1, self.config.chunk_size, self.model.dim_action)
            if tuple(chain.shape) != expected:
                raise ValueError(
                    f"{PI_RL_CHAIN} must have shape [B, K+1, H, D] = {expected}, got {tuple(chain.shape)}"
                )
            grid = time_grid(num_steps, device=device)
            value = heads.value(obs.enc["vlm_features"], obs.state)

            if sampling.noise_method == "flow_sde":
                step_index = batch[PI_RL_STEP_INDEX].to(device=device).round().long()
                if step_index.shape != (batch_size,) or not bool(
                    ((step_index >= 0) & (step_index < num_steps)).all()
                ):
                    raise ValueError(f"{PI_RL_STEP_INDEX} must be [B] with values in [0, {num_steps - 1}]")
                x_t, _ = gather_chain_step(chain, step_index)
                t = grid[step_index]
                x0_hat = self._predict_clean_action(obs, x_t, t)
                sigma = flow_sde_sigmas(num_steps, sampling.noise_level, device=device)[step_index]
                mean, std = flow_sde_step(x_t, x0_hat.float(), t.view(-1, 1, 1), dt, sigma.view(-1, 1, 1))
                per_element = flow_sde_chain_log_prob(chain, step_index, mean, std)
                # The stochastic step's entropy is fixed by the schedule: reported, never optimised.
                entropy = gaussian_entropy(std).view(batch_size)
            else:
                horizon, dim = chain.shape[-2:]
                x_t = chain[:, :num_steps].flatten(0, 1)
                t = grid[:num_steps].repeat(batch_size)
                x0_hat, tokens = self._predict_with_tokens(obs.repeat_rows(num_steps), x_t, t)
                means = ode_step_mean(x_t, x0_hat.float(), t.view(-1, 1, 1), dt)
                log_var_bounds = std_bounds_to_log_var_bounds(sampling.noise_std_min, sampling.noise_std_max)
                stds = heads.noise_std(tokens, log_var_bounds)
                means = means.view(batch_size, num_steps, horizon, dim)
                stds = stds.view(batch_size, num_steps, horizon, dim)
                per_element = flow_noise_chain_log_prob(chain, means, stds)
                entropy = aggregate_entropy(
                    gaussian_entropy(stds).mean(dim=1), executed_steps, attachment.real_action_dim
                )
            log_prob = aggregate_log_prob(per_element, executed_steps, attachment.real_action_dim)
        return PiRLOutputs(log_prob=log_prob, value=value, entropy=entropy)

    def forward(self, batch: dict[str, Tensor], model: str | None = None) -> tuple[Tensor, dict]:
        """``model=None``: stock XVLA SFT loss. ``model="pi_rl"``: the πRL PPO loss and metrics.

        The πRL batch holds the observation keys, ``pi_rl.chain``, ``pi_rl.step_index``,
        ``pi_rl.old_log_prob``, ``pi_rl.old_value``, ``pi_rl.advantage`` (already normalised) and
        ``pi_rl.return``. Loss = PPO-clipped actor + value_coef · clipped-Huber critic
        − entropy_coef · entropy (Flow-Noise only); metrics are detached floats.
        """
        if model is None:
            return super().forward(batch)
        if model != "pi_rl":
            raise ValueError(f"model must be one of {FORWARD_MODELS}, got {model!r}")
        attachment = self._attachment()
        cfg = attachment.loss
        outputs = self.pi_rl_outputs(batch)
        device = outputs.log_prob.device

        def column(key: str) -> Tensor:
            return batch[key].to(device=device, dtype=torch.float32)

        returns = column(PI_RL_RETURN)
        loss_actor, diagnostics = ppo_actor_loss(
            outputs.log_prob, column(PI_RL_OLD_LOG_PROB), column(PI_RL_ADVANTAGE), cfg.clip_eps
        )
        loss_value = clipped_value_loss(
            outputs.value, column(PI_RL_OLD_VALUE), returns, cfg.value_clip, cfg.huber_delta
        )
        entropy = outputs.entropy.mean()
        entropy_coef = cfg.entropy_coef if attachment.sampling.noise_method == "flow_noise" else 0.0
        loss_entropy = -entropy_coef * entropy
        loss = loss_actor + cfg.value_coef * loss_value + loss_entropy

        metrics = {
            "loss": loss,
            "loss_actor": loss_actor,
            "loss_value": loss_value,
            "loss_entropy": loss_entropy,
            "entropy": entropy,
            "explained_variance": explained_variance(outputs.value, returns),
            "value_mean": outputs.value.mean(),
            "log_prob_mean": outputs.log_prob.mean(),
            **diagnostics,
        }
        return loss, {name: float(value.detach()) for name, value in metrics.items()}


class PiRLXVLAPolicy(PiRLMixin, XVLAPolicy):
    """Stock ``XVLAPolicy`` plus the πRL contract; still ``name == "xvla"``, never registered."""


def adopt_pi_rl(policy: XVLAPolicy) -> PiRLXVLAPolicy:
    """Give a stock ``XVLAPolicy`` (e.g. from LeRobot's ``make_policy``) the πRL methods, in place.

    ``PiRLXVLAPolicy`` adds no parameters or buffers, so swapping the class keeps every weight,
    the state dict and the config exactly as they are.
    """
    if isinstance(policy, PiRLXVLAPolicy):
        return policy
    if not isinstance(policy, XVLAPolicy):
        raise TypeError(f"πRL needs an XVLA policy, got {type(policy).__name__}")
    policy.__class__ = PiRLXVLAPolicy
    policy._pi_rl = None
    return policy  # type: ignore[return-value]
