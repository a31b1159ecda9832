"""Rebuild the SFT checkpoint shipped in the package: ``lerobot_pirl/tasks/pick_cube/assets/pick_cube_sft/``.

Collects noisy scripted-expert demonstrations on gym-hil PandaPickCube (random block), SFTs a tiny
XVLA with the stock XVLA flow-matching loss, evaluates it over 100 deterministic episodes and
writes the checkpoint with ``provenance.json``. Seeded: re-running rebuilds it (about 3 minutes on
2 CPU cores).

    .venv/bin/python scripts/build_sft_checkpoint.py [--output DIR] [--seed N] [--demonstrations N]
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT, SFTConfig, build_checkpoint  # noqa: E402


def main() -> None:
    defaults = SFTConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--demonstrations", type=int, default=defaults.demonstrations)
    parser.add_argument("--train-steps", type=int, default=defaults.train_steps)
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes)
    parser.add_argument(
        "--state-normalization",
        choices=("MEAN_STD", "MIN_MAX", "IDENTITY"),
        default=defaults.state_normalization,
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = SFTConfig(
        seed=args.seed,
        demonstrations=args.demonstrations,
        train_steps=args.train_steps,
        eval_episodes=args.eval_episodes,
        state_normalization=args.state_normalization,
    )
    provenance = build_checkpoint(config, args.output)
    print(f"wrote {args.output} (SFT success {provenance['evaluation']['success_rate']:.2f})")


if __name__ == "__main__":
    main()
