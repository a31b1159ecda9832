"""The pi-rl algorithm block flattens the sampling and loss settings without restating them."""

from __future__ import annotations

import dataclasses

from lerobot_pirl.flow_rl.settings import PiRLLossConfig, PiRLSampling
from lerobot_pirl.recipes.pi_rl.config import PiRLConfig


def test_every_sampling_and_loss_setting_is_a_config_field_with_the_same_default() -> None:
    config_fields = {f.name: f for f in dataclasses.fields(PiRLConfig)}
    for settings in (PiRLSampling, PiRLLossConfig):
        for setting in dataclasses.fields(settings):
            assert setting.name in config_fields, f"PiRLConfig lacks {settings.__name__}.{setting.name}"
            assert config_fields[setting.name].default == setting.default, setting.name
    assert PiRLConfig().sampling() == PiRLSampling() and PiRLConfig().loss() == PiRLLossConfig()
    tuned = PiRLConfig(noise_level=0.3, clip_eps=0.1, num_steps=6)
    assert tuned.sampling() == PiRLSampling(noise_level=0.3, num_steps=6)
    assert tuned.loss() == PiRLLossConfig(clip_eps=0.1)
