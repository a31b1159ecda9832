"""The offline tiny-XVLA builders: stock XVLAPolicy runs on them with no download."""

from __future__ import annotations

import torch
from helpers.xvla_batches import language_tokens, observation_batch
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy
from lerobot.utils.constants import OBS_LANGUAGE_TOKENS, OBS_STATE

from lerobot_pirl.policies.tiny_xvla import (
    IMAGE_KEY,
    TINY_VOCAB_SIZE,
    image_token_count,
    tiny_xvla_config,
)


def test_language_tokens_are_fixed_ids_below_the_vocabulary():
    tokens = language_tokens(3, length=8)
    assert tokens.dtype == torch.long and tokens.shape == (3, 8)
    assert torch.equal(tokens, language_tokens(3, length=8))
    assert torch.equal(tokens[0], tokens[2])
    assert tokens.min() >= 0 and tokens.max() < TINY_VOCAB_SIZE
    assert tokens.unique().numel() == 8  # a real instruction, not one repeated token


def test_tiny_xvla_runs_stock_and_its_sequence_fits_the_budget():
    config = tiny_xvla_config(4, 3, chunk_size=6, n_action_steps=2, num_denoising_steps=2)
    policy = XVLAPolicy(config)
    assert sum(p.numel() for p in policy.parameters()) < 300_000
    state = torch.rand(2, 4)
    batch = observation_batch(config, state)
    assert batch.keys() == {OBS_STATE, IMAGE_KEY, OBS_LANGUAGE_TOKENS}
    assert batch[IMAGE_KEY].shape == (2, 3, 16, 16) and not batch[IMAGE_KEY].any()

    inputs = policy._build_model_inputs(batch)
    enc = policy.model.forward_vlm(inputs["input_ids"], inputs["image_input"], inputs["image_mask"])
    vlm_tokens = enc["vlm_features"].shape[1]
    assert vlm_tokens == image_token_count(16) + config.tokenizer_max_length == 5 + 8
    assert config.max_len_seq == config.chunk_size + vlm_tokens  # exactly what the transformer needs
    assert policy.predict_action_chunk(batch).shape == (2, 6, 3)

    image = torch.rand(2, 3, 16, 16)
    assert torch.equal(observation_batch(config, state, {IMAGE_KEY: image})[IMAGE_KEY], image)


def test_ee6d_config_pads_proprio_to_the_20d_layout():
    config = tiny_xvla_config(3, 20, action_mode="ee6d", chunk_size=4, n_action_steps=2)
    assert config.max_state_dim == 20
    policy = XVLAPolicy(config)
    actions = policy.predict_action_chunk(observation_batch(config, torch.rand(2, 3)))
    assert actions.shape == (2, 4, 20)
    assert ((actions[..., [9, 19]] > 0) & (actions[..., [9, 19]] < 1)).all()  # sigmoid grippers
