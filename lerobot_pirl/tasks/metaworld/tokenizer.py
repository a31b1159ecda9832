"""A word-level instruction tokenizer built locally over MetaWorld's task instructions.

The shipped tiny tokenizer (`lerobot_pirl.policies.tiny_xvla.build_tiny_tokenizer`) knows a fixed
list of pick-and-place words and maps every other word to ``<unk>``: MT10's instructions ("Open a
drawer", "Push and close a drawer", ...) would partly collapse to the same ids. This one has the
same form (lower-case, whitespace and punctuation split, ``<s> … </s>``, BART's special ids 0..3, a
``PreTrainedTokenizerFast`` that LeRobot's ``TokenizerProcessorStep`` loads with
``AutoTokenizer.from_pretrained(dir)``), with a vocabulary of every word of the given instructions,
in sorted order, so it is deterministic and nothing downloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lerobot_pirl.policies.tiny_xvla import build_tiny_tokenizer


def instruction_words(instructions: Iterable[str]) -> list[str]:
    """The sorted, lower-cased words of ``instructions`` as the tokenizer splits them."""
    from tokenizers import pre_tokenizers

    split = pre_tokenizers.Whitespace()
    words = {piece for text in instructions for piece, _ in split.pre_tokenize_str(text.lower())}
    return sorted(words)


def build_instruction_tokenizer(output_dir: Path | str, instructions: Iterable[str]) -> Path:
    """Write a word-level tokenizer whose vocabulary covers every word of ``instructions`` to
    ``output_dir`` (`build_tiny_tokenizer` over `instruction_words`: the same files for the same
    set of instructions)."""
    return build_tiny_tokenizer(output_dir, instruction_words(instructions))


def token_length(tokenizer_dir: Path | str, instructions: Iterable[str]) -> int:
    """Tokens of the longest of ``instructions`` (``<s>`` and ``</s>`` included): the
    ``tokenizer_max_length`` / language length that keeps every instruction whole."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return max(len(tokenizer(text)["input_ids"]) for text in instructions)
