"""Pins every LeRobot π0 / π0.5 internal that `lerobot_pirl.policies.pi0_pi_rl` (the adapters) and
`helpers.tiny_pi0` (the test-size builder and tokenizer stand-in) reach, and the adapters'
registration through their plugin entry point.

Each private or undocumented name is asserted here on stock ``PI0Policy`` / ``PI05Policy``, so a
LeRobot (or transformers) upgrade that moves one fails in this file, with the name in the test,
before anything else breaks.
"""

from __future__ import annotations

import inspect
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_pi0
from helpers.tiny_pi0 import (
    DEPTH,
    EXPERT_WIDTH,
    HEAD_DIM,
    IMAGE_KEY,
    IMAGE_SIZE,
    IMAGE_TOKENS,
    PALIGEMMA_TOKENIZER,
    VLM_WIDTH,
    VOCAB_SIZE,
    build_paligemma_stand_in,
    build_tiny_pi,
    observation_batch,
    paligemma_stand_in,
    tiny_pi,
    tiny_pi_config,
)
from lerobot.policies.common.flow_matching import euler_integrate
from lerobot.policies.common.vla_utils import make_att_2d_masks, pad_vector, prepare_attention_masks_4d
from lerobot.policies.pi0 import modeling_pi0
from lerobot.policies.pi0.modeling_pi0 import PI0Policy
from lerobot.policies.pi05 import modeling_pi05
from lerobot.policies.pi05.modeling_pi05 import PI05Policy
from lerobot.processor import tokenizer_processor
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch.testing import assert_close
from transformers import DynamicCache
from transformers.models.auto import CONFIG_MAPPING

from lerobot_pirl.policies import adopt_pi_rl
from lerobot_pirl.policies.pi0_pi_rl import (
    PI0FlowAdapter,
    PI05FlowAdapter,
    PiRLPI0Policy,
    PiRLPI05Policy,
    repeat_cache,
)
from lerobot_pirl.recipes.hookspecs import ENTRY_POINT_GROUP
from lerobot_pirl.recipes.registry import discover

ROOT = Path(__file__).resolve().parents[2]
STATE_DIM, ACTION_DIM, CHUNK, BATCH, MAX_DIM = 3, 2, 4, 2, 6
STOCK = {"pi0": PI0Policy, "pi05": PI05Policy}
LANGUAGE = {"pi0": 8, "pi05": 24}  # tiny_pi_config's tokenizer_max_length
kinds = pytest.mark.parametrize("kind", list(STOCK))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_paligemma_stand_in(tmp_path_factory.mktemp("paligemma_stand_in"))


def stock_policy(kind: str, **overrides):
    return build_tiny_pi(STOCK[kind], tiny_pi_config(kind, STATE_DIM, ACTION_DIM, **overrides)).eval()


def observations(policy, tokenizer_dir) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    states = torch.rand(BATCH, STATE_DIM, generator=generator) * 2 - 1
    images = {IMAGE_KEY: torch.rand(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)}
    return observation_batch(policy.config, tokenizer_dir, states, images)


def prefix(policy, observation: dict):
    """The prefix pass exactly as the adapter runs it: (embs, pad masks, att masks, outputs, cache)."""
    model = policy.model
    images, img_masks = policy._preprocess_images(observation)
    embs, pad_masks, att_masks = model.embed_prefix(
        images, img_masks, observation[OBS_LANGUAGE_TOKENS], observation[OBS_LANGUAGE_ATTENTION_MASK]
    )
    outputs, cache = model.paligemma_with_expert.forward(
        attention_mask=prepare_attention_masks_4d(make_att_2d_masks(pad_masks, att_masks)),
        position_ids=torch.cumsum(pad_masks, dim=1) - 1,
        past_key_values=None,
        inputs_embeds=[embs, None],
        use_cache=True,
    )
    return embs, pad_masks, att_masks, outputs, cache


