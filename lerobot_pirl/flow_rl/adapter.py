"""What πRL needs from a flow-matching policy: the adapter contract, and the registry of adapters.

πRL's sampling, scoring and loss (``flow_rl.algorithm``) never touch a policy's modules directly;
they call a `FlowPolicyAdapter`. Conventions (``flow_rl.math``): t=1 is noise, t=0 the action, the
chain ``x_{t_0..t_K}`` lives in the model's action space ``[chunk_size, model_action_dim]`` and the
env receives ``env_actions(x_{t_K})``, whose last dim is the first ``real_action_dim`` model dims.

An adapter is registered for a LeRobot policy type together with the πRL policy class (``PiRLMixin``
+ the stock policy class) that carries it; a plugin does that in its
``lerobot_pirl_register_flow_adapters(registry)`` hook (see ``recipes/hookspecs.py``), so πRL for
another flow-matching policy is one new file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class EncodedObservation(Protocol):
    """An observation batch encoded once; every transformer pass at (x_t, t) reuses it."""

    features: Tensor
    """[B, T, C] encoder features; the value head mean-pools them."""
    state: Tensor
    """[B, P] float32 proprio as the policy reads it; the value head's second input."""

    def repeat_rows(self, times: int) -> EncodedObservation:
        """Each row repeated ``times`` times in place (b-major), to batch K denoising steps."""
        ...


@runtime_checkable
class FlowPolicyAdapter(Protocol):
    """One flow-matching policy as πRL sees it (one instance per policy, holding a reference)."""

    policy_type: str
    """The LeRobot ``config.type`` it adapts."""
    chunk_size: int
    model_action_dim: int
    """D of the chain (the policy's internal action width)."""
    real_action_dim: int
    """How many leading model dims reach the env; log-probs count only these."""
    feature_dim: int
    """C of ``EncodedObservation.features``."""
    state_dim: int
    """P of ``EncodedObservation.state``."""
    token_dim: int
    """Width of the per-action-token features ``predict_with_tokens`` returns."""
    default_num_steps: int
    """The policy's own denoising steps (K when the recipe leaves it unset)."""
    default_executed_steps: int
    """The policy's own executed steps per chunk (H' when the recipe leaves it unset)."""

    def encode(self, batch: dict[str, Tensor]) -> EncodedObservation:
        """Encode a preprocessed batch; without autograd through parameters that do not train."""
        ...

    def state(self, batch: dict[str, Tensor]) -> Tensor:
        """[B, P] float32 proprio of a preprocessed batch, without encoding it."""
        ...

    def predict_clean_action(self, obs: EncodedObservation, x_t: Tensor, t: Tensor) -> Tensor:
        """x̂₀ [B, chunk, D] float32 at (x_t [B, chunk, D], t [B])."""
        ...

    def predict_with_tokens(self, obs: EncodedObservation, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """x̂₀ as above plus the per-action-token features [B, chunk, token_dim] of the same pass."""
        ...

    def native_chain(
        self,
        obs: EncodedObservation,
        num_steps: int,
        generator: torch.Generator | None = None,
        initial_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The stock policy's own sampler, op for op, from ``initial_noise`` (default: drawn as the
        stock policy draws it): (the states it visits [B, K+1, chunk, D] float32, model action)."""
        ...

    def env_actions(self, model_actions: Tensor) -> Tensor:
        """Model-space actions [..., D] → the env's actions [..., real_action_dim]."""
        ...

    def vlm_parameters(self) -> list[nn.Parameter]:
        """The parameters that count as the (by default frozen) vision-language encoder."""
        ...

    # Optional, for DSRL (``envs.noise_steered``), whose learner sizes its noise agent from a
    # checkpoint's config.json without loading any weights:
    #
    #     @classmethod
    #     def action_dims(cls, config: PreTrainedConfig) -> tuple[int, int, int]:
    #         """(chunk_size, model_action_dim, real_action_dim) of the policy ``config`` builds."""


DSRL_METHOD = "action_dims"
"""The optional adapter classmethod DSRL needs (see the comment at the end of `FlowPolicyAdapter`)."""


ADAPTER_METHODS = (
    "encode",
    "state",
    "predict_clean_action",
    "predict_with_tokens",
    "native_chain",
    "env_actions",
    "vlm_parameters",
)


class FlowAdapterError(TypeError):
    """A policy type without an adapter, or an adapter registration that breaks the contract."""


@dataclass(frozen=True)
class FlowAdapterEntry:
    policy_type: str
    policy_class: type[Any]
    """The πRL policy class: ``PiRLMixin`` + the stock policy class, ``flow_adapter_class`` set."""
    distribution: str


class FlowAdapterRegistry:
    """Typed registry passed into the ``lerobot_pirl_register_flow_adapters`` hook."""

    def __init__(self) -> None:
        self._entries: dict[str, FlowAdapterEntry] = {}
        self._distribution = "<unknown>"

    def add(self, policy_class: type[Any]) -> None:
        """Register a πRL policy class (``class PiRLFoo(PiRLMixin, FooPolicy)`` with
        ``flow_adapter_class``) under its adapter's ``policy_type``."""
        adapter = getattr(policy_class, "flow_adapter_class", None)
        where = f"{getattr(policy_class, '__qualname__', policy_class)!s} from '{self._distribution}'"
        if adapter is None:
            raise FlowAdapterError(f"{where} needs a class attribute `flow_adapter_class`")
        missing = [m for m in ADAPTER_METHODS if not callable(getattr(adapter, m, None))]
        policy_type = getattr(adapter, "policy_type", None)
        if not isinstance(policy_type, str) or missing:
            raise FlowAdapterError(
                f"{adapter.__qualname__} ({where}) breaks the FlowPolicyAdapter contract: "
                f"policy_type={policy_type!r}, missing methods: {', '.join(missing) or 'none'}"
            )
        if policy_type in self._entries:
            first = self._entries[policy_type]
            raise FlowAdapterError(
                f"policy type '{policy_type}' has two πRL adapters: {first.policy_class.__qualname__} "
                f"from '{first.distribution}' and {where}"
            )
        self._entries[policy_type] = FlowAdapterEntry(policy_type, policy_class, self._distribution)

    def policy_types(self) -> list[str]:
        return sorted(self._entries)

    def resolve(self, policy_type: str) -> FlowAdapterEntry:
        """The entry for ``policy_type``, or an error naming the types that have one."""
        entry = self._entries.get(policy_type)
        if entry is None:
            raise FlowAdapterError(
                f"πRL has no flow-policy adapter for policy.type='{policy_type}'; adapters are "
                f"installed for: {', '.join(self.policy_types()) or 'none'}. A plugin adds one in its "
                "`lerobot_pirl_register_flow_adapters(registry)` hook (recipe=sac trains gaussian_actor)."
            )
        return entry
