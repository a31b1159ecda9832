"""Re-measure the shipped SFT checkpoint's recorded evaluation with the current evaluator settings.

The checkpoint's weights come from ``scripts/build_sft_checkpoint.py``; this only rewrites the
``sft_config.eval_*`` fields and the ``evaluation`` block of its ``provenance.json`` (what
``build_sft_checkpoint.py`` would record for the same weights today), so a change of evaluation
settings does not need a rebuild.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import torch  # noqa: E402

from lerobot_pirl.runtime.flow_policy import load_flow_policy  # noqa: E402
from lerobot_pirl.tasks.pick_cube.evaluate import evaluate_policy, evaluation_env  # noqa: E402
from lerobot_pirl.tasks.pick_cube.sft import PROVENANCE_FILE, SHIPPED_CHECKPOINT, SFTConfig  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    config = SFTConfig()
    path = SHIPPED_CHECKPOINT / PROVENANCE_FILE
    provenance = json.loads(path.read_text())
    env_config = evaluation_env(episode_length=config.max_episode_steps, physics_dt=config.eval_physics_dt)
    policy, io = load_flow_policy(SHIPPED_CHECKPOINT, env_config)
    result = evaluate_policy(policy, io, env_config, episodes=config.eval_episodes)
    provenance["sft_config"].update(
        eval_episodes=config.eval_episodes, eval_physics_dt=config.eval_physics_dt
    )
    provenance["evaluation"] = {
        "sampler": "deterministic",
        "max_episode_steps": config.max_episode_steps,
        "physics_dt": config.eval_physics_dt,
        **result.to_dict(),
    }
    path.write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance["evaluation"]))


if __name__ == "__main__":
    main()
