"""πRL for LeRobot's π0 and π0.5: their flow-policy adapters, ``PiRLPI0Policy`` / ``PiRLPI05Policy``,
and their registration.

A plugin in its own right, like the SmolVLA one: it registers both through the
``lerobot_pirl_register_flow_adapters`` hook of its own ``lerobot_pirl.recipes`` entry point
(``pyproject.toml``), so nothing else in πRL names π0. One module holds both because the two models
differ only in how the state and the time reach the action expert: π0 embeds the state as one
suffix token ahead of the action tokens and fuses the time into each action token; π0.5 has the
processor write the discretised state into the prompt and conditions the expert's norms on the time
(adaRMS). Prefix, cache, velocity and sampler are otherwise the same code in LeRobot.

Both share πRL's flow convention: ``x_t = t·noise + (1 − t)·action``, the expert predicts the
velocity ``v = noise − action``, and the stock sampler integrates Euler from t = 1 to 0 with
LeRobot's ``euler_integrate``. πRL's generic code asks for the clean action, ``x̂₀ = x_t − t·v``.

Encoding follows the stock sampler: the prefix (images, language) runs through PaliGemma once per
decision with its KV cache, and every expert pass of that decision — the K denoising steps,
Flow-Noise's batched re-scoring, the noise head's token features — attends to that one cache.
Stock ``denoise_step`` copies the cache on every call (the expert's attention appends its K/V to
the cache it is given), so an encoded observation is never changed by the passes that read it.
The value head reads PaliGemma's outputs over the same prefix pass.

Where this reaches into LeRobot internals (all imported, nothing copied; each pinned in
``tests/policies/test_pi0_seam.py``): ``policy._preprocess_images``, ``model.embed_prefix``,
``model.denoise_step``, ``model.paligemma_with_expert`` (its ``forward`` and ``paligemma``), the
language model config's ``_attn_implementation`` (the stock sampler sets it to ``"eager"`` before
its prefix pass, so the adapter does too), ``model.action_out_proj`` (its input is the
per-action-token features), ``model.sample_noise``, ``model.rtc_processor``,
``common.vla_utils`` (``make_att_2d_masks``, ``prepare_attention_masks_4d``, ``pad_vector``),
``common.flow_matching.euler_integrate``, and the ``transformers`` ``DynamicCache`` that iterates
as ``(keys, values, sliding_window)`` per layer and is built back from such triples (as LeRobot's
own ``clone_past_key_values`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pluggy
import torch
from lerobot.policies.common.flow_matching import euler_integrate
from lerobot.policies.common.vla_utils import make_att_2d_masks, pad_vector, prepare_attention_masks_4d
from lerobot.policies.pi0.modeling_pi0 import PI0Policy
from lerobot.policies.pi05.modeling_pi05 import PI05Policy
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch import Tensor, nn
from transformers import DynamicCache

from lerobot_pirl.flow_rl.adapter import FlowAdapterRegistry
from lerobot_pirl.flow_rl.algorithm import randn

from .pi_rl import PiRLMixin, captured_input

# The marker of lerobot_pirl's hooks, by its pluggy project name (see smolvla_pi_rl for why it is
# not imported from the recipes layer).
hookimpl = pluggy.HookimplMarker("lerobot_pirl")


def repeat_cache(cache: DynamicCache, repeats: int) -> DynamicCache:
    """A new cache holding ``cache``'s K/V with each batch row repeated ``repeats`` times (b-major),
    built the way LeRobot's ``clone_past_key_values`` builds its per-step copy."""
    return DynamicCache(
        tuple(
            (keys.repeat_interleave(repeats, dim=0), values.repeat_interleave(repeats, dim=0), window)
            for keys, values, window in cache
        )
    )


