"""Learning sanity for πRL on XVLA: PPO must raise the reward of a one-step contextual bandit.

Observation: a state s in [-1, 1]² (blank image, fixed instruction). The first executed action
a₀ (H' = 1) is rewarded with -‖a₀ - s/2‖. A randomly initialised tiny XVLA starts far from that
map; a few dozen PPO iterations with ``forward(model="pi_rl")`` must improve the mean reward of
fresh observations well beyond noise, for both Flow-SDE and Flow-Noise. Flipping the sign of the
log-prob ratio (old - new) makes these tests fail: the reward then drops (checked by hand).
The last test runs the same bandit through the recipe's own ``update_step`` (GAE, minibatches,
optimizer groups) and checks, by flipping the reward's sign, that it climbs the reward it is given.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers.xvla_batches import observation_batch, training_batch

from lerobot_pirl.flow_rl import normalize_advantages
from lerobot_pirl.policies import PiRLHeads, PiRLSampling, PiRLXVLAPolicy
from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config

ITERATIONS = 25
BATCH = 64
EPOCHS = 4
EVAL_BATCH = 512


def reward(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return -(actions[:, 0] - 0.5 * states).norm(dim=-1)


def evaluate(policy: PiRLXVLAPolicy, mode: str, generator: torch.Generator) -> tuple[float, float]:
    """Mean reward and its standard error over fresh observations."""
    states = torch.rand(EVAL_BATCH, 2, generator=generator) * 2 - 1
    actions, _ = policy.sample_actions(observation_batch(policy.config, states), mode, generator)
    rewards = reward(states, actions)
    return rewards.mean().item(), rewards.std().item() / math.sqrt(EVAL_BATCH)


@pytest.mark.parametrize("noise_method", ["flow_sde", "flow_noise"])
def test_ppo_improves_a_contextual_bandit(noise_method):
    torch.manual_seed(0)
    config = tiny_xvla_config(
        2, 2, chunk_size=4, n_action_steps=1, num_denoising_steps=4, hidden_size=32, depth=1
    )
    policy = PiRLXVLAPolicy(config)
    heads = PiRLHeads.for_policy(policy, noise_head=noise_method == "flow_noise", value_hidden_dims=(32, 32))
    policy.attach_pi_rl(heads, PiRLSampling(noise_method=noise_method, executed_steps=1))
    params = [p for p in policy.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-4)
    generator = torch.Generator().manual_seed(1)
    eval_generator = lambda: torch.Generator().manual_seed(2)  # noqa: E731  same eval set before/after

    before = {mode: evaluate(policy, mode, eval_generator()) for mode in (noise_method, "deterministic")}
    for _ in range(ITERATIONS):
        states = torch.rand(BATCH, 2, generator=generator) * 2 - 1
        observation = observation_batch(config, states)
        actions, record = policy.sample_actions(observation, generator=generator)
        rewards = reward(states, actions)
        values = policy.pi_rl_value(observation)
        batch = training_batch(policy, observation, record, normalize_advantages(rewards - values), rewards)
        policy.train()
        for _ in range(EPOCHS):
            loss, _ = policy.forward(batch, model="pi_rl")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = {mode: evaluate(policy, mode, eval_generator()) for mode in (noise_method, "deterministic")}
    # Both the training sampler and the deterministic one (used for evaluation) must improve by
    # more than 3 standard errors, and the mean distance to the target must at least halve.
    for mode in (noise_method, "deterministic"):
        (mean_before, se_before), (mean_after, se_after) = before[mode], after[mode]
        assert mean_after - mean_before > 3 * math.hypot(se_before, se_after), (mode, before, after)
        assert mean_after > 0.5 * mean_before, (mode, before, after)


def _recipe_bandit(
    noise_method: str, reward_sign: float, updates: int, ratio_granularity: str = "decision"
) -> tuple[float, float]:
    """The same bandit through ``PiRLRecipe.update_step`` (GAE over one-decision episodes, the
    recipe's minibatches and optimizer): mean deterministic reward before and after."""
    from helpers.pi_rl_decisions import make_recipe

    from lerobot_pirl.recipes.pi_rl.transitions import encode_decision

    recipe = make_recipe(
        noise_method,
        rollout_decisions=BATCH,
        minibatch_size=32,
        update_epochs=2,
        actor_lr=3e-4,
        value_lr=1e-3,
        ratio_granularity=ratio_granularity,
    )
    policy, executed = recipe.policy, recipe.policy.pi_rl_sampling.executed_steps
    generator = torch.Generator().manual_seed(1)
    states3 = lambda n, g: torch.rand(n, 3, generator=g) * 2 - 1  # noqa: E731  (make_recipe: 3-D state)

    def deterministic_reward() -> float:
        states = states3(EVAL_BATCH, torch.Generator().manual_seed(2))
        actions, _ = policy.sample_actions(observation_batch(policy.config, states), "deterministic")
        return reward(states[:, :2], actions).mean().item()

    before = deterministic_reward()
    for update in range(updates):
        states = states3(BATCH, generator)
        observation = observation_batch(policy.config, states)
        actions, record = policy.sample_actions(observation, generator=generator)
        rewards = reward(states[:, :2], actions)
        for i in range(BATCH):
            row = {key: value[i] for key, value in observation.items()}
            step_rewards = torch.zeros(executed)
            step_rewards[0] = reward_sign * rewards[i]
            recipe.accept(
                encode_decision(
                    observation=row,
                    next_observation=row,
                    executed_actions=actions[i, :executed],
                    step_rewards=step_rewards,
                    executed_steps=executed,
                    terminated=True,
                    truncated=False,
                    chain=record.chain[i],
                    step_index=int(record.step_index[i]),
                    old_token_log_prob=record.token_log_prob[i],
                    policy_version=recipe.assembler.policy_version,
                    actor_id=0,
                    episode_id=update * BATCH + i,
                    decision_index=0,
                )
            )
        recipe.update_step(iter([recipe.take_rollout()]), step=update)
    return before, deterministic_reward()


@pytest.mark.parametrize(
    ("noise_method", "ratio_granularity"),
    [("flow_sde", "decision"), ("flow_noise", "decision"), ("flow_sde", "token")],
)
def test_recipe_update_step_learns_the_bandit_and_a_flipped_reward_unlearns_it(
    noise_method, ratio_granularity
):
    before, after = _recipe_bandit(noise_method, 1.0, 30, ratio_granularity)
    assert after > 0.5 * before, (before, after)  # the distance to the target at least halves
    before_flipped, after_flipped = _recipe_bandit(noise_method, -1.0, 6, ratio_granularity)
    assert before_flipped == before and after_flipped < before, (before, after_flipped)
