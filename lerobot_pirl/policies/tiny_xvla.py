"""Tiny, fully offline XVLA policies for tests, learner checks and the demo.

Stock XVLA loads a Florence-2 checkpoint and the ``facebook/bart-large`` tokenizer from the Hub.
Neither is needed to *build* the model: a small random ``florence_config`` gives a working XVLA
with ~200k parameters, and `TINY_TOKENIZER_DIR` is a word-level tokenizer built locally by
`build_tiny_tokenizer` (shipped in the package; ``scripts/build_tiny_tokenizer.py`` rewrites it),
which LeRobot's ``TokenizerProcessorStep`` loads with ``AutoTokenizer.from_pretrained(dir)``, so
nothing here ever downloads. The policy itself is the stock ``XVLAPolicy`` (or a subclass such as
``PiRLXVLAPolicy``) built through its own constructor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.xvla.configuration_xvla import XVLAConfig
from lerobot.utils.constants import ACTION, OBS_STATE

IMAGE_KEY = "observation.images.front"
TINY_VOCAB_SIZE = 128
LANGUAGE_LENGTH = 8
TINY_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tiny_tokenizer"
"""A word-level tokenizer for robot instructions (`build_tiny_tokenizer`), vocabulary < 128."""

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # BART's ids 0..3
INSTRUCTION_WORDS = (
    "a all and arrange at away back blue block blocks bottom box boxes bring cube cup down drawer "
    "drop green grasp gripper hold in inside into it left lift move near object of off on onto open "
    "pick place push put red right shelf side stack table take the to top towards up yellow"
).split()
"""The tokenizer's words (lower-cased; anything else is ``<unk>``)."""

# DaViT stem of the tiny vision tower: (kernel, stride, padding) per stage.
_PATCH_SIZE = (7, 3)
_PATCH_STRIDE = (4, 2)
_PATCH_PADDING = (3, 1)


def _vision_grid_side(image_size: int) -> int:
    """Side of the tiny vision tower's last feature map (conv output size, stage by stage)."""
    side = image_size
    for kernel, stride, padding in zip(_PATCH_SIZE, _PATCH_STRIDE, _PATCH_PADDING, strict=True):
        side = (side + 2 * padding - kernel) // stride + 1
    return side


def image_token_count(image_size: int) -> int:
    """Tokens one image contributes to the VLM: the spatial grid plus Florence-2's temporal token."""
    return _vision_grid_side(image_size) ** 2 + 1


def tiny_florence_config(
    *, image_size: int = 16, language_length: int = LANGUAGE_LENGTH, d_model: int = 32, image_views: int = 1
) -> dict[str, Any]:
    """A random two-stage DaViT + one-layer BART config, in the native ``transformers`` format.

    Sized so XVLA's constraints hold: ``projection_dim == d_model`` (image tokens are fed to the
    text encoder) and BART's ``max_position_embeddings`` covers image tokens + text tokens.
    """
    grid_side = _vision_grid_side(image_size)
    if grid_side < 1:
        raise ValueError(f"image_size={image_size} is too small for the tiny vision tower (needs >= 8)")
    return {
        "vision_config": {
            "depths": [1, 1],
            "patch_size": list(_PATCH_SIZE),
            "patch_stride": list(_PATCH_STRIDE),
            "patch_padding": list(_PATCH_PADDING),
            "patch_prenorm": [False, True],
            "embed_dim": [16, 32],
            "num_heads": [1, 2],
            "num_groups": [1, 2],
            "window_size": 2,
            "drop_path_rate": 0.0,
            "projection_dim": d_model,
            "max_position_embeddings": grid_side,
            "max_temporal_embeddings": 4,
        },
        "text_config": {
            "vocab_size": TINY_VOCAB_SIZE,
            "d_model": d_model,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 2 * d_model,
            "decoder_ffn_dim": 2 * d_model,
            "max_position_embeddings": image_views * image_token_count(image_size) + language_length,
        },
    }


def tiny_xvla_config(
    state_dim: int,
    action_dim: int,
    *,
    image_size: int = 16,
    chunk_size: int = 10,
    n_action_steps: int = 5,
    num_denoising_steps: int = 5,
    action_mode: str = "auto",
    hidden_size: int = 64,
    depth: int = 2,
    num_heads: int = 4,
    d_model: int = 32,
    language_length: int = LANGUAGE_LENGTH,
    image_views: int = 1,
    dtype: str = "float32",
    device: str = "cpu",
    **overrides: Any,
) -> XVLAConfig:
    """An ``XVLAConfig`` for a tiny random XVLA on ``observation.state`` + one blank-able image.

    Inputs: ``observation.state`` (STATE, ``state_dim``) and ``observation.images.front``
    (VISUAL, 3×image_size×image_size); output ``action`` (``action_dim``). With
    ``action_mode="ee6d"`` the action must be 20-D (the ee6d layout). ``max_len_seq`` is sized to
    chunk + image tokens + text tokens, ``max_state_dim`` to the state (at least 20 outside
    ``"auto"``). ``image_views`` sizes the sequence for that many cameras (each resized to
    ``image_size``, e.g. by ``resize_imgs_with_padding`` in ``overrides``). ``overrides`` go to
    ``XVLAConfig`` as they are (e.g. ``freeze_vision_encoder=True``).
    """
    fields: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        "chunk_size": chunk_size,
        "n_action_steps": n_action_steps,
        "num_denoising_steps": num_denoising_steps,
        "action_mode": action_mode,
        "hidden_size": hidden_size,
        "depth": depth,
        "num_heads": num_heads,
        "num_domains": 1,
        "len_soft_prompts": 4,
        "dim_time": 16,
        "max_len_seq": chunk_size + image_views * image_token_count(image_size) + language_length,
        # Non-auto action spaces (ee6d, joint, ...) zero gripper indices of the proprio in their
        # 20-D action layout, so the padded proprio must be at least that wide.
        "max_state_dim": state_dim if action_mode == "auto" else max(state_dim, 20),
        "tokenizer_max_length": language_length,
        "tokenizer_name": str(TINY_TOKENIZER_DIR),
        "florence_config": tiny_florence_config(
            image_size=image_size, language_length=language_length, d_model=d_model, image_views=image_views
        ),
        "input_features": {
            OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,)),
            IMAGE_KEY: PolicyFeature(type=FeatureType.VISUAL, shape=(3, image_size, image_size)),
        },
        "output_features": {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
    }
    fields.update(overrides)
    return XVLAConfig(**fields)


def build_tiny_tokenizer(output_dir: Path | str, words: Sequence[str] = INSTRUCTION_WORDS) -> Path:
    """Write a word-level ``PreTrainedTokenizerFast`` (lower-case, whitespace split, ``<s> … </s>``)
    over ``words`` to ``output_dir``: a stand-in for XVLA's BART tokenizer that is built offline and
    small enough for the tiny Florence-2 vocabulary. Deterministic: the same files every time."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate((*SPECIAL_TOKENS, *words))}
    if len(vocab) > TINY_VOCAB_SIZE:
        raise ValueError(f"{len(vocab)} tokens do not fit the tiny vocabulary of {TINY_VOCAB_SIZE}")
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    output_dir = Path(output_dir)
    fast.save_pretrained(str(output_dir))
    return output_dir
