"""Success rate of an XVLA policy on PandaPickCube with the deterministic (ODE) sampler.

Shared by the SFT checkpoint builder, ``lerobot-pirl demo`` and ``benchmarks/learning.py``, so
every success rate in this project is measured the same way: ``sample_actions(mode="deterministic")``
(the Euler/x̂₁ chain πRL trains, without its noise), H' executed steps per decision, and one fixed
evaluation set — episode i always has the block where reset seed ``EVAL_SEED_OFFSET + i`` puts it,
apart from any training episode — so every method, seed and checkpoint faces the same episodes.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from lerobot.utils.constants import OBS_LANGUAGE_TOKENS

from ..envs.pick_cube import PickCubeEnvConfig, make_pick_cube_env
from ..policies.tiny_xvla import instruction_tokens

EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episode i is reset with seed ``EVAL_SEED_OFFSET + i`` (away from training seeds)."""


@dataclass
class EvalResult:
    episodes: int
    successes: int
    success_rate: float
    mean_return: float
    mean_episode_steps: float
    stderr: float
    """Binomial standard error of ``success_rate``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def evaluate_policy(
    policy: Any,
    *,
    episodes: int = 100,
    max_episode_steps: int = 50,
    image_obs: bool = False,
) -> EvalResult:
    """Run the first ``episodes`` episodes of the evaluation set with the deterministic sampler.

    ``policy`` is a πRL-attached XVLA (``PiRLMixin``). The sampler's start noise comes from a fixed
    generator, so the same policy always gets the same result.
    """
    tokens = instruction_tokens(policy.config)
    executed_steps = policy.pi_rl_sampling.executed_steps
    image_size = int(next(iter(policy.config.image_features.values())).shape[-1])
    generator = torch.Generator().manual_seed(EVAL_SEED_OFFSET)
    config = PickCubeEnvConfig(
        image_obs=image_obs, image_size=image_size, max_episode_steps=max_episode_steps, seed=EVAL_SEED_OFFSET
    )
    successes, total_return, total_steps = 0, 0.0, 0
    with make_pick_cube_env(config) as env:
        for episode in range(episodes):
            observation = env.reset(seed=EVAL_SEED_OFFSET + episode)
            done, success = False, False
            while not done:
                batch = {k: v.unsqueeze(0) for k, v in observation.items()}
                batch[OBS_LANGUAGE_TOKENS] = tokens.unsqueeze(0)
                actions, _ = policy.sample_actions(batch, mode="deterministic", generator=generator)
                for h in range(executed_steps):
                    observation, reward, terminated, truncated, info = env.step(actions[0, h])
                    total_return += reward
                    total_steps += 1
                    success = success or info["success"]
                    done = terminated or truncated
                    if done:
                        break
            successes += int(success)
    rate = successes / episodes
    return EvalResult(
        episodes=episodes,
        successes=successes,
        success_rate=rate,
        mean_return=total_return / episodes,
        mean_episode_steps=total_steps / episodes,
        stderr=(rate * (1 - rate) / episodes) ** 0.5,
    )


def load_for_evaluation(pretrained_dir: Path | str) -> Any:
    """A stock XVLA checkpoint as a πRL-sampling policy (fresh heads: only the ODE sampler is used)."""
    from ..policies import PiRLHeads, PiRLSampling, PiRLXVLAPolicy

    policy = PiRLXVLAPolicy.from_pretrained(str(pretrained_dir))
    policy.attach_pi_rl(PiRLHeads.for_policy(policy, noise_head=False), PiRLSampling(noise_method="flow_sde"))
    return policy.eval()


def main(argv: list[str] | None = None) -> None:
    """``python -m lerobot_pirl.demo.evaluate --checkpoint DIR [...] --output FILE.json``."""
    parser = argparse.ArgumentParser(description="Deterministic success rate of an XVLA checkpoint")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a pretrained_model folder")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--max-episode-steps", type=int, default=50)
    parser.add_argument("--output", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("LEROBOT_PIRL_TORCH_THREADS", "1")))
    policy = load_for_evaluation(args.checkpoint)
    result = evaluate_policy(
        policy, episodes=args.episodes, max_episode_steps=args.max_episode_steps
    ).to_dict()
    text = json.dumps(result)
    if args.output is not None:
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
