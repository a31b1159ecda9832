"""``lerobot-pirl random-checkpoint``: a tiny XVLA with random weights, shaped for an env's features.

A real run starts from a checkpoint that LeRobot's ``lerobot-train`` made on the user's own
demonstrations (its ``pretrained_model`` folder, with the processor files LeRobot saves beside the
weights). Before spending that, a user wants to know that their env, LeRobot's processors, the
learner and the actors fit together. This builds the smallest checkpoint that exercises that path
in minutes on a CPU: the stock ``XVLAPolicy`` at test size (`tiny_xvla_config`), its input features
read from the env config exactly as LeRobot's ``make_policy(env_cfg=...)`` reads them
(``env_to_policy_features``), the locally built word-level tokenizer bundled, and LeRobot's
processor files written as every checkpoint of ours has them. It learns, but from nothing: it is a
plumbing check, not a starting point.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lerobot.configs import FeatureType
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_STATE

from ..errors import LerobotPirlError
from ..policies.tiny_xvla import tiny_xvla_config
from .processors import PolicyIO

DEFAULT_IMAGE_SIZE = 32
"""Every camera is resized (with padding, XVLA's own ``resize_imgs_with_padding``) to this square."""

MODEL_CARD = """# A random tiny XVLA (plumbing check)

Built by `lerobot-pirl random-checkpoint` for env type `{env_type}`, seed {seed}: random weights,
inputs {inputs}, action {action_dim}-D. Use it to check that an env, LeRobot's processors and the
pi-rl learner and actors fit together; start real runs from a checkpoint trained by `lerobot-train`
on your own demonstrations.
"""


class RandomCheckpointError(LerobotPirlError):
    """The env's features cannot feed an XVLA, or the output folder is taken; the message says which."""


@dataclass
class RandomCheckpointConfig:
    env: EnvConfig
    output_dir: Path
    seed: int = 0
    image_size: int = DEFAULT_IMAGE_SIZE


def random_checkpoint(
    env_cfg: EnvConfig, output_dir: Path, *, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE
) -> Path:
    """Write a random tiny XVLA ``pretrained_model`` folder for ``env_cfg``'s features to ``output_dir``."""
    from lerobot.envs.utils import env_to_policy_features
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    features = env_to_policy_features(env_cfg)
    images = {key: f for key, f in features.items() if f.type is FeatureType.VISUAL}
    problems = []
    if not images:
        problems.append(
            "XVLA reads at least one camera and the env has no image feature (features: "
            f"{', '.join(features) or 'none'}); give the env a camera, or an all-zero image under "
            "'pixels' as pirl_pick_cube does with image_obs=false"
        )
    if OBS_STATE not in features:
        problems.append(f"the env has no '{OBS_STATE}' feature (its 'agent_pos'); XVLA here reads the state")
    if ACTION not in features or features[ACTION].type is not FeatureType.ACTION:
        problems.append(f"the env has no '{ACTION}' feature")
    if output_dir.exists() and any(output_dir.iterdir()):
        problems.append(f"output_dir={output_dir} exists and is not empty (choose a new one)")
    if problems:
        raise RandomCheckpointError(
            f"cannot build a checkpoint for env.type={env_cfg.type}: " + "; ".join(problems)
        )

    torch.manual_seed(seed)
    config = tiny_xvla_config(
        features[OBS_STATE].shape[0],
        features[ACTION].shape[0],
        image_size=image_size,
        image_views=len(images),
        resize_imgs_with_padding=(image_size, image_size),
        input_features={OBS_STATE: features[OBS_STATE], **images},
        output_features={ACTION: features[ACTION]},
        push_to_hub=False,  # nothing to publish; LeRobot's validate wants a repo_id otherwise
    )
    policy = XVLAPolicy(config)
    output_dir.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(output_dir)
    PolicyIO.for_policy(config).save_pretrained(output_dir)
    (output_dir / "README.md").write_text(
        MODEL_CARD.format(
            env_type=env_cfg.type,
            seed=seed,
            inputs=", ".join(f"{key} {tuple(f.shape)}" for key, f in config.input_features.items()),
            action_dim=features[ACTION].shape[0],
        )
    )
    return output_dir


def main(argv: list[str]) -> Path:
    """``--env.type=NAME [--env.FIELD=...] --output_dir=DIR``, or ``--config_path=train_config.json``
    to take the ``env`` block of a learner config (other keys are ignored)."""
    import draccus
    from lerobot.configs import parser

    from .envs import register_env_plugins

    register_env_plugins()
    config_path = parser.parse_arg("config_path", argv)
    args = [arg for arg in argv if not arg.startswith("--config_path")]
    env_only: Any = None
    if config_path is not None:
        data = json.loads(Path(config_path).read_text())
        if "env" not in data:
            raise RandomCheckpointError(f"--config_path={config_path} has no 'env' block")
        env_only = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump({"env": data["env"]}, env_only)
        env_only.close()
    cfg = draccus.parse(RandomCheckpointConfig, config_path=env_only.name if env_only else None, args=args)
    return random_checkpoint(cfg.env, Path(cfg.output_dir), seed=cfg.seed, image_size=cfg.image_size)
