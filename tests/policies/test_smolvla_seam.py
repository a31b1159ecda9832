"""Pins every LeRobot SmolVLA internal `lerobot_pirl.policies.smolvla_pi_rl` (the SmolVLA flow
adapter) uses, and its registration through the plugin entry point.

The adapter is the only πRL code that knows SmolVLA; each private or undocumented name it reaches
is asserted here on a stock ``SmolVLAPolicy``, so a LeRobot (or transformers) upgrade that moves
one fails in this file, with the name in the test, before anything else breaks.
"""

from __future__ import annotations

import inspect
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch
from helpers.tiny_smolvla import (
    IMAGE_TOKENS,
    LANGUAGE_LENGTH,
    build_tiny_smolvlm,
    observation_batch,
    tiny_smolvla_config,
)
from lerobot.policies.common.flow_matching import euler_integrate
from lerobot.policies.common.vla_utils import make_att_2d_masks
from lerobot.policies.smolvla import SmolVLAPolicy
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS
from torch.testing import assert_close
from transformers import DynamicCache

from lerobot_pirl.policies import adopt_pi_rl
from lerobot_pirl.policies.smolvla_pi_rl import PiRLSmolVLAPolicy, SmolVLAFlowAdapter, copy_cache
from lerobot_pirl.recipes.hookspecs import ENTRY_POINT_GROUP
from lerobot_pirl.recipes.registry import discover

ROOT = Path(__file__).resolve().parents[2]
STATE_DIM, ACTION_DIM, CHUNK, BATCH = 3, 2, 4, 2
MAX_STATE, MAX_ACTION = 6, 6
PREFIX = IMAGE_TOKENS + LANGUAGE_LENGTH + 1  # image tokens, language, one state token
VLM_WIDTH, EXPERT_WIDTH, KV_HEADS, HEAD_DIM = 64, 48, 2, 16


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_smolvlm(tmp_path_factory.mktemp("tiny_smolvlm"))


def stock_policy(vlm_dir: Path, **overrides) -> SmolVLAPolicy:
    torch.manual_seed(0)
    return SmolVLAPolicy(
        tiny_smolvla_config(vlm_dir, STATE_DIM, ACTION_DIM, chunk_size=CHUNK, **overrides)
    ).eval()


def observations(policy: SmolVLAPolicy) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    states = torch.rand(BATCH, STATE_DIM, generator=generator) * 2 - 1
    images = {
        k: torch.rand(BATCH, *f.shape, generator=generator) for k, f in policy.config.image_features.items()
    }
    return observation_batch(policy.config, states, images)


def prefix(policy: SmolVLAPolicy, observation: dict):
    """The prefix pass exactly as the adapter runs it: (embs, pad masks, att masks, outputs, cache)."""
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
    outputs, cache = model.vlm_with_expert.forward(
        attention_mask=make_att_2d_masks(pad_masks, att_masks),
        position_ids=torch.cumsum(pad_masks, dim=1) - 1,
        past_key_values=None,
        inputs_embeds=[embs, None],
        use_cache=True,
    )
    return embs, pad_masks, att_masks, outputs, cache


def test_prepare_images_and_state_give_siglip_range_images_and_padded_state(vlm_dir) -> None:
    policy = stock_policy(vlm_dir)
    observation = observations(policy)
    images, masks = policy.prepare_images(observation)
    [image], [mask] = images, masks  # one camera, no empty cameras
    assert image.shape == (BATCH, 3, 32, 32) and torch.equal(mask, torch.ones(BATCH, dtype=torch.bool))
    assert_close(image, observation["observation.images.front"] * 2 - 1)  # [0, 1] -> [-1, 1]
    state = policy.prepare_state(observation)
    assert state.shape == (BATCH, MAX_STATE) and torch.equal(
        state[:, :STATE_DIM], observation["observation.state"]
    )
    assert torch.equal(state[:, STATE_DIM:], torch.zeros(BATCH, MAX_STATE - STATE_DIM))


def test_embed_prefix_is_images_language_then_one_state_token(vlm_dir) -> None:
    policy = stock_policy(vlm_dir)
    observation = observations(policy)
    assert list(inspect.signature(policy.model.embed_prefix).parameters) == [
        "images", "img_masks", "lang_tokens", "lang_masks", "state",
    ]  # fmt: skip
    embs, pad_masks, att_masks, _, _ = prefix(policy, observation)
    assert embs.shape == (BATCH, PREFIX, VLM_WIDTH) and pad_masks.dtype == torch.bool
    language = observation[OBS_LANGUAGE_ATTENTION_MASK]
    assert not language.all()  # the instruction is padded: the prefix has masked positions
    expected_pad = torch.cat(
        [torch.ones(BATCH, IMAGE_TOKENS, dtype=torch.bool), language, torch.ones(BATCH, 1, dtype=torch.bool)],
        1,
    )
    assert torch.equal(pad_masks, expected_pad)
    assert att_masks[:, :-1].sum() == 0 and att_masks[:, -1].all()  # only the state token opens a block
    masks_2d = make_att_2d_masks(pad_masks, att_masks)
    assert masks_2d.shape == (BATCH, PREFIX, PREFIX) and masks_2d.dtype == torch.bool