def suffix_inputs(policy, observation) -> dict:
    return {"state": pad_vector(observation[OBS_STATE], MAX_DIM)} if policy.config.type == "pi0" else {}


# ----------------------------------------------------------------------------- the tiny builder's patches


def test_the_names_the_tiny_builder_patches_exist_and_the_literal_eight_heads_holds() -> None:
    for module in (modeling_pi0, modeling_pi05):
        assert inspect.isclass(module.PaliGemmaForConditionalGenerationWithPiGemma)
        assert inspect.isclass(module.PiGemmaForCausalLM)
        assert list(inspect.signature(module.get_gemma_config).parameters) == ["variant"]
        assert list(inspect.signature(module.GemmaConfig).parameters) == [
            "width", "depth", "mlp_dim", "num_heads", "num_kv_heads", "head_dim",
        ]  # fmt: skip
        # compute_layer_complete (training's joint pass) reshapes the attention with 8 heads, and the
        # expert attends to the VLM's K/V: the real variants share heads, KV heads, head_dim, depth.
        assert "1 * 8 * head_dim" in inspect.getsource(module.compute_layer_complete)
        real = [module.get_gemma_config(v) for v in ("gemma_2b", "gemma_300m")]
        assert {(c.num_heads, c.num_kv_heads, c.head_dim, c.depth) for c in real} == {(8, 1, 256, 18)}
    vision = CONFIG_MAPPING["paligemma"]().vision_config
    for name in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "patch_size",
    ):
        assert hasattr(vision, name), name


@kinds
def test_tiny_pi_builds_the_stock_architecture_at_test_size_and_restores_every_name(kind) -> None:
    originals = [
        (m, name, getattr(m, name))
        for m in (modeling_pi0, modeling_pi05)
        for name in ("get_gemma_config", "PaliGemmaForConditionalGenerationWithPiGemma", "PiGemmaForCausalLM")
    ]
    policy = stock_policy(kind)
    assert all(getattr(m, name) is original for m, name, original in originals)
    paligemma = policy.model.paligemma_with_expert.paligemma
    expert = policy.model.paligemma_with_expert.gemma_expert
    assert type(paligemma) is modeling_pi0.PaliGemmaForConditionalGenerationWithPiGemma
    assert type(expert) is modeling_pi0.PiGemmaForCausalLM
    assert paligemma.model.language_model.embed_tokens.num_embeddings == VOCAB_SIZE
    assert paligemma.lm_head.out_features == expert.lm_head.out_features == VOCAB_SIZE
    assert len(paligemma.model.vision_tower.vision_model.encoder.layers) == 1
    assert len(paligemma.model.language_model.layers) == len(expert.model.layers) == DEPTH
    assert paligemma.config.text_config.hidden_size == VLM_WIDTH and expert.config.hidden_size == EXPERT_WIDTH
    assert expert.config.use_adarms is (kind == "pi05")  # π0.5 conditions the expert's norms on time
    assert 100_000 < sum(p.numel() for p in policy.parameters()) < 200_000
    with pytest.raises(ValueError, match="Unknown variant"):  # the real lookup, outside the context
        modeling_pi0.get_gemma_config("tiny")


