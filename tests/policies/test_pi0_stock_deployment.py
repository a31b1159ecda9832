"""A π0 / π0.5 checkpoint saved the way the learner saves one (weights, LeRobot's pipeline files,
the tokenizer bundled) is what stock LeRobot deploys: the stock class loads it strictly, stock
``make_pre_post_processors(pretrained_path=...)`` loads its processors with no override and
nothing downloaded, and stock ``predict_action_chunk`` from zero noise gives the actor's
deterministic actions (the actor's path: ``load_flow_policy``)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.tiny_pi0 import (
    IMAGE_KEY,
    IMAGE_SIZE,
    INSTRUCTION,
    PALIGEMMA_TOKENIZER,
    build_paligemma_stand_in,
    build_tiny_pi,
    paligemma_stand_in,
    tiny_pi,
    tiny_pi_config,
)
from lerobot.policies import make_pre_post_processors
from lerobot.policies.pi0.modeling_pi0 import PI0Policy
from lerobot.policies.pi05.modeling_pi05 import PI05Policy
from lerobot.utils.constants import ACTION, OBS_STATE

from lerobot_pirl.policies.pi0_pi_rl import PiRLPI0Policy, PiRLPI05Policy
from lerobot_pirl.runtime.flow_policy import load_flow_policy
from lerobot_pirl.runtime.processors import PolicyIO

STATE_DIM, ACTION_DIM = 3, 2
KINDS = {"pi0": (PiRLPI0Policy, PI0Policy), "pi05": (PiRLPI05Policy, PI05Policy)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_saved_checkpoint_deploys_with_stock_lerobot_as_the_actor_samples_it(kind, tmp_path) -> None:
    pi_rl_class, stock_class = KINDS[kind]
    config = tiny_pi_config(kind, STATE_DIM, ACTION_DIM)
    policy = build_tiny_pi(pi_rl_class, config, seed=3)
    with torch.no_grad():  # away from the initialisation, as a fine-tuned expert is
        generator = torch.Generator().manual_seed(4)
        for parameter in policy.model.action_out_proj.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    stats = {
        OBS_STATE: {"mean": torch.full((STATE_DIM,), 0.1), "std": torch.full((STATE_DIM,), 2.0)},
        ACTION: {"mean": torch.full((ACTION_DIM,), -0.2), "std": torch.full((ACTION_DIM,), 0.5)},
    }
    for stat in stats.values():  # π0.5 normalises with quantiles, π0 with mean/std
        stat.update(q01=stat["mean"] - stat["std"], q99=stat["mean"] + stat["std"])
        stat.update(min=stat["q01"], max=stat["q99"])
    checkpoint = tmp_path / "pretrained_model"
    policy.save_pretrained(checkpoint)
    with paligemma_stand_in(build_paligemma_stand_in(tmp_path / "tokenizer_source")):
        PolicyIO.for_policy(policy.config, dataset_stats=stats).save_pretrained(checkpoint)

    # From here on the gated tokenizer name would fail (offline): nothing may ask for it.
    with tiny_pi():  # the tiny architecture; loading builds it before reading the weights
        stock = stock_class.from_pretrained(str(checkpoint), strict=True).eval()
        actor_policy, io = load_flow_policy(checkpoint)
    preprocessor, postprocessor = make_pre_post_processors(stock.config, pretrained_path=str(checkpoint))
    state = torch.tensor([[0.3, -0.7, 1.1]])
    image = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(5))
    raw = {OBS_STATE: state, IMAGE_KEY: image, "task": [INSTRUCTION]}
    theirs = {k: v for k, v in preprocessor(dict(raw)).items() if isinstance(v, torch.Tensor)}
    ours = {k: v for k, v in io.preprocessor(dict(raw)).items() if isinstance(v, torch.Tensor)}
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
    steps = json.loads((checkpoint / "policy_preprocessor.json").read_text())["steps"]
    [tokenizer_step] = [s for s in steps if s["registry_name"] == "tokenizer_processor"]
    assert tokenizer_step["config"]["tokenizer_name"] == str((checkpoint / "tokenizer").resolve())
    assert tokenizer_step["config"]["tokenizer_name"] != PALIGEMMA_TOKENIZER

    zeros = torch.zeros(1, config.chunk_size, config.max_action_dim)
    with torch.no_grad():
        stock_actions = postprocessor(stock.predict_action_chunk(dict(theirs), noise=zeros))
        chunk, _ = actor_policy.sample_actions(ours, mode="deterministic", initial_noise=zeros)
        actor_actions = io.postprocessor(actor_policy.pi_rl_adapter.env_actions(chunk))
    assert stock_actions.shape == (1, config.chunk_size, ACTION_DIM)
    torch.testing.assert_close(actor_actions, stock_actions, rtol=0, atol=1e-5)
    # The unnormaliser ran: the actions are not the model's normalised output.
    assert not torch.allclose(stock_actions, stock.predict_action_chunk(dict(theirs), noise=zeros))
