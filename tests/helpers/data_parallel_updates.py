"""πRL updates on fixed rollouts, in one process or as one rank of a gloo launch.

``python -m helpers.data_parallel_updates --out=DIR --noise_method=... [--load=FILE] --first=U
--last=U [--field=value ...]`` run with torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) is one rank of a data-parallel learner: the runtime's
`ControlChannel` carries rank 0's rollouts, the recipe's `enable_data_parallel` does the rest. Each
rank writes ``rank<r>.pt`` (its metrics and state after every update). `run_updates` is the same loop
in the calling process (no torch.distributed).
"""

from __future__ import annotations

import argparse
import ast
import copy
from pathlib import Path
from typing import Any

import torch

from helpers.pi_rl_decisions import make_recipe, record_episode
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe

EPISODE_LENGTHS = (4, 5)
"""Two episodes per rollout: 9 decisions, so 4-decision minibatches leave a 1-decision one."""


def rollout_transitions(actor: PiRLRecipe, update: int, lengths: tuple[int, ...] = EPISODE_LENGTHS) -> list:
    """Rollout ``update``: sampled by the fixed ``actor``, stamped with policy version ``update``."""
    transitions = []
    for actor_id, length in enumerate(lengths):
        seed = 100 * update + actor_id
        states = torch.rand(length, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        transitions += record_episode(
            actor, states, actor_id=actor_id, episode_id=update, policy_version=update, seed=seed
        )
    return transitions


def snapshot(recipe: PiRLRecipe) -> dict[str, Any]:
    """What a checkpoint holds of the recipe: policy weights, recipe state (heads, counters,
    minibatch generator) and optimizer state."""
    assert recipe.optimizer is not None
    return copy.deepcopy(
        {
            "policy": recipe.policy.state_dict(),
            "recipe": recipe.state_dict(),
            "optimizer": recipe.optimizer.state_dict(),
        }
    )


def load(recipe: PiRLRecipe, state: dict[str, Any]) -> None:
    assert recipe.optimizer is not None
    recipe.policy.load_state_dict(state["policy"])
    recipe.load_state_dict(state["recipe"], device="cpu")
    recipe.optimizer.load_state_dict(state["optimizer"])


def build(
    noise_method: str, overrides: dict[str, Any], state: dict[str, Any] | None
) -> tuple[PiRLRecipe, PiRLRecipe]:
    """(learner recipe, fixed actor recipe), both from seed 0; the learner from ``state`` if given."""
    recipe = make_recipe(noise_method, **overrides)
    actor = make_recipe(noise_method, **overrides)
    if state is not None:
        load(recipe, state)
    return recipe, actor


def run_updates(
    recipe: PiRLRecipe,
    actor: PiRLRecipe,
    updates: range,
    send: Any = None,
    lengths: tuple[int, ...] = EPISODE_LENGTHS,
) -> list[dict[str, Any]]:
    """Feed and run ``updates``; ``send(rollout)`` first hands each rollout to the other ranks.
    Returns one {metrics, state} per update."""
    results = []
    for update in updates:
        for transition in rollout_transitions(actor, update, lengths):
            recipe.accept(transition)
        assert recipe.rollout_ready()
        rollout = recipe.take_rollout()
        if send is not None:
            send(rollout)
        metrics = recipe.update_step(iter([rollout]), update)
        results.append({"metrics": metrics, "state": snapshot(recipe)})
    return results


def _rank(args: argparse.Namespace, overrides: dict[str, Any], channel: Any) -> list[dict[str, Any]]:
    from lerobot_pirl.runtime import distributed

    state = torch.load(args.load, weights_only=False) if args.load else None
    recipe, actor = build(args.noise_method, overrides, state)
    recipe.enable_data_parallel(channel.group)
    updates = range(args.first, args.last + 1)
    if channel.launch.is_main:
        lengths = tuple(int(n) for n in args.lengths.split(","))
        send = lambda rollout: channel.send(distributed.UPDATE, rollout)  # noqa: E731
        results = run_updates(recipe, actor, updates, send, lengths)
        channel.send(distributed.STOP)
        return results
    results = []

    def update(rollout: Any) -> None:
        metrics = recipe.update_step(iter([rollout]), 0)
        results.append({"metrics": metrics, "state": snapshot(recipe)})

    distributed.follow(channel, update)
    return results


def main() -> None:
    from lerobot_pirl.runtime import distributed

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--noise_method", required=True)
    parser.add_argument("--load", type=Path, default=None)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--last", type=int, default=1)
    parser.add_argument("--lengths", default="4,5", help="episode lengths of each rollout")
    args, rest = parser.parse_known_args()
    overrides = {}
    for item in rest:
        key, value = item.removeprefix("--").split("=", 1)
        overrides[key] = ast.literal_eval(value)
    torch.set_num_threads(1)
    launch = distributed.detect()
    assert launch is not None, "run me with torchrun's variables"
    channel = distributed.init_process_group(launch, "cpu", timeout_s=120)
    try:
        results = _rank(args, overrides, channel)  # its recipe (and DDP) are gone when it returns
        torch.save(results, args.out / f"rank{launch.rank}.pt")
    finally:
        channel = None
        distributed.close_process_group()


if __name__ == "__main__":
    main()