@kinds
def test_the_stock_processors_load_the_paligemma_tokenizer_by_name_and_pi05_prompts_the_state(
    kind, tokenizer_dir
) -> None:
    from lerobot.policies.pi0.processor_pi0 import make_pi0_pre_post_processors
    from lerobot.policies.pi05.processor_pi05 import make_pi05_pre_post_processors

    real = tokenizer_processor.AutoTokenizer
    config = tiny_pi_config(kind, STATE_DIM, ACTION_DIM)
    make = make_pi0_pre_post_processors if kind == "pi0" else make_pi05_pre_post_processors
    with paligemma_stand_in(tokenizer_dir) as asked:
        make(config, dataset_stats=None)
    assert asked == [PALIGEMMA_TOKENIZER]
    assert tokenizer_processor.AutoTokenizer is real  # the stand-in is gone

    state = torch.tensor([[-1.0, 0.0, 0.999], [0.5, -0.5, 0.25]])
    batch = observation_batch(config, tokenizer_dir, state)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    words = [
        tokenizer.convert_ids_to_tokens(row[mask].tolist())
        for row, mask in zip(batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], strict=True)
    ]
    assert batch[OBS_LANGUAGE_TOKENS].shape == (2, LANGUAGE[kind])
    if kind == "pi0":  # the instruction, nothing else (the state goes to the expert's state token)
        assert words == [["<bos>", "pick", "up", "the", "red", "cube"]] * 2
    else:  # "Task: …, State: <bins>;\nAction: " with 256 bins over [-1, 1]
        bins = np.digitize(state.numpy(), np.linspace(-1, 1, 257)[:-1]) - 1
        for row, row_bins in zip(words, bins, strict=True):
            assert row == ["<bos>", "task", ":", "pick", "up", "the", "red", "cube", ",", "state", ":",
                           *map(str, row_bins), ";", "action", ":"]  # fmt: skip
        assert bins.tolist()[0] == [0, 128, 255]


# ----------------------------------------------------------------------------- what the adapter reaches


@kinds
def test_preprocess_images_gives_siglip_range_images_and_one_mask_per_camera(kind, tokenizer_dir) -> None:
    policy = stock_policy(kind)
    assert list(inspect.signature(policy._preprocess_images).parameters) == ["batch"]
    observation = observations(policy, tokenizer_dir)
    [image], [mask] = policy._preprocess_images(observation)
    assert image.shape == (BATCH, 3, IMAGE_SIZE, IMAGE_SIZE) and torch.equal(
        mask, torch.ones(BATCH, dtype=torch.bool)
    )
    assert_close(image, observation[IMAGE_KEY] * 2 - 1)  # [0, 1] -> [-1, 1], no resize at the config's size


@kinds
def test_embed_prefix_is_images_then_language_all_in_one_bidirectional_block(kind, tokenizer_dir) -> None:
    policy = stock_policy(kind)
    names = list(inspect.signature(policy.model.embed_prefix).parameters)
    assert names == (
        ["images", "img_masks", "lang_tokens", "lang_masks"]
        if kind == "pi0"
        else ["images", "img_masks", "tokens", "masks"]
    )  # the names differ; the adapter passes them by position
    observation = observations(policy, tokenizer_dir)
    embs, pad_masks, att_masks, (prefix_out, expert_out), cache = prefix(policy, observation)
    length = IMAGE_TOKENS + LANGUAGE[kind]
    assert embs.shape == prefix_out.shape == (BATCH, length, VLM_WIDTH) and expert_out is None
    language = observation[OBS_LANGUAGE_ATTENTION_MASK]
    assert not language.all()  # padded language: the prefix has masked positions
    assert torch.equal(pad_masks, torch.cat([torch.ones(BATCH, IMAGE_TOKENS, dtype=torch.bool), language], 1))
    assert not att_masks.any()
    assert set(inspect.signature(policy.model.paligemma_with_expert.forward).parameters) >= {
        "attention_mask", "position_ids", "past_key_values", "inputs_embeds", "use_cache",
    }  # fmt: skip
    assert isinstance(cache, DynamicCache) and len(cache.layers) == DEPTH
    for layer in cache.layers:
        assert layer.keys.shape == layer.values.shape == (BATCH, 1, length, HEAD_DIM)  # one KV head


@kinds
def test_the_stock_sampler_sets_eager_attention_on_the_language_model_config(kind, tokenizer_dir) -> None:
    policy = stock_policy(kind)
    config = policy.model.paligemma_with_expert.paligemma.model.language_model.config
    config._attn_implementation = "sdpa"
    policy.predict_action_chunk(observations(policy, tokenizer_dir))
    assert config._attn_implementation == "eager"
    assert policy.model.paligemma_with_expert.gemma_expert.model.config._attn_implementation == "eager"


