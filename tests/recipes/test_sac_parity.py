"""`recipe=sac` is stock LeRobot SAC, bit for bit, and the default recipe."""

from __future__ import annotations

import torch
from helpers.gaussian_actor import tiny_gaussian_actor
from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy
from lerobot.rl.algorithms.sac import SACAlgorithm, SACAlgorithmConfig

from lerobot_pirl import discover
from lerobot_pirl.runtime.algorithm_adapter import algorithm_class

STATE_DIM, ACTION_DIM, BATCH, UPDATES = 4, 2, 16, 6


def _policy() -> GaussianActorPolicy:
    return tiny_gaussian_actor(STATE_DIM, ACTION_DIM)


def _batches(count: int) -> list[dict]:
    gen = torch.Generator().manual_seed(123)
    batches = []
    for _ in range(count):
        batches.append(
            {
                "state": {"observation.state": torch.rand(BATCH, STATE_DIM, generator=gen) * 2 - 1},
                "action": torch.rand(BATCH, ACTION_DIM, generator=gen) * 2 - 1,
                "reward": torch.rand(BATCH, generator=gen),
                "next_state": {"observation.state": torch.rand(BATCH, STATE_DIM, generator=gen) * 2 - 1},
                "done": (torch.rand(BATCH, generator=gen) < 0.2).float(),
            }
        )
    return batches


def _train(build_algorithm) -> tuple[dict[str, torch.Tensor], list[dict], list[dict]]:
    """Build policy + algorithm under seed 0, run UPDATES updates under seed 1; return everything."""
    torch.manual_seed(0)
    policy = _policy()
    config = SACAlgorithmConfig(policy_config=policy.config, utd_ratio=2, policy_update_freq=2)
    algorithm = build_algorithm(policy, config)
    optimizers = algorithm.make_optimizers_and_scheduler()
    torch.manual_seed(1)
    batches = iter(_batches(UPDATES * config.utd_ratio))
    logs = [algorithm.update(batches).to_log_dict() for _ in range(UPDATES)]
    tensors = {f"policy.{k}": v for k, v in policy.state_dict().items()}
    tensors.update({f"algorithm.{k}": v for k, v in algorithm.state_dict().items()})
    optimizer_states = [optimizers[name].state_dict() for name in sorted(optimizers)]
    return tensors, optimizer_states, logs


def test_sac_recipe_matches_stock_sac_bitwise() -> None:
    recipe_algorithm = algorithm_class(discover(blocked=()).resolve("sac"))
    stock_tensors, stock_optim, stock_logs = _train(lambda p, c: SACAlgorithm(policy=p, config=c))
    ours_tensors, ours_optim, ours_logs = _train(lambda p, c: recipe_algorithm(policy=p, config=c))

    assert stock_tensors.keys() == ours_tensors.keys()
    for key in stock_tensors:
        assert torch.equal(stock_tensors[key], ours_tensors[key]), key
    assert ours_logs == stock_logs
    for stock_state, ours_state in zip(stock_optim, ours_optim, strict=True):
        assert stock_state["param_groups"] == ours_state["param_groups"]
        for index, stock_param_state in stock_state["state"].items():
            for name, value in stock_param_state.items():
                assert torch.equal(value, ours_state["state"][index][name]), (index, name)
    # The run really trained: the policy moved away from its initialisation.
    torch.manual_seed(0)
    initial = _policy().state_dict()
    assert any(not torch.equal(initial[k], stock_tensors[f"policy.{k}"]) for k in initial)
