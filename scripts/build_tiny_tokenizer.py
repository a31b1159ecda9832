"""Rewrite the shipped tiny tokenizer (`lerobot_pirl/policies/assets/tiny_tokenizer/`), offline."""

from lerobot_pirl.policies.tiny_xvla import TINY_TOKENIZER_DIR, build_tiny_tokenizer

if __name__ == "__main__":
    print(build_tiny_tokenizer(TINY_TOKENIZER_DIR))