def test_dynamic_cache_iterates_and_rebuilds_as_key_value_window_triples(tokenizer_dir) -> None:
    """LeRobot's ``clone_past_key_values`` and the adapter's ``repeat_cache`` both rely on it."""
    policy = stock_policy("pi0")
    cache = prefix(policy, observations(policy, tokenizer_dir))[4]
    triples = list(cache)
    assert len(triples) == DEPTH and all(len(triple) == 3 for triple in triples)
    repeated = repeat_cache(cache, 3)
    for original, copy in zip(cache.layers, repeated.layers, strict=True):
        assert torch.equal(copy.keys, original.keys.repeat_interleave(3, dim=0))
        assert torch.equal(copy.values, original.values.repeat_interleave(3, dim=0))


@kinds
def test_denoise_step_copies_the_cache_and_gives_a_float32_velocity(kind, tokenizer_dir) -> None:
    policy = stock_policy(kind)
    model = policy.model
    expected = ["state"] if kind == "pi0" else []
    assert list(inspect.signature(model.denoise_step).parameters) == [
        *expected, "prefix_pad_masks", "past_key_values", "x_t", "timestep",
    ]  # fmt: skip
    observation = observations(policy, tokenizer_dir)
    _, pad_masks, _, _, cache = prefix(policy, observation)
    keys = [layer.keys.clone() for layer in cache.layers]
    tokens: list[torch.Tensor] = []
    handle = model.action_out_proj.register_forward_pre_hook(lambda _m, args: tokens.append(args[0]))
    x_t = torch.randn(BATCH, CHUNK, MAX_DIM)
    with torch.no_grad():
        v = model.denoise_step(
            **suffix_inputs(policy, observation),
            prefix_pad_masks=pad_masks,
            past_key_values=cache,
            x_t=x_t,
            timestep=torch.full((BATCH,), 0.5),
        )
    handle.remove()
    assert v.shape == (BATCH, CHUNK, MAX_DIM) and v.dtype == torch.float32
    [features] = tokens  # one action_out_proj call per step: its input is the per-token features
    assert features.shape == (BATCH, CHUNK, EXPERT_WIDTH) and features.dtype == torch.float32
    assert model.action_out_proj.in_features == EXPERT_WIDTH
    # The cache is exactly the prefix afterwards: denoise_step appended to a copy.
    assert all(torch.equal(layer.keys, key) for layer, key in zip(cache.layers, keys, strict=True))


@kinds
def test_the_cached_prefix_gives_the_velocity_of_the_joint_training_pass(kind, tokenizer_dir) -> None:
    """Why one cache per decision is exact: the expert's velocity over the cached prefix equals the
    cache-free joint pass over [prefix; suffix] that training runs (``compute_layer_complete``)."""
    policy = stock_policy(kind)
    model = policy.model
    observation = observations(policy, tokenizer_dir)
    embs, pad_masks, att_masks, _, cache = prefix(policy, observation)
    x_t, t = torch.randn(BATCH, CHUNK, MAX_DIM), torch.tensor([0.9, 0.3])
    extra = suffix_inputs(policy, observation)
    with torch.no_grad():
        cached = model.denoise_step(
            **extra, prefix_pad_masks=pad_masks, past_key_values=cache, x_t=x_t, timestep=t
        )
        suffix_embs, suffix_pad, suffix_att, adarms_cond = model.embed_suffix(*extra.values(), x_t, t)
        pad = torch.cat([pad_masks, suffix_pad], dim=1)
        (_, suffix_out), _ = model.paligemma_with_expert.forward(
            attention_mask=prepare_attention_masks_4d(
                make_att_2d_masks(pad, torch.cat([att_masks, suffix_att], 1))
            ),
            position_ids=torch.cumsum(pad, dim=1) - 1,
            past_key_values=None,
            inputs_embeds=[embs, suffix_embs],
            use_cache=False,
            adarms_cond=[None, adarms_cond],
        )
        joint = model.action_out_proj(suffix_out[:, -CHUNK:].float())
    assert_close(cached, joint, rtol=1e-5, atol=1e-5)


