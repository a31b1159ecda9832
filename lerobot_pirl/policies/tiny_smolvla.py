"""A tiny SmolVLA built fully offline: a test-size SmolVLM folder and the ``SmolVLAConfig`` over it.

Stock SmolVLA reads its VLM's config and processor with ``AutoConfig`` / ``AutoProcessor
.from_pretrained(vlm_model_name)``; both accept a local folder, and with ``load_vlm_weights=False``
no weight is read at all. `build_tiny_smolvlm` writes such a folder — a random-weight SmolVLM of
test size, the word-level tokenizer of the tiny XVLA (`build_tiny_tokenizer`) plus SmolVLM's image
special tokens, and a ``SmolVLMProcessor`` — so the policy is the stock ``SmolVLAPolicy`` built
through its own constructor and nothing ever downloads. The shipped SmolVLA SFT checkpoint and the
tests build from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.smolvla import SmolVLAConfig
from lerobot.utils.constants import ACTION, OBS_STATE

from lerobot_pirl.policies.tiny_xvla import IMAGE_KEY, INSTRUCTION_WORDS, build_tiny_tokenizer

BUNDLED_VLM_DIR = "vlm"
"""Where a tiny SmolVLA checkpoint keeps its VLM folder; a checkpoint shipped inside the package
names it by this relative path in ``config.json`` (``vlm_model_name``), which our loaders resolve
against the checkpoint (``runtime.processors.load_policy_config``)."""

IMAGE_SIZE = 32
PATCH_SIZE = 8
SCALE_FACTOR = 2
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
"""Tokens one image contributes after the connector's pixel shuffle."""
LANGUAGE_LENGTH = 16
INSTRUCTION = "pick up the red cube"

SMOLVLM_SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
    "global_image_token": "<global-img>",
}
"""The named tokens ``SmolVLMProcessor`` and SmolVLA read off the tokenizer (``*_token`` / ``*_token_id``)."""


def build_tiny_smolvlm(output_dir: Path | str, words: Sequence[str] = INSTRUCTION_WORDS) -> Path:
    """Write a test-size SmolVLM folder that ``SmolVLAConfig(vlm_model_name=output_dir)`` builds from.

    Llama text model 64 wide (2 layers, 4 heads, 2 KV heads, head_dim 16), a 1-layer SigLIP of
    width 32 on 32×32 images in 8×8 patches, pixel shuffle 2 (so `IMAGE_TOKENS` per image), and
    the vocabulary of the local tokenizer over ``words`` (the tiny XVLA's pick-and-place words by
    default; a multi-task suite passes its instructions' words). Deterministic: the same files
    for the same words.
    """
    from transformers import (
        PreTrainedTokenizerFast,
        SmolVLMConfig,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    output_dir = Path(output_dir)
    build_tiny_tokenizer(output_dir, words)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(
        str(output_dir), extra_special_tokens=SMOLVLM_SPECIAL_TOKENS
    )
    image_processor = SmolVLMImageProcessor(
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
        do_image_splitting=False,
    )
    processor = SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(),
        image_seq_len=IMAGE_TOKENS,
    )
    processor.save_pretrained(str(output_dir))
    vocab_size = len(tokenizer)
    SmolVLMConfig(
        text_config={
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "vocab_size": vocab_size,
            "max_position_embeddings": 128,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids(SMOLVLM_SPECIAL_TOKENS["image_token"]),
        vocab_size=vocab_size,
    ).save_pretrained(str(output_dir))
    return output_dir


def tiny_smolvla_config(
    vlm_dir: Path | str,
    state_dim: int,
    action_dim: int,
    *,
    chunk_size: int = 4,
    n_action_steps: int = 2,
    num_steps: int = 3,
    max_state_dim: int = 6,
    max_action_dim: int = 6,
    **overrides: Any,
) -> SmolVLAConfig:
    """A ``SmolVLAConfig`` on ``observation.state`` + one 32×32 camera over the tiny VLM in ``vlm_dir``.

    State and action are padded to ``max_state_dim`` / ``max_action_dim`` (wider than the env's, as
    SmolVLA pads them), so the adapter's real-vs-model action dims are exercised. Language is
    padded to ``LANGUAGE_LENGTH`` (``pad_language_to="max_length"``), so the prefix has padded
    positions. ``overrides`` go to ``SmolVLAConfig`` as they are.
    """
    fields: dict[str, Any] = {
        "vlm_model_name": str(vlm_dir),
        "load_vlm_weights": False,
        "num_vlm_layers": 2,
        "self_attn_every_n_layers": 2,
        "chunk_size": chunk_size,
        "n_action_steps": n_action_steps,
        "num_steps": num_steps,
        "max_state_dim": max_state_dim,
        "max_action_dim": max_action_dim,
        "resize_imgs_with_padding": (IMAGE_SIZE, IMAGE_SIZE),
        "tokenizer_max_length": LANGUAGE_LENGTH,
        "pad_language_to": "max_length",
        "device": "cpu",
        "input_features": {
            OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,)),
            IMAGE_KEY: PolicyFeature(type=FeatureType.VISUAL, shape=(3, IMAGE_SIZE, IMAGE_SIZE)),
        },
        "output_features": {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
    }
    fields.update(overrides)
    return SmolVLAConfig(**fields)
