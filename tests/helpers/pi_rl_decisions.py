"""Recorded πRL decisions from a tiny XVLA, encoded as the transitions actors send."""

from __future__ import annotations

import torch
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy
from lerobot.utils.transition import Transition

from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config
from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe
from lerobot_pirl.recipes.pi_rl.transitions import encode_decision


def record_episode(
    recipe: PiRLRecipe,
    states: torch.Tensor,
    *,
    actor_id: int,
    episode_id: int,
    policy_version: int | None = None,
    terminated: bool = True,
    seed: int = 0,
) -> list[Transition]:
    """One episode whose decision i starts from ``states[i]``; reward = −‖first action‖ per step."""
    from helpers.xvla_batches import observation_batch

    policy = recipe.policy
    device = next(policy.parameters()).device
    obs = observation_batch(policy.config, states)  # what the actor sends: CPU tensors
    actions, record = policy.sample_actions(
        {k: v.to(device) for k, v in obs.items()}, generator=torch.Generator().manual_seed(seed)
    )
    executed = policy.pi_rl_sampling.executed_steps
    version = recipe.assembler.policy_version if policy_version is None else policy_version
    episode = []
    for i in range(states.shape[0]):
        step_rewards = -actions[i, :executed].float().norm(dim=-1)
        last = i == states.shape[0] - 1
        episode.append(
            encode_decision(
                observation={k: v[i] for k, v in obs.items()},
                next_observation={k: v[min(i + 1, states.shape[0] - 1)] for k, v in obs.items()},
                executed_actions=actions[i, :executed],
                step_rewards=step_rewards,
                executed_steps=executed,
                terminated=last and terminated,
                truncated=last and not terminated,
                chain=record.chain[i],
                step_index=int(record.step_index[i]),
                old_token_log_prob=record.token_log_prob[i],
                policy_version=version,
                actor_id=actor_id,
                episode_id=episode_id,
                decision_index=i,
            )
        )
    return episode


STATE_DIM, ACTION_DIM = 3, 2


def make_recipe(
    noise_method: str = "flow_noise", seed: int = 0, device: str = "cpu", dtype: str = "float32", **overrides
) -> PiRLRecipe:
    torch.manual_seed(seed)
    config = tiny_xvla_config(
        STATE_DIM,
        ACTION_DIM,
        chunk_size=4,
        n_action_steps=2,
        num_denoising_steps=3,
        hidden_size=32,
        depth=1,
        device=device,
        dtype=dtype,
    )
    policy = XVLAPolicy(config).to(device)  # what LeRobot's make_policy builds: a stock XVLA
    fields = dict(
        noise_method=noise_method,
        rollout_decisions=8,
        minibatch_size=4,
        update_epochs=2,
        actor_lr=1e-3,
        value_hidden_dims=[32, 32],
        noise_hidden_dim=16,
    )
    fields.update(overrides)
    recipe = PiRLRecipe(policy, PiRLConfig(policy_config=policy.config, **fields))
    recipe.build_optimizers()
    return recipe