@kinds
def test_sample_noise_rtc_processor_and_the_noise_argument_of_the_stock_sampler(kind) -> None:
    policy = stock_policy(kind)
    model = policy.model
    torch.manual_seed(5)
    first = model.sample_noise((BATCH, CHUNK, MAX_DIM), torch.device("cpu"))
    torch.manual_seed(5)
    assert torch.equal(model.sample_noise((BATCH, CHUNK, MAX_DIM), torch.device("cpu")), first)
    assert first.dtype == torch.float32
    assert model.rtc_processor is None and policy.config.rtc_config is None
    assert "noise" in inspect.signature(model.sample_actions).parameters
    assert {"rtc_processor", "rtc_enabled"} <= set(inspect.signature(euler_integrate).parameters)


@kinds
def test_train_expert_only_freezes_exactly_paligemma(kind) -> None:
    """The adapter's ``vlm_parameters`` are what the stock ``train_expert_only`` freezes."""
    policy = stock_policy(kind, train_expert_only=True)
    model = policy.model
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    adapter_class = PI0FlowAdapter if kind == "pi0" else PI05FlowAdapter
    assert frozen and {id(p) for p in adapter_class(policy).vlm_parameters()} == frozen
    assert frozen == {id(p) for p in model.paligemma_with_expert.paligemma.parameters()}


@kinds
def test_config_fields_the_adapter_reads(kind) -> None:
    config = stock_policy(kind).config
    assert (config.rtc_config, config.compile_model, config.dtype) == (None, False, "float32")
    assert config.output_features[ACTION].shape == (ACTION_DIM,)
    assert (config.max_action_dim, config.max_state_dim, config.chunk_size) == (MAX_DIM, MAX_DIM, CHUNK)
    assert (config.num_inference_steps, config.n_action_steps) == (3, 2)
    assert config.train_expert_only is False  # the stock default: πRL's freeze_vlm does the freezing


# ----------------------------------------------------------------------------- registration


def _pyproject_entry_points() -> list[metadata.EntryPoint]:
    """This project's ``lerobot_pirl.recipes`` entry points as ``pyproject.toml`` declares them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][ENTRY_POINT_GROUP]
    return [metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in declared.items()]


def test_the_adapters_register_through_their_own_entry_point_like_a_third_party() -> None:
    entry_points = _pyproject_entry_points()
    assert {ep.name: ep.value for ep in entry_points}["pi-rl-pi0"] == "lerobot_pirl.policies.pi0_pi_rl"
    catalog = discover(blocked=(), entry_points=entry_points)
    assert catalog.failures == []
    assert {"pi0", "pi05", "smolvla", "xvla"} <= set(catalog.adapters.policy_types())
    for kind, pi_rl_class in (("pi0", PiRLPI0Policy), ("pi05", PiRLPI05Policy)):
        assert catalog.adapters.resolve(kind).policy_class is pi_rl_class
        assert pi_rl_class.name == STOCK[kind].name == kind

        # The class swap onto a stock policy (what LeRobot's make_policy builds) keeps every weight.
        policy = stock_policy(kind)
        before = {k: v.clone() for k, v in policy.state_dict().items()}
        config = policy.config
        assert adopt_pi_rl(policy, catalog.adapters) is policy and type(policy) is pi_rl_class
        after = policy.state_dict()
        assert policy.config is config and list(after) == list(before)
        assert all(torch.equal(after[k], before[k]) for k in before)


def test_tiny_pi_is_a_context_that_only_patches_while_open() -> None:
    with tiny_pi():
        assert modeling_pi0.get_gemma_config("gemma_2b") is tiny_pi0.TINY_VARIANTS["gemma_2b"]
        assert modeling_pi05.get_gemma_config("gemma_300m") is tiny_pi0.TINY_VARIANTS["gemma_300m"]
    assert modeling_pi0.get_gemma_config("gemma_2b").width == 2048