def test_the_prefix_pass_returns_vlm_outputs_and_a_dynamic_cache_of_every_layer(vlm_dir) -> None:
    policy = stock_policy(vlm_dir)
    vlm_with_expert = policy.model.vlm_with_expert
    assert {"attention_mask", "position_ids", "past_key_values", "inputs_embeds", "use_cache"} <= set(
        inspect.signature(vlm_with_expert.forward).parameters
    )
    _, _, _, (prefix_out, expert_out), cache = prefix(policy, observations(policy))
    assert prefix_out.shape == (BATCH, PREFIX, VLM_WIDTH) and expert_out is None
    assert vlm_with_expert.config.text_config.hidden_size == VLM_WIDTH
    assert vlm_with_expert.expert_hidden_size == EXPERT_WIDTH  # expert_width_multiplier 0.75
    assert isinstance(cache, DynamicCache) and len(cache.layers) == vlm_with_expert.num_vlm_layers == 2
    for layer in cache.layers:
        assert layer.keys.shape == layer.values.shape == (BATCH, KV_HEADS, PREFIX, HEAD_DIM)


def test_copy_cache_through_dynamic_cache_update_holds_the_same_values(vlm_dir) -> None:
    """``DynamicCache()`` + ``update(keys, values, index)`` builds a cache layer by layer."""
    policy = stock_policy(vlm_dir)
    cache = prefix(policy, observations(policy))[4]
    copy = copy_cache(cache, repeats=3)
    for original, repeated in zip(cache.layers, copy.layers, strict=True):
        assert torch.equal(repeated.keys, original.keys.repeat_interleave(3, dim=0))
        assert torch.equal(repeated.values, original.values.repeat_interleave(3, dim=0))
        assert repeated.keys.data_ptr() != original.keys.data_ptr()


def test_denoise_step_gives_a_float32_velocity_and_crops_the_cache_back_to_the_prefix(vlm_dir) -> None:
    policy = stock_policy(vlm_dir)
    model = policy.model
    assert list(inspect.signature(model.denoise_step).parameters) == [
        "prefix_pad_masks", "past_key_values", "x_t", "timestep",
    ]  # fmt: skip
    _, pad_masks, _, _, cache = prefix(policy, observations(policy))
    keys = [layer.keys.clone() for layer in cache.layers]
    tokens: list[torch.Tensor] = []
    handle = model.action_out_proj.register_forward_pre_hook(lambda _m, args: tokens.append(args[0]))
    x_t = torch.randn(BATCH, CHUNK, MAX_ACTION)
    with torch.no_grad():
        v = model.denoise_step(
            prefix_pad_masks=pad_masks, past_key_values=cache, x_t=x_t, timestep=torch.full((BATCH,), 0.5)
        )
    handle.remove()
    assert v.shape == (BATCH, CHUNK, MAX_ACTION) and v.dtype == torch.float32
    [features] = tokens  # one action_out_proj call per step: its input is the per-token features
    assert features.shape == (BATCH, CHUNK, EXPERT_WIDTH) and features.dtype == torch.float32
    assert all(torch.equal(layer.keys, key) for layer, key in zip(cache.layers, keys, strict=True))


def test_the_cached_prefix_gives_the_velocity_of_the_joint_training_pass(vlm_dir) -> None:
    """Why one cache per decision is exact: the expert's velocity over the cached prefix equals the
    cache-free pass over [prefix; suffix] that SmolVLA's training ``forward`` runs (rounding aside)."""
    policy = stock_policy(vlm_dir)
    model = policy.model
    embs, pad_masks, att_masks, _, cache = prefix(policy, observations(policy))
    x_t, t = torch.randn(BATCH, CHUNK, MAX_ACTION), torch.tensor([0.9, 0.3])
    with torch.no_grad():
        cached = model.denoise_step(prefix_pad_masks=pad_masks, past_key_values=cache, x_t=x_t, timestep=t)
        suffix_embs, suffix_pad, suffix_att = model.embed_suffix(x_t, t)
        pad = torch.cat([pad_masks, suffix_pad], dim=1)
        (_, suffix_out), _ = model.vlm_with_expert.forward(
            attention_mask=make_att_2d_masks(pad, torch.cat([att_masks, suffix_att], dim=1)),
            position_ids=torch.cumsum(pad, dim=1) - 1,
            past_key_values=None,
            inputs_embeds=[embs, suffix_embs],
            use_cache=False,
        )
        joint = model.action_out_proj(suffix_out[:, -CHUNK:].float())
    assert_close(cached, joint, rtol=1e-5, atol=1e-5)


