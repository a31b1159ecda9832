"""πRL for LeRobot's SmolVLA: the flow-policy adapter, ``PiRLSmolVLAPolicy``, and its registration.

The only SmolVLA-specific code of πRL, and a plugin in its own right: it registers itself through
the ``lerobot_pirl_register_flow_adapters`` hook of its own ``lerobot_pirl.recipes`` entry point
(``pyproject.toml``), exactly as a third-party package would, so nothing else in πRL names SmolVLA.

SmolVLA's flow convention is πRL's: ``x_t = t·noise + (1 − t)·action``, the expert predicts the
velocity ``v = noise − action`` and the stock sampler integrates Euler from t = 1 to 0. πRL's
generic code asks for the clean action, which is ``x̂₀ = x_t − t·v`` on that straight path.

Encoding follows the stock sampler: the prefix (images, language, one state token) runs through
the VLM once per decision with its KV cache, and every expert pass of that decision — the K
denoising steps, Flow-Noise's batched re-scoring and the noise head's token features — attends to
that one cache. The value head reads the VLM's outputs over the same prefix pass.

Where this reaches into SmolVLA internals (all imported, nothing copied; each pinned in
``tests/policies/test_smolvla_seam.py``): ``policy.prepare_images`` / ``prepare_state``,
``model.embed_prefix``, ``model.denoise_step`` (which embeds the suffix with ``embed_suffix`` and
crops the cache back to the prefix), ``model.vlm_with_expert`` (its ``forward``, ``vlm``,
``config.text_config.hidden_size`` and ``expert_hidden_size``), ``model.action_out_proj`` (its input
is the per-action-token features), ``model.sample_noise``, ``model.state_proj``,
``common.vla_utils.make_att_2d_masks``, ``common.flow_matching.euler_integrate`` and the
``transformers`` ``DynamicCache`` layout (``layers[i].keys`` / ``values``, ``update``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pluggy
import torch
from lerobot.policies.common.flow_matching import euler_integrate
from lerobot.policies.common.vla_utils import make_att_2d_masks
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS
from torch import Tensor, nn
from transformers import DynamicCache

from lerobot_pirl.flow_rl.adapter import FlowAdapterRegistry
from lerobot_pirl.flow_rl.algorithm import randn

from .pi_rl import PiRLMixin, captured_input

# The marker of lerobot_pirl's hooks, by its pluggy project name: ``lerobot_pirl.hookimpl`` is this
# same marker, but importing it from here would point an import up the layers (policies -> recipes).
hookimpl = pluggy.HookimplMarker("lerobot_pirl")


def copy_cache(cache: DynamicCache, repeats: int = 1) -> DynamicCache:
    """A new cache holding ``cache``'s K/V, each batch row repeated ``repeats`` times (b-major).

    ``denoise_step`` appends the suffix K/V to the cache it is given and crops it back afterwards;
    handing it a copy keeps an encoded observation unchanged by any number of passes, and keeps
    the autograd graph of one pass out of the next one's prefix.
    """
    copy = DynamicCache()
    for index, layer in enumerate(cache.layers):
        # SmolVLA's prefill fills every layer with attention K/V ([B, kv_heads, L, head_dim]).
        keys: Tensor = layer.keys  # type: ignore[union-attr, assignment]
        values: Tensor = layer.values  # type: ignore[union-attr, assignment]
        if repeats != 1:
            keys, values = keys.repeat_interleave(repeats, dim=0), values.repeat_interleave(repeats, dim=0)
        copy.update(keys, values, index)
    return copy


@dataclass
class SmolVLAObservation:
    """A batch's prefix, run through the VLM once (``EncodedObservation``)."""

    prefix_cache: DynamicCache
    """The post-RoPE K/V of every VLM layer over the prefix, as the stock sampler caches them."""
    prefix_pad_masks: Tensor
    """[B, L] bool: which prefix positions are real (``denoise_step`` masks the rest)."""
    features: Tensor
    """[B, L, C] the VLM's output over the prefix, padded positions zeroed (the value head's input)."""
    state: Tensor
    """[B, max_state_dim] float32: the padded proprio, as ``state_proj`` reads it."""

    def repeat_rows(self, times: int) -> SmolVLAObservation:
        def rep(x: Tensor) -> Tensor:
            return x.repeat_interleave(times, dim=0)

        return SmolVLAObservation(
            copy_cache(self.prefix_cache, times),
            rep(self.prefix_pad_masks),
            rep(self.features),
            rep(self.state),
        )