@dataclass
class PaliGemmaObservation:
    """A batch's prefix, run through PaliGemma once (``EncodedObservation``)."""

    prefix_cache: DynamicCache
    """The post-RoPE K/V of every PaliGemma layer over the prefix, as the stock sampler caches them."""
    prefix_pad_masks: Tensor
    """[B, L] bool: which prefix positions are real (``denoise_step`` masks the rest)."""
    features: Tensor
    """[B, L, C] float32 PaliGemma output over the prefix, padded positions zeroed (value head)."""
    state: Tensor
    """[B, max_state_dim] float32 padded proprio: π0's state token reads it; for π0.5 only the value
    head does (its model sees the state through the prompt)."""

    def repeat_rows(self, times: int) -> PaliGemmaObservation:
        def rep(x: Tensor) -> Tensor:
            return x.repeat_interleave(times, dim=0)

        return PaliGemmaObservation(
            repeat_cache(self.prefix_cache, times),
            rep(self.prefix_pad_masks),
            rep(self.features),
            rep(self.state),
        )


class PaliGemmaFlowAdapter:
    """The ``FlowPolicyAdapter`` shared by π0 and π0.5 (subclasses say how the expert is called).

    The "VLM" πRL freezes by default (``freeze_vlm``) is ``paligemma_with_expert.paligemma``: the
    SigLIP tower, its projector and the Gemma language model, exactly what the stock
    ``train_expert_only`` freezes. The action expert and the projections around it (π0's
    ``state_proj`` included: its token is part of the suffix) train.
    """

    policy_type: ClassVar[str]

    def __init__(self, policy: Any) -> None:
        config = policy.config
        unsupported = []
        if config.rtc_config is not None and config.rtc_config.enabled:
            unsupported.append("real-time chunking (its guided steps have no πRL density)")
        real_action_dim = int(config.output_features[ACTION].shape[0])
        if real_action_dim > config.max_action_dim:
            unsupported.append(
                f"an action of {real_action_dim} dims above max_action_dim={config.max_action_dim}"
            )
        if unsupported:
            raise ValueError(f"πRL's {self.policy_type} adapter does not support {'; '.join(unsupported)}")
        self.policy, self.model = policy, policy.model
        paligemma = self.model.paligemma_with_expert.paligemma
        self.chunk_size = config.chunk_size
        self.model_action_dim = config.max_action_dim
        self.real_action_dim = real_action_dim
        self.state_dim = config.max_state_dim
        self.feature_dim = paligemma.config.text_config.hidden_size
        self.token_dim = self.model.action_out_proj.in_features
        self.default_num_steps = config.num_inference_steps
        self.default_executed_steps = config.n_action_steps
        # Listed once: encode checks them on every call.
        self._vlm_parameters = list(paligemma.parameters())

    @classmethod
    def action_dims(cls, config: Any) -> tuple[int, int, int]:
        """From ``config`` alone: actions are padded to ``max_action_dim``; the env's are the leading
        ``output_features[ACTION]`` dims, as stock ``predict_action_chunk`` unpads them."""
        return (
            int(config.chunk_size),
            int(config.max_action_dim),
            int(config.output_features[ACTION].shape[0]),
        )

    def vlm_parameters(self) -> list[nn.Parameter]:
        return self._vlm_parameters

    def encode(self, batch: dict[str, Tensor]) -> PaliGemmaObservation:
        """The stock sampler's prefix pass (eager attention, ``use_cache=True``); without autograd
        unless a PaliGemma parameter trains."""
        images, img_masks = self.policy._preprocess_images(batch)
        state = self.state(batch)
        prefix_trains = torch.is_grad_enabled() and any(p.requires_grad for p in self._vlm_parameters)
        paligemma_with_expert = self.model.paligemma_with_expert
        with torch.set_grad_enabled(prefix_trains):
            embs, pad_masks, att_masks = self.model.embed_prefix(
                images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
            )
            paligemma_with_expert.paligemma.model.language_model.config._attn_implementation = "eager"
            (prefix_out, _), cache = paligemma_with_expert.forward(
                attention_mask=prepare_attention_masks_4d(make_att_2d_masks(pad_masks, att_masks)),
                position_ids=torch.cumsum(pad_masks, dim=1) - 1,
                past_key_values=None,
                inputs_embeds=[embs, None],
                use_cache=True,
            )
        # A padded position's output is arbitrary (it attends under the large negative mask value
        # to everything alike): it must not reach the value head.
        features = prefix_out.float() * pad_masks[..., None].float()
        return PaliGemmaObservation(cache, pad_masks, features, state)

    def state(self, batch: dict[str, Tensor]) -> Tensor:
        return pad_vector(batch[OBS_STATE], self.state_dim).float()

    def _velocity(self, obs: PaliGemmaObservation, x_t: Tensor, t: Tensor) -> Tensor:
        """The expert's velocity v [B, chunk, D] float32 at (x_t, t [B]) over the cached prefix."""
        raise NotImplementedError

    def predict_clean_action(self, obs: PaliGemmaObservation, x_t: Tensor, t: Tensor) -> Tensor:
        return self.predict_with_tokens(obs, x_t, t)[0]

    def predict_with_tokens(self, obs: PaliGemmaObservation, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """x̂₀ = x_t − t·v, plus the per-action-token features [B, chunk, expert width]: the expert's
        final-norm output over the action tokens, which ``action_out_proj`` maps to the velocity."""
        with captured_input(self.model.action_out_proj) as captured:
            velocity = self._velocity(obs, x_t, t)
        x0_hat = x_t.float() - t.float().view(-1, 1, 1) * velocity.float()
        return x0_hat, captured[-1]

    def native_chain(
        self,
        obs: PaliGemmaObservation,
        num_steps: int,
        generator: torch.Generator | None = None,
        initial_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The stock sampler, op for op: LeRobot's own ``euler_integrate`` over ``denoise_step`` (RTC
        off, its processor passed as the stock sampler passes it) from ``initial_noise`` (default:
        ``model.sample_noise`` from the global RNG, as ``sample_actions`` draws it; from
        ``generator`` when one is given). The chain is the states the integrator visits. Equals
        ``predict_action_chunk(noise=initial_noise)`` when K = ``config.num_inference_steps``."""
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

        action = euler_integrate(
            velocity, noise, num_steps, rtc_processor=self.model.rtc_processor, rtc_enabled=False
        )
        return torch.stack([*visited, action.float()], dim=1), action

    def env_actions(self, model_actions: Tensor) -> Tensor:
        """The leading ``output_features[ACTION]`` dims, as stock ``predict_action_chunk`` unpads them."""
        return model_actions[..., : self.real_action_dim]


class PI0FlowAdapter(PaliGemmaFlowAdapter):
    """``FlowPolicyAdapter`` for a stock ``PI0Policy``: the padded state is the suffix's first token."""

    policy_type = "pi0"

    def _velocity(self, obs: PaliGemmaObservation, x_t: Tensor, t: Tensor) -> Tensor:
        return self.model.denoise_step(
            state=obs.state,
            prefix_pad_masks=obs.prefix_pad_masks,
            past_key_values=obs.prefix_cache,
            x_t=x_t,
            timestep=t,
        )


class PI05FlowAdapter(PaliGemmaFlowAdapter):
    """``FlowPolicyAdapter`` for a stock ``PI05Policy``: the suffix is the action tokens alone."""

    policy_type = "pi05"

    def _velocity(self, obs: PaliGemmaObservation, x_t: Tensor, t: Tensor) -> Tensor:
        return self.model.denoise_step(
            prefix_pad_masks=obs.prefix_pad_masks, past_key_values=obs.prefix_cache, x_t=x_t, timestep=t
        )


class PiRLPI0Policy(PiRLMixin, PI0Policy):
    """Stock ``PI0Policy`` plus the πRL contract; still ``name == "pi0"``, never registered as a
    LeRobot policy type (its checkpoints load in stock LeRobot as ``PI0Policy``)."""

    flow_adapter_class = PI0FlowAdapter


class PiRLPI05Policy(PiRLMixin, PI05Policy):
    """Stock ``PI05Policy`` plus the πRL contract; still ``name == "pi05"`` (checkpoints load in
    stock LeRobot as ``PI05Policy``)."""

    flow_adapter_class = PI05FlowAdapter


@hookimpl
def lerobot_pirl_register_flow_adapters(registry: FlowAdapterRegistry) -> None:
    registry.add(PiRLPI0Policy)
    registry.add(PiRLPI05Policy)
