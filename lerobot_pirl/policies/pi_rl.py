"""πRL for any LeRobot flow-matching policy that has a flow-policy adapter.

``PiRLMixin`` adds the πRL contract — ``sample_actions`` with exact log-probs, ``pi_rl_outputs`` and
``forward(batch, model="pi_rl")`` — to a stock policy class without registering anything:
``policy.type`` stays the stock one, ``state_dict()`` keys are the stock ones, and a fine-tuned
checkpoint loads in stock LeRobot as the plain policy. Everything model-specific goes through the
class's ``flow_adapter_class`` (``flow_rl.adapter``); the algorithm is ``flow_rl.algorithm``. The
value and noise heads belong to the recipe, which owns, optimises and checkpoints them; the policy
only borrows them through ``attach_pi_rl``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from lerobot_pirl.flow_rl.adapter import FlowAdapterError, FlowAdapterRegistry, FlowPolicyAdapter
from lerobot_pirl.flow_rl.algorithm import PiRLOutputs, pi_rl_loss, sample_chain, score_chain
from lerobot_pirl.flow_rl.heads import PiRLHeads
from lerobot_pirl.flow_rl.settings import NOISE_METHODS, PiRLLossConfig, PiRLSampling

SampleMode = Literal["flow_sde", "flow_noise", "deterministic", "native"]
SAMPLE_MODES: tuple[str, ...] = get_args(SampleMode)
FORWARD_MODELS: tuple[str | None, ...] = (None, "pi_rl")

# Batch keys of the πRL forward (besides the observation keys the stock policy reads).
PI_RL_CHAIN = "pi_rl.chain"
PI_RL_STEP_INDEX = "pi_rl.step_index"
PI_RL_OLD_TOKEN_LOG_PROB = "pi_rl.old_token_log_prob"
PI_RL_OLD_VALUE = "pi_rl.old_value"
PI_RL_ADVANTAGE = "pi_rl.advantage"
PI_RL_RETURN = "pi_rl.return"


@dataclass
class PiRLRecord:
    """What a rollout decision records (float32 except ``step_index``).

    ``chain`` [B, K+1, H, D_model] is x_{t_0..t_K}; ``step_index`` [B] is Flow-SDE's k* (-1 when
    no single stochastic step exists); ``token_log_prob`` [B, H'] holds the log-prob of each
    executed action token over the real action dims (NaN for the deterministic samplers, which
    have no density).
    """

    chain: Tensor
    step_index: Tensor
    token_log_prob: Tensor

    @property
    def log_prob(self) -> Tensor:
        """The chunk-level log-prob [B]: the sum over the executed tokens."""
        return self.token_log_prob.sum(dim=-1)

    def row(self, index: int) -> PiRLRecord:
        """Row ``index`` as a record of batch size one."""
        rows = slice(index, index + 1)
        return PiRLRecord(self.chain[rows], self.step_index[rows], self.token_log_prob[rows])


@dataclass
class _Attachment:
    """Plain (non-Module) holder, so attached heads never enter the policy's state_dict."""

    adapter: FlowPolicyAdapter
    heads: PiRLHeads
    sampling: PiRLSampling  # resolved: num_steps and executed_steps are set
    loss: PiRLLossConfig
    modules: list[nn.Module]  # the policy's modules, for the per-forward dropout guard


@contextmanager
def _dropout_free(module: nn.Module, modules: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode for the duration, then each submodule's own mode back.

    The PPO ratio compares the recomputed density with the rollout's, which ran in eval mode;
    dropout would make the ratio noise. ``modules`` is ``module.modules()`` listed once (walking
    the tree costs about as much as a tiny model's forward); usually none is training, since the
    recipe runs its updates in eval mode.
    """
    training = [m for m in modules if m.training]
    if training:
        module.eval()
    try:
        yield
    finally:
        for m in training:
            m.training = True


@contextmanager
def captured_input(module: nn.Module) -> Iterator[list[Tensor]]:
    """Collect ``module``'s first positional input of each call while the context is open: how an
    adapter reads the per-action-token features a policy feeds its action head (the noise head's
    input) without re-running or copying the policy's forward."""
    inputs: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _module, args: inputs.append(args[0]))
    try:
        yield inputs
    finally:
        handle.remove()


class PiRLMixin:
    """Adds πRL sampling and ``forward(batch, model="pi_rl")`` to a stock LeRobot policy class.

    Subclasses are ``class PiRLFoo(PiRLMixin, FooPolicy)`` with ``flow_adapter_class`` set.
    """

    flow_adapter_class: ClassVar[type[Any]]
    config: Any

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)  # type: ignore[call-arg]
        self._pi_rl: _Attachment | None = None

    # -------------------------------------------------------------- attachment

    def flow_adapter(self) -> FlowPolicyAdapter:
        """This policy as πRL's algorithm sees it."""
        return self.flow_adapter_class(self)

    def attach_pi_rl(
        self, heads: PiRLHeads, sampling: PiRLSampling | None = None, loss: PiRLLossConfig | None = None
    ) -> None:
        """Borrow the recipe's heads and settings; the heads stay out of ``state_dict()``."""
        adapter = self.flow_adapter()
        sampling = (sampling or PiRLSampling()).resolve(
            adapter.default_num_steps, adapter.default_executed_steps, adapter.chunk_size
        )
        heads.fits(adapter)
        if sampling.noise_method == "flow_noise" and heads.noise_head is None:
            raise ValueError("noise_method='flow_noise' needs PiRLHeads built with noise_head=True")
        modules = list(self.modules())  # type: ignore[attr-defined]
        self._pi_rl = _Attachment(adapter, heads, sampling, loss or PiRLLossConfig(), modules)

    def _attachment(self) -> _Attachment:
        if self._pi_rl is None:
            raise RuntimeError("call policy.attach_pi_rl(heads, sampling) before using πRL methods")
        return self._pi_rl

    @property
    def pi_rl_adapter(self) -> FlowPolicyAdapter:
        return self._attachment().adapter

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
        return self._attachment().adapter.real_action_dim

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

        ``mode`` (default: the attached ``noise_method``): ``"flow_sde"``, ``"flow_noise"``,
        ``"deterministic"`` (the ODE the recipe trains with) or ``"native"`` (the stock policy's
        own sampler). A stochastic mode must match the attached ``noise_method``, since that is how
        the learner scores the chain. ``initial_noise`` [B, chunk, D_model] replaces the chain's
        start x_{t_0} ~ N(0, I) (e.g. per-episode noise streams that do not depend on batching).
        """
        attachment = self._attachment()
        adapter, sampling = attachment.adapter, attachment.sampling
        mode = mode or sampling.noise_method
        if mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
        if mode in NOISE_METHODS and mode != sampling.noise_method:
            raise ValueError(
                f"mode={mode!r} differs from the attached noise_method={sampling.noise_method!r}; "
                "the learner would score the chain with the wrong density"
            )
        if any(m.training for m in attachment.modules):
            self.eval()  # type: ignore[attr-defined]
        obs = adapter.encode(batch)
        batch_size = obs.state.shape[0]
        if initial_noise is not None:
            expected = (batch_size, adapter.chunk_size, adapter.model_action_dim)
            if tuple(initial_noise.shape) != expected:
                raise ValueError(
                    f"initial_noise must have shape {expected}, got {tuple(initial_noise.shape)}"
                )
        if mode == "native":
            chain, model_action = adapter.native_chain(obs, sampling.num_steps or 1, generator, initial_noise)
            step_index = torch.full((batch_size,), -1, dtype=torch.long, device=chain.device)
            assert sampling.executed_steps is not None  # resolved at attach
            no_density = torch.full((batch_size, sampling.executed_steps), float("nan"), device=chain.device)
            record = PiRLRecord(chain, step_index, no_density)
            return adapter.env_actions(model_action), record
        sample = sample_chain(
            adapter, attachment.heads, obs, sampling, mode, generator=generator, initial_noise=initial_noise
        )
        actions = adapter.env_actions(sample.chain[:, -1].clone())
        return actions, PiRLRecord(sample.chain, sample.step_index, sample.token_log_prob)

    @torch.no_grad()
    def pi_rl_observe_state(self, batch: dict[str, Tensor]) -> None:
        """Update the value head's running proprio statistics with a batch of observations."""
        attachment = self._attachment()
        attachment.heads.observe_state(attachment.adapter.state(batch))

    @torch.no_grad()
    def pi_rl_value(self, batch: dict[str, Tensor]) -> Tensor:
        """V(s) [B] float32 of observations without sampling, e.g. to bootstrap a truncation."""
        attachment = self._attachment()
        with _dropout_free(self, attachment.modules):  # type: ignore[arg-type]
            obs = attachment.adapter.encode(batch)
        return attachment.heads.value(obs.features, obs.state)

    # -------------------------------------------------------------- learning

    def pi_rl_outputs(self, batch: dict[str, Tensor]) -> PiRLOutputs:
        """Recompute log-prob, value and entropy of recorded chains, with gradients, dropout-free.

        Needs the observation keys plus ``pi_rl.chain`` [B, K+1, H, D_model] and
        ``pi_rl.step_index`` [B] (float is accepted: transport stores float32).
        """
        attachment = self._attachment()
        with _dropout_free(self, attachment.modules):  # type: ignore[arg-type]
            obs = attachment.adapter.encode(batch)
            device = obs.state.device
            chain = batch[PI_RL_CHAIN].to(device=device, dtype=torch.float32)
            step_index = batch[PI_RL_STEP_INDEX].to(device=device).round().long()
            return score_chain(
                attachment.adapter, attachment.heads, obs, chain, step_index, attachment.sampling
            )

    def forward(self, batch: dict[str, Tensor], model: str | None = None) -> tuple[Tensor, dict]:
        """``model=None``: the stock policy's own loss. ``model="pi_rl"``: the πRL PPO loss.

        The πRL batch holds the observation keys, ``pi_rl.chain``, ``pi_rl.step_index``,
        ``pi_rl.old_token_log_prob`` [B, H'], ``pi_rl.old_value``, ``pi_rl.advantage`` (already
        normalised) and ``pi_rl.return``; see ``flow_rl.algorithm.pi_rl_loss`` for the terms and metrics.
        """
        if model is None:
            return super().forward(batch)  # type: ignore[misc]
        if model != "pi_rl":
            raise ValueError(f"model must be one of {FORWARD_MODELS}, got {model!r}")
        attachment = self._attachment()
        outputs = self.pi_rl_outputs(batch)
        device = outputs.log_prob.device

        def column(key: str) -> Tensor:
            return batch[key].to(device=device, dtype=torch.float32)

        return pi_rl_loss(
            outputs,
            column(PI_RL_OLD_TOKEN_LOG_PROB),
            column(PI_RL_OLD_VALUE),
            column(PI_RL_ADVANTAGE),
            column(PI_RL_RETURN),
            attachment.loss,
            attachment.sampling.noise_method,
        )


def stock_policy_class(pi_rl_class: type[Any]) -> type[Any]:
    """The stock LeRobot policy class a πRL policy class extends (its base after ``PiRLMixin``)."""
    bases = [base for base in pi_rl_class.__bases__ if base is not PiRLMixin]
    if not issubclass(pi_rl_class, PiRLMixin) or len(bases) != 1:
        raise FlowAdapterError(
            f"{pi_rl_class.__qualname__} must be declared as "
            f"`class {pi_rl_class.__name__}(PiRLMixin, StockPolicy)`"
        )
    return bases[0]


def adopt_pi_rl(policy: Any, adapters: FlowAdapterRegistry) -> Any:
    """Give a stock policy (e.g. from LeRobot's ``make_policy``) the πRL methods, in place.

    The πRL class comes from ``adapters`` (the installed flow adapters,
    ``lerobot_pirl.recipes.registry.installed().adapters``) by ``policy.config.type``. It adds no parameters
    or buffers, so swapping the class keeps every weight, the state dict and the config as they are.
    """
    if isinstance(policy, PiRLMixin):
        return policy
    policy_type = getattr(getattr(policy, "config", None), "type", type(policy).__name__)
    pi_rl_class = adapters.resolve(policy_type).policy_class
    stock = stock_policy_class(pi_rl_class)
    if not isinstance(policy, stock):
        raise TypeError(
            f"the πRL adapter for '{policy_type}' needs a {stock.__name__}, got {type(policy).__name__}"
        )
    policy.__class__ = pi_rl_class
    policy._pi_rl = None
    return policy
