"""The recipe-owned πRL heads: a critic and Flow-Noise's std head, sized by a flow-policy adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .adapter import FlowPolicyAdapter
from .math import flow_noise_std


def _mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for hidden in hidden_dims:
        layers += [nn.Linear(in_dim, hidden), nn.GELU()]
        in_dim = hidden
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class PiRLHeads(nn.Module):
    """The recipe-owned πRL heads: a critic, and Flow-Noise's std head.

    * ``value_head``: MLP on [mean-pooled encoder features ⊕ normalised proprio state] (the
      adapter's ``EncodedObservation``). The proprio is included because the state may reach the
      policy only through proprio (e.g. a blank image). Raw proprio mixes metres, radians and
      velocities, which an MLP critic fits poorly: it is standardised with running statistics
      (``observe_state``, buffers that travel with the heads' state dict; identity until the first
      call). With ``detach_value_input`` the
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
    def for_adapter(
        cls, adapter: FlowPolicyAdapter, device: str | torch.device, *, noise_head: bool, **kwargs: Any
    ) -> PiRLHeads:
        """Heads sized for the adapted policy (feature, state, token and model action widths)."""
        return cls(
            vlm_dim=adapter.feature_dim,
            proprio_dim=adapter.state_dim,
            token_dim=adapter.token_dim,
            action_dim=adapter.model_action_dim,
            noise_head=noise_head,
            **kwargs,
        ).to(device)

    @classmethod
    def for_policy(cls, policy: Any, *, noise_head: bool, **kwargs: Any) -> PiRLHeads:
        """Heads sized for a πRL policy (a ``PiRLMixin`` subclass), on its device."""
        return cls.for_adapter(policy.flow_adapter(), policy.config.device, noise_head=noise_head, **kwargs)

    def fits(self, adapter: FlowPolicyAdapter) -> None:
        """Raise unless these heads were sized for ``adapter``'s policy."""
        expected = (adapter.feature_dim, adapter.state_dim, adapter.token_dim, adapter.model_action_dim)
        got = (self.vlm_dim, self.proprio_dim, self.token_dim, self.action_dim)
        if got != expected:
            raise ValueError(
                "PiRLHeads dims (features, state, token, action) do not fit this policy: "
                f"got {got}, expected {expected}; build them with PiRLHeads.for_policy(policy, ...)"
            )

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
