"""Pins every LeRobot XVLA internal `lerobot_pirl.policies.xvla_pi_rl` (the XVLA flow adapter) uses.

The adapter is the only πRL code that knows XVLA; each private or undocumented name it reaches is
asserted here on a stock ``XVLAPolicy``, so a LeRobot upgrade that moves one fails in this file,
with the name in the test, before anything else breaks.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers.xvla_batches import ACTION_DIM, CHUNK, STATE_DIM, observations
from lerobot.policies.xvla.modeling_xvla import XVLAModel, XVLAPolicy

from lerobot_pirl.policies import PiRLXVLAPolicy, XVLAFlowAdapter, adopt_pi_rl
from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config
from lerobot_pirl.recipes.registry import installed

HIDDEN = 32


def stock_policy(
    dtype: str = "float32", action_mode: str = "auto", action_dim: int = ACTION_DIM
) -> XVLAPolicy:
    torch.manual_seed(0)
    config = tiny_xvla_config(
        STATE_DIM,
        action_dim,
        chunk_size=CHUNK,
        n_action_steps=2,
        num_denoising_steps=3,
        hidden_size=HIDDEN,
        depth=1,
        dtype=dtype,
        action_mode=action_mode,
    )
    return XVLAPolicy(config).eval()


def test_build_model_inputs_gives_the_keys_the_adapter_reads() -> None:
    policy = stock_policy()
    inputs = policy._build_model_inputs(observations(policy, 2))
    assert {"input_ids", "image_input", "image_mask", "proprio", "domain_id"} <= set(inputs)
    assert inputs["proprio"].shape == (2, policy.model.dim_proprio)
    assert inputs["domain_id"].shape == (2,)


@pytest.mark.parametrize("dtype,expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_get_target_dtype_is_the_weights_dtype(dtype, expected) -> None:
    policy = stock_policy(dtype)
    assert XVLAModel._get_target_dtype is not None
    assert policy.model._get_target_dtype() == expected
    assert policy.model.transformer.action_decoder.fc.weight.dtype == expected


def test_forward_vlm_returns_vlm_features_of_the_florence_projection_width() -> None:
    policy = stock_policy()
    inputs = policy._build_model_inputs(observations(policy, 2))
    enc = policy.model.forward_vlm(inputs["input_ids"], inputs["image_input"], inputs["image_mask"])
    projection_dim = policy.config.get_florence_config().vision_config.projection_dim
    features = enc["vlm_features"]
    assert features.ndim == 3 and features.shape[0] == 2 and features.shape[-1] == projection_dim


def test_transformer_keywords_and_its_norm_output_per_action_token() -> None:
    policy = stock_policy()
    model = policy.model
    parameters = set(inspect.signature(model.transformer.forward).parameters)
    assert {"domain_id", "action_with_noise", "proprio", "t"} <= parameters
    inputs = policy._build_model_inputs(observations(policy, 2))
    enc = model.forward_vlm(inputs["input_ids"], inputs["image_input"], inputs["image_mask"])
    x_t = torch.randn(2, CHUNK, model.dim_action)
    proprio, x_model = model.action_space.preprocess(inputs["proprio"], x_t)
    captured = []
    handle = model.transformer.norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        x0_hat = model.transformer(
            domain_id=inputs["domain_id"], action_with_noise=x_model, proprio=proprio, t=torch.ones(2), **enc
        )
    finally:
        handle.remove()
    assert x0_hat.shape == (2, CHUNK, model.dim_action)
    [tokens] = captured  # one norm call per pass, one row per action token
    assert tokens.shape == (2, CHUNK, HIDDEN)


@pytest.mark.parametrize("action_mode,action_dim", [("auto", ACTION_DIM), ("ee6d", 20)])
def test_action_space_postprocess_keeps_a_prefix_of_the_model_dims(action_mode, action_dim) -> None:
    policy = stock_policy(action_mode=action_mode, action_dim=action_dim)
    model = policy.model
    x = torch.randn(2, CHUNK, model.dim_action)
    out = model.action_space.postprocess(x)
    adapter = XVLAFlowAdapter(
        adopt_pi_rl(stock_policy(action_mode=action_mode, action_dim=action_dim), installed().adapters)
    )
    assert out.shape[-1] == adapter.real_action_dim == action_dim
    kept = [d for d in range(out.shape[-1]) if action_mode != "ee6d" or d not in (9, 19)]
    assert torch.equal(out[..., kept], x[..., kept])  # ee6d squashes only its two gripper channels


def test_adapter_reads_the_sizes_from_the_stock_attributes() -> None:
    policy = stock_policy()
    adapter = XVLAFlowAdapter(policy)
    assert (adapter.model_action_dim, adapter.state_dim) == (
        policy.model.dim_action,
        policy.model.dim_proprio,
    )
    assert adapter.feature_dim == policy.config.get_florence_config().vision_config.projection_dim
    assert adapter.token_dim == policy.config.hidden_size == HIDDEN
    assert (adapter.default_num_steps, adapter.default_executed_steps) == (3, 2)
    assert adapter.vlm_parameters() == list(policy.model.vlm.parameters())


def test_class_swap_onto_a_stock_policy_keeps_weights_state_dict_and_config() -> None:
    policy = stock_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    config = policy.config
    adopted = adopt_pi_rl(policy, installed().adapters)
    assert adopted is policy and type(policy) is PiRLXVLAPolicy and policy.config is config
    after = policy.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert PiRLXVLAPolicy.name == XVLAPolicy.name == "xvla"
    with pytest.raises(TypeError, match="needs a XVLAPolicy"):
        adopt_pi_rl(_NotXVLA(), installed().adapters)


class _NotXVLA(torch.nn.Module):
    class config:  # noqa: N801 - a stand-in for a policy config with type "xvla"
        type = "xvla"


def test_transformer_blocks_map_one_hidden_tensor_to_one_of_the_same_shape() -> None:
    """Activation checkpointing wraps each of ``transformer.blocks`` as ``block(x) -> x'``."""
    model = stock_policy().model
    blocks = list(model.transformer.blocks)
    assert len(blocks) == model.transformer.blocks.__len__() >= 1
    for block in blocks:
        assert list(inspect.signature(type(block).forward).parameters) == ["self", "x"]
        x = torch.randn(2, 5, HIDDEN)
        assert block(x).shape == x.shape
