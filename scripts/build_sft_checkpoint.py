"""Rebuild a PandaPickCube SFT checkpoint shipped in the package:
``lerobot_pirl/tasks/pick_cube/assets/pick_cube_sft/`` (tiny XVLA) or ``.../pick_cube_smolvla_sft/``
(tiny SmolVLA, ``--policy smolvla``).

Collects noisy scripted-expert demonstrations on gym-hil PandaPickCube (random block), SFTs the
tiny policy with its own stock flow-matching loss, evaluates it over 100 deterministic episodes and
writes the checkpoint with ``provenance.json``. Seeded: re-running rebuilds it (a few minutes on
2 CPU cores).

    .venv/bin/python scripts/build_sft_checkpoint.py [--policy xvla|smolvla] [--output DIR] [--seed N]
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINTS, SFTConfig, build_checkpoint  # noqa: E402


def main() -> None:
    defaults = SFTConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy", choices=list(SHIPPED_CHECKPOINTS), default=defaults.policy_type)
    parser.add_argument("--output", type=Path, help="default: the policy's shipped checkpoint folder")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--demonstrations", type=int, default=defaults.demonstrations)
    parser.add_argument("--train-steps", type=int, help="default: the policy type's (sft.TRAIN_STEPS)")
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes)
    parser.add_argument(
        "--state-normalization",
        choices=("MEAN_STD", "MIN_MAX", "IDENTITY"),
        default=defaults.state_normalization,
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = SFTConfig(
        policy_type=args.policy,
        seed=args.seed,
        demonstrations=args.demonstrations,
        train_steps=args.train_steps,
        eval_episodes=args.eval_episodes,
        state_normalization=args.state_normalization,
    )
    output = args.output or SHIPPED_CHECKPOINTS[args.policy]
    provenance = build_checkpoint(config, output)
    print(f"wrote {output} (SFT success {provenance['evaluation']['success_rate']:.2f})")


if __name__ == "__main__":
    main()
