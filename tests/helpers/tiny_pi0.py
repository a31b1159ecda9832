"""Tiny π0 / π0.5 policies built offline, for tests only.

LeRobot's π0 and π0.5 have no small variant: ``get_gemma_config`` knows ``gemma_300m`` and
``gemma_2b`` only, and ``PaliGemmaWithExpertModel`` fixes the 257 152-token vocabulary and the
So400m vision tower on the config it hands to ``PaliGemmaForConditionalGenerationWithPiGemma`` and
``PiGemmaForCausalLM``. `tiny_pi` patches exactly those three names in the π0 / π0.5 modeling
modules while it is open, so the stock constructors build the stock architecture at test size;
everything it builds outside the context (sampling, training, saving) runs unpatched. Loading a
saved tiny checkpoint constructs the model again, so it happens inside the context too.

Both processors load the gated ``google/paligemma-3b-pt-224`` tokenizer by name;
`paligemma_stand_in` answers that name with a local word-level tokenizer that knows the
instruction, π0.5's prompt words and its 256 state bins, so the stock pre-processors run and
nothing downloads. Patches live here, never in the package.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.pi0 import modeling_pi0
from lerobot.policies.pi0.configuration_pi0 import PI0Config
from lerobot.policies.pi05 import modeling_pi05
from lerobot.policies.pi05.configuration_pi05 import PI05Config
from lerobot.utils.constants import ACTION, OBS_STATE
from torch import Tensor

PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"
"""The tokenizer both stock processors load by name."""
IMAGE_KEY = "observation.images.front"
IMAGE_SIZE, PATCH_SIZE = 16, 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
INSTRUCTION = "pick up the red cube"
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")  # PaliGemma's ids 0..3
PROMPT_WORDS = ("pick", "up", "the", "red", "cube", "task", "state", "action", ":", ",", ";")
STATE_BINS = 256  # π0.5's processor writes each state dim as one of 256 bins
VOCAB_SIZE = len(SPECIAL_TOKENS) + len(PROMPT_WORDS) + STATE_BINS

# The patched variants. compute_layer_complete (the joint prefix+suffix pass of training) reshapes
# the attention output with a literal 8 heads, and the expert's layers attend to the VLM's K/V
# layer by layer: both keep 8 heads, one KV head, the same head_dim and the same depth.
VLM_WIDTH, EXPERT_WIDTH, DEPTH, HEADS, HEAD_DIM = 64, 32, 2, 8, 8
VISION_WIDTH = 32
TINY_VARIANTS = {
    "gemma_2b": modeling_pi0.GemmaConfig(VLM_WIDTH, DEPTH, 2 * VLM_WIDTH, HEADS, 1, HEAD_DIM),
    "gemma_300m": modeling_pi0.GemmaConfig(EXPERT_WIDTH, DEPTH, 2 * EXPERT_WIDTH, HEADS, 1, HEAD_DIM),
}
MODELING_MODULES = (modeling_pi0, modeling_pi05)


def _tiny_paligemma(real: Any, config: Any) -> Any:
    """The stock PaliGemma class on ``config`` shrunk: tiny vocabulary, a 1-layer SigLIP whose
    projection lands on the text width (as So400m's 2048 lands on gemma_2b's)."""
    config._vocab_size = VOCAB_SIZE
    config.image_token_index = VOCAB_SIZE
    config.text_config.vocab_size = VOCAB_SIZE
    vision = config.vision_config
    vision.hidden_size, vision.intermediate_size = VISION_WIDTH, 2 * VISION_WIDTH
    vision.num_hidden_layers, vision.num_attention_heads = 1, 2
    vision.patch_size = PATCH_SIZE
    vision.projection_dim = config.text_config.hidden_size
    config.projection_dim = config.text_config.hidden_size
    return real(config)


def _tiny_expert(real: Any, config: Any) -> Any:
    config.vocab_size = VOCAB_SIZE
    return real(config)


@contextmanager
def tiny_pi() -> Iterator[None]:
    """While open, π0 / π0.5 constructors build the tiny variants (see the module docstring)."""
    with ExitStack() as stack:
        for module in MODELING_MODULES:
            paligemma = module.PaliGemmaForConditionalGenerationWithPiGemma
            expert = module.PiGemmaForCausalLM
            stack.enter_context(mock.patch.object(module, "get_gemma_config", TINY_VARIANTS.__getitem__))
            stack.enter_context(
                mock.patch.object(
                    module,
                    "PaliGemmaForConditionalGenerationWithPiGemma",
                    functools.partial(_tiny_paligemma, paligemma),
                )
            )
            stack.enter_context(
                mock.patch.object(module, "PiGemmaForCausalLM", functools.partial(_tiny_expert, expert))
            )
        yield


def tiny_pi_config(
    policy_type: str, state_dim: int, action_dim: int, **overrides: Any
) -> PI0Config | PI05Config:
    """A ``PI0Config`` / ``PI05Config`` for the tiny model: one camera of `IMAGE_SIZE`, float32 on
    CPU, paddings above the real dims so the chain has padded dims."""
    config_class = {"pi0": PI0Config, "pi05": PI05Config}[policy_type]
    settings: dict[str, Any] = {
        "chunk_size": 4,
        "n_action_steps": 2,
        "num_inference_steps": 3,
        "max_state_dim": 6,
        "max_action_dim": 6,
        "image_resolution": (IMAGE_SIZE, IMAGE_SIZE),
        "tokenizer_max_length": 8 if policy_type == "pi0" else 24,
        "device": "cpu",
        "dtype": "float32",
        "push_to_hub": False,
        "input_features": {
            OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,)),
            IMAGE_KEY: PolicyFeature(type=FeatureType.VISUAL, shape=(3, IMAGE_SIZE, IMAGE_SIZE)),
        },
        "output_features": {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
    }
    settings.update(overrides)
    return config_class(**settings)


def build_tiny_pi(policy_class: type, config: PI0Config | PI05Config, seed: int = 0) -> Any:
    """``policy_class(config)`` (a stock or πRL π0 / π0.5 class) at test size, seeded."""
    torch.manual_seed(seed)
    with tiny_pi():
        return policy_class(config)


def build_paligemma_stand_in(output_dir: Path | str) -> Path:
    """Write a word-level tokenizer (lower-case, split on whitespace and punctuation, ``<bos>``
    first) whose words are the instruction, π0.5's prompt words and the state bins ``0``–``255``:
    the stock processors' prompts tokenise with no unknown word, in `VOCAB_SIZE` ids."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = (*SPECIAL_TOKENS, *PROMPT_WORDS, *(str(i) for i in range(STATE_BINS)))
    vocab = {token: index for index, token in enumerate(words)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    output_dir = Path(output_dir)
    fast.save_pretrained(str(output_dir))
    return output_dir


@contextmanager
def paligemma_stand_in(tokenizer_dir: Path | str) -> Iterator[list[str]]:
    """While open, LeRobot's ``TokenizerProcessorStep`` loads ``tokenizer_dir`` whenever it asks for
    `PALIGEMMA_TOKENIZER` (every other name loads as usual); yields the names asked for."""
    from lerobot.processor import tokenizer_processor

    real = tokenizer_processor.AutoTokenizer
    asked: list[str] = []

    class StandIn:
        @staticmethod
        def from_pretrained(name: str, *args: Any, **kwargs: Any) -> Any:
            asked.append(name)
            local = str(tokenizer_dir) if name == PALIGEMMA_TOKENIZER else name
            return real.from_pretrained(local, *args, **kwargs)

    with mock.patch.object(tokenizer_processor, "AutoTokenizer", StandIn):
        yield asked


_PREPROCESSORS: dict[tuple, Any] = {}


def _preprocessor(config: PI0Config | PI05Config, tokenizer_dir: str) -> Any:
    """The stock pre-processor of ``config``'s type, built once per distinct setting it reads."""
    from lerobot.policies.pi0.processor_pi0 import make_pi0_pre_post_processors
    from lerobot.policies.pi05.processor_pi05 import make_pi05_pre_post_processors

    key = (
        config.type,
        config.tokenizer_max_length,
        config.max_state_dim,
        tuple(config.input_features),
        tokenizer_dir,
    )
    if key not in _PREPROCESSORS:
        make = make_pi0_pre_post_processors if config.type == "pi0" else make_pi05_pre_post_processors
        with paligemma_stand_in(tokenizer_dir):
            _PREPROCESSORS[key] = make(config, dataset_stats=None)[0]
    return _PREPROCESSORS[key]


def observation_batch(
    config: PI0Config | PI05Config,
    tokenizer_dir: Path | str,
    state: Tensor,
    images: dict[str, Tensor] | None = None,
    instruction: str = INSTRUCTION,
) -> dict[str, Tensor]:
    """A preprocessed batch from a [B, state_dim] state in [-1, 1], through the policy type's stock
    pre-processor (no dataset stats: identity normalisation): every camera gets the given image
    or a blank one; π0's language tokens are the instruction, π0.5's the instruction plus the
    discretised state."""
    preprocessor = _preprocessor(config, str(tokenizer_dir))
    batch_size = state.shape[0]
    images = images or {}
    raw: dict[str, Any] = {OBS_STATE: state, "task": [instruction] * batch_size}
    for key, feature in config.image_features.items():
        raw[key] = images.get(key, torch.zeros(batch_size, *feature.shape))
    processed = preprocessor(raw)
    return {key: value for key, value in processed.items() if isinstance(value, Tensor)}