class SmolVLAFlowAdapter:
    """``FlowPolicyAdapter`` for a stock ``SmolVLAPolicy``.

    The "VLM" πRL freezes by default (``freeze_vlm``) is ``vlm_with_expert.vlm``, exactly what
    SmolVLA's own ``train_expert_only`` freezes (``freeze_vision_encoder`` is its vision tower); the
    action expert and the projections around it train. ``state_proj`` is not part of the VLM: with
    SmolVLA's ``train_state_proj`` it trains, through the frozen VLM's prefix pass, as in stock
    SmolVLA training.
    """

    policy_type = "smolvla"

    def __init__(self, policy: SmolVLAPolicy) -> None:
        config = policy.config
        unsupported = []
        if not config.use_cache:
            unsupported.append("use_cache=False (the stock sampler cannot denoise without the prefix cache)")
        if config.rtc_config is not None and config.rtc_config.enabled:
            unsupported.append("real-time chunking (its guided steps have no πRL density)")
        if config.adapt_to_pi_aloha:
            unsupported.append("adapt_to_pi_aloha (its state/action transforms edit the batch in place)")
        if unsupported:
            raise ValueError(f"πRL's SmolVLA adapter does not support {'; '.join(unsupported)}")
        self.policy, self.model = policy, policy.model
        vlm_with_expert = self.model.vlm_with_expert
        self.chunk_size = config.chunk_size
        self.model_action_dim = config.max_action_dim
        self.real_action_dim = int(config.action_feature.shape[0])
        self.state_dim = config.max_state_dim
        self.feature_dim = vlm_with_expert.config.text_config.hidden_size
        self.token_dim = vlm_with_expert.expert_hidden_size
        self.default_num_steps = config.num_steps
        self.default_executed_steps = config.n_action_steps
        # Listed once: encode checks them on every call.
        self._vlm_parameters = list(vlm_with_expert.vlm.parameters())
        self._prefix_parameters = self._vlm_parameters + list(self.model.state_proj.parameters())

    @classmethod
    def action_dims(cls, config: SmolVLAConfig) -> tuple[int, int, int]:
        """From ``config`` alone: SmolVLA pads actions to ``max_action_dim``; the env's are the
        leading ``action_feature`` dims."""
        return int(config.chunk_size), int(config.max_action_dim), int(config.action_feature.shape[0])

    def vlm_parameters(self) -> list[nn.Parameter]:
        return self._vlm_parameters

    def encode(self, batch: dict[str, Tensor]) -> SmolVLAObservation:
        """The stock sampler's prefix pass (``use_cache=True``); without autograd unless a prefix
        parameter (the VLM's, or ``state_proj``'s) trains."""
        images, img_masks = self.policy.prepare_images(batch)
        state = self.policy.prepare_state(batch)
        prefix_trains = torch.is_grad_enabled() and any(p.requires_grad for p in self._prefix_parameters)
        with torch.set_grad_enabled(prefix_trains):
            embs, pad_masks, att_masks = self.model.embed_prefix(
                images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], state=state
            )
            (prefix_out, _), cache = self.model.vlm_with_expert.forward(
                attention_mask=make_att_2d_masks(pad_masks, att_masks),
                position_ids=torch.cumsum(pad_masks, dim=1) - 1,
                past_key_values=None,
                inputs_embeds=[embs, None],
                use_cache=True,
            )
        # A padded position attends to nothing (a uniform softmax over masked scores): its output is
        # arbitrary, so it must not reach the value head.
        features = prefix_out * pad_masks[..., None].to(prefix_out.dtype)
        return SmolVLAObservation(cache, pad_masks, features, state.float())

    def state(self, batch: dict[str, Tensor]) -> Tensor:
        return self.policy.prepare_state(batch).float()

    def _velocity(self, obs: SmolVLAObservation, x_t: Tensor, t: Tensor) -> Tensor:
        """SmolVLA's velocity v [B, chunk, D] float32 at (x_t, t [B]), on a copy of the prefix cache."""
        return self.model.denoise_step(
            prefix_pad_masks=obs.prefix_pad_masks,
            past_key_values=copy_cache(obs.prefix_cache),
            x_t=x_t,
            timestep=t,
        )

    def predict_clean_action(self, obs: SmolVLAObservation, x_t: Tensor, t: Tensor) -> Tensor:
        return self.predict_with_tokens(obs, x_t, t)[0]

    def predict_with_tokens(self, obs: SmolVLAObservation, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """x̂₀ = x_t − t·v, plus the per-action-token features [B, chunk, expert_hidden]: the expert's
        final-norm output that ``action_out_proj`` maps to the velocity."""
        with captured_input(self.model.action_out_proj) as captured:
            velocity = self._velocity(obs, x_t, t)
        x0_hat = x_t.float() - t.float().view(-1, 1, 1) * velocity.float()
        return x0_hat, captured[-1]

    def native_chain(
        self,
        obs: SmolVLAObservation,
        num_steps: int,
        generator: torch.Generator | None = None,
        initial_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Stock SmolVLA's sampler, op for op: LeRobot's own ``euler_integrate`` over
        ``denoise_step`` from ``initial_noise`` (default: ``model.sample_noise`` from the global RNG,
        as ``sample_actions`` draws it; from ``generator`` when one is given). The chain is the
        states the integrator visits. Equals ``predict_action_chunk(noise=initial_noise)`` when
        K = ``config.num_steps``."""
        batch_size, device = obs.state.shape[0], obs.state.device
        shape = (batch_size, self.chunk_size, self.model_action_dim)
        if initial_noise is not None:
            noise = initial_noise.to(device=device, dtype=torch.float32)
        elif generator is None:
            noise = self.model.sample_noise(shape, device)
        else:
            noise = randn(shape, device, torch.float32, generator)
        visited: list[Tensor] = []

        def velocity(x_t: Tensor, t: Tensor) -> Tensor:
            visited.append(x_t.float())
            return self._velocity(obs, x_t, t)

        action = euler_integrate(velocity, noise, num_steps)
        return torch.stack([*visited, action.float()], dim=1), action

    def env_actions(self, model_actions: Tensor) -> Tensor:
        """The leading ``action_feature`` dims, as stock ``_get_action_chunk`` unpads them."""
        return model_actions[..., : self.real_action_dim]


class PiRLSmolVLAPolicy(PiRLMixin, SmolVLAPolicy):
    """Stock ``SmolVLAPolicy`` plus the πRL contract; still ``name == "smolvla"``, never registered
    as a LeRobot policy type (its checkpoints load in stock LeRobot as ``SmolVLAPolicy``)."""

    flow_adapter_class = SmolVLAFlowAdapter


@hookimpl
def lerobot_pirl_register_flow_adapters(registry: FlowAdapterRegistry) -> None:
    registry.add(PiRLSmolVLAPolicy)
