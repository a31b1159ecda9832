"""Rebuild an MT10 SFT checkpoint shipped in the package: ``lerobot_pirl/tasks/metaworld/assets/mt10_sft/``
(tiny XVLA) or ``.../mt10_smolvla_sft/`` (tiny SmolVLA, ``--policy smolvla``).

Collects a few successful noisy scripted-expert episodes per MetaWorld MT10 task (LeRobot's
``TASK_POLICY_MAPPING`` experts, Gaussian action noise), builds a word-level tokenizer over the ten
instructions, SFTs a tiny XVLA (or SmolVLA, its VLM frozen) on all ten tasks together with the
policy's own stock flow-matching loss,
evaluates it (deterministic sampler, 50 held-out reset seeds per task, with each task's own
instruction and with the next task's) and writes the checkpoint with ``provenance.json``. Seeded:
re-running rebuilds it (about 10 minutes on 2 CPU cores). Nothing downloads.

    .venv/bin/python scripts/build_metaworld_sft.py [--policy xvla|smolvla] [--output DIR] [--seed N]
        [--demonstrations-per-task N]
"""

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from lerobot_pirl.tasks.metaworld.sft import SHIPPED_CHECKPOINTS, MT10SFTConfig, build_checkpoint  # noqa: E402


def main() -> None:
    defaults = MT10SFTConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy", choices=list(SHIPPED_CHECKPOINTS), default=defaults.policy_type)
    parser.add_argument("--output", type=Path, help="default: the policy's shipped checkpoint folder")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--demonstrations-per-task", type=int, default=defaults.demonstrations_per_task)
    parser.add_argument("--train-steps", type=int, help="default: the policy type's (sft.TRAIN_STEPS)")
    parser.add_argument("--eval-episodes-per-task", type=int, default=defaults.eval_episodes_per_task)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # MetaWorld's scripted experts warn about their own gains on every action.
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
    config = MT10SFTConfig(
        policy_type=args.policy,
        seed=args.seed,
        demonstrations_per_task=args.demonstrations_per_task,
        train_steps=args.train_steps,
        eval_episodes_per_task=args.eval_episodes_per_task,
    )
    output = args.output or SHIPPED_CHECKPOINTS[args.policy]
    provenance = build_checkpoint(config, output)
    own, swapped = provenance["evaluation"]["mean"], provenance["swapped_instruction_evaluation"]["mean"]
    print(f"wrote {output} (SFT MT10 mean success {own:.3f}; swapped instructions {swapped:.3f})")


if __name__ == "__main__":
    main()