def test_sample_noise_draws_float32_standard_normals_from_the_global_rng(vlm_dir) -> None:
    model = stock_policy(vlm_dir).model
    torch.manual_seed(5)
    first = model.sample_noise((BATCH, CHUNK, MAX_ACTION), torch.device("cpu"))
    torch.manual_seed(5)
    assert torch.equal(model.sample_noise((BATCH, CHUNK, MAX_ACTION), torch.device("cpu")), first)
    assert first.dtype == torch.float32 and first.shape == (BATCH, CHUNK, MAX_ACTION)
    assert {"noise"} <= set(inspect.signature(SmolVLAPolicy.predict_action_chunk).parameters)


def test_euler_integrate_steps_from_t_one_to_zero_calling_the_velocity_at_each_state() -> None:
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append((x_t.clone(), t.clone()))
        return torch.full_like(x_t, 3.0)

    noise = torch.zeros(2, CHUNK, MAX_ACTION)
    out = euler_integrate(velocity, noise, 3)
    assert [t.tolist() for _, t in calls] == [
        [1.0, 1.0],
        [pytest.approx(2 / 3)] * 2,
        [pytest.approx(1 / 3)] * 2,
    ]
    assert [float(x.mean()) for x, _ in calls] == pytest.approx([0.0, -1.0, -2.0])  # x ← x − v/K
    assert_close(out, torch.full_like(noise, -3.0))


@pytest.mark.parametrize("train_state_proj", [True, False])
def test_train_expert_only_freezes_exactly_the_vlm(vlm_dir, train_state_proj) -> None:
    """The adapter's ``vlm_parameters`` are what SmolVLA's own ``train_expert_only`` freezes."""
    policy = stock_policy(vlm_dir, train_state_proj=train_state_proj)
    model = policy.model
    assert policy.config.train_expert_only and policy.config.freeze_vision_encoder  # the stock defaults
    vlm = {id(p) for p in model.vlm_with_expert.vlm.parameters()}
    assert vlm and {id(p) for p in SmolVLAFlowAdapter(policy).vlm_parameters()} == vlm
    assert not any(p.requires_grad for p in model.vlm_with_expert.vlm.parameters())
    assert all(p.requires_grad for p in model.vlm_with_expert.lm_expert.parameters())
    assert all(p.requires_grad == train_state_proj for p in model.state_proj.parameters())
    assert model.state_proj.in_features == MAX_STATE and model.state_proj.out_features == VLM_WIDTH
    others = [
        p
        for name, p in model.named_parameters()
        if not name.startswith(("vlm_with_expert.vlm.", "state_proj."))
    ]
    assert others and all(p.requires_grad for p in others)


def test_config_fields_the_adapter_reads(vlm_dir) -> None:
    config = stock_policy(vlm_dir).config
    assert (config.use_cache, config.rtc_config, config.adapt_to_pi_aloha) == (True, None, False)
    assert config.action_feature.shape == (ACTION_DIM,)
    assert (config.max_action_dim, config.max_state_dim, config.chunk_size) == (MAX_ACTION, MAX_STATE, CHUNK)
    assert (config.num_steps, config.n_action_steps) == (3, 2)


def _pyproject_entry_points() -> list[metadata.EntryPoint]:
    """This project's ``lerobot_pirl.recipes`` entry points as ``pyproject.toml`` declares them
    (the installed metadata may predate them until the next ``pip install -e .``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][ENTRY_POINT_GROUP]
    return [metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in declared.items()]


def test_the_adapter_registers_through_its_own_entry_point_like_a_third_party(vlm_dir) -> None:
    entry_points = _pyproject_entry_points()
    assert {ep.name: ep.value for ep in entry_points}[
        "pi-rl-smolvla"
    ] == "lerobot_pirl.policies.smolvla_pi_rl"
    catalog = discover(blocked=(), entry_points=entry_points)
    assert catalog.failures == []
    assert {"smolvla", "xvla"} <= set(catalog.adapters.policy_types())
    assert catalog.adapters.resolve("smolvla").policy_class is PiRLSmolVLAPolicy

    # The class swap onto a stock policy (what LeRobot's make_policy builds) keeps every weight.
    policy = stock_policy(vlm_dir)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    config = policy.config
    adopted = adopt_pi_rl(policy, catalog.adapters)
    assert adopted is policy and type(policy) is PiRLSmolVLAPolicy and policy.config is config
    after = policy.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert PiRLSmolVLAPolicy.name == SmolVLAPolicy.name == "smolvla"
