"""LeRobot's processor pipelines between an env and a policy, chained as ``lerobot-eval`` chains them.

raw env observation → ``preprocess_observation`` → ``task`` → the env's preprocessor → the policy's
preprocessor (for XVLA: rename, batch dim, tokenizer of the task string, image steps, domain id,
device, normaliser with dataset stats) → the policy; its actions → the policy's postprocessor
(unnormaliser, cpu) → the env's postprocessor → ``env.step``.

The policy's pipelines come from its checkpoint (``policy_preprocessor.json`` & co. next to the
weights, LeRobot's ``make_pre_post_processors(cfg, pretrained_path=...)``), or, for a policy built
from a config alone, from its config (``make_pre_post_processors(cfg, dataset_stats=...)``).

Tokenizers: LeRobot saves a tokenizer step by its ``tokenizer_name`` only. `bundle_tokenizer`
stores the tokenizer itself in the checkpoint (``<pretrained_model>/tokenizer/``) and points the
saved step at it, so checkpoints load offline anywhere; `load_policy_processors` (and so
`PolicyIO.for_policy`) always loads the bundled copy when there is one. A SmolVLA checkpoint's
``config.json`` names its VLM folder (``vlm_model_name``) the same way: a checkpoint shipped inside
the package names a folder inside itself by a relative path, which `load_policy_config` resolves,
wherever the package lives.

The env side: ``env_cfg.get_env_processors()``, the env type's own pipelines. LeRobot's
``make_env_pre_post_processors`` is not used because for every XVLA policy it returns LIBERO's
pipelines whatever the env (pinned in ``tests/runtime/test_seam.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.envs.configs import HILSerlRobotEnvConfig
from lerobot.envs.utils import preprocess_observation
from lerobot.policies import make_pre_post_processors
from lerobot.utils.constants import ACTION

from ..errors import LerobotPirlError

PREPROCESSOR_FILE = "policy_preprocessor.json"
TOKENIZER_STEP = "tokenizer_processor"  # ProcessorStepRegistry name of TokenizerProcessorStep
DEVICE_STEP = "device_processor"
BUNDLED_TOKENIZER_DIR = "tokenizer"
VLM_NAME_FIELD = "vlm_model_name"
"""The policy-config field naming a VLM by Hub id or folder (SmolVLA's)."""


class ProcessorError(LerobotPirlError, ValueError):
    """A checkpoint or config whose processors cannot be built; the message says what to do."""


@dataclass
class PolicyIO:
    """The four pipelines of one (env, policy) pair."""

    preprocessor: Any
    postprocessor: Any
    env_preprocessor: Any
    env_postprocessor: Any
    processed_observations: bool = False
    """The env's observations are already in policy keys (``gym_manipulator``: its env processor
    ran), so ``preprocess_observation`` is skipped."""

    @classmethod
    def for_policy(
        cls, policy_cfg: Any, env_cfg: Any = None, dataset_stats: dict[str, Any] | None = None
    ) -> PolicyIO:
        """From the checkpoint at ``policy_cfg.pretrained_path`` if set, else from the config."""
        pretrained = getattr(policy_cfg, "pretrained_path", None)
        if pretrained:
            preprocessor, postprocessor = load_policy_processors(policy_cfg, Path(pretrained))
        else:
            preprocessor, postprocessor = make_pre_post_processors(policy_cfg, dataset_stats=dataset_stats)
        if env_cfg is not None:
            env_preprocessor, env_postprocessor = env_cfg.get_env_processors()
        else:
            from lerobot.processor import PolicyProcessorPipeline

            env_preprocessor, env_postprocessor = (
                PolicyProcessorPipeline(steps=[]),
                PolicyProcessorPipeline(steps=[]),
            )
        processed = isinstance(env_cfg, HILSerlRobotEnvConfig)
        return cls(preprocessor, postprocessor, env_preprocessor, env_postprocessor, processed)

    def observation(self, raw: dict[str, Any], task: str) -> dict[str, torch.Tensor]:
        """A raw (batched) env observation as the policy reads it: every tensor the pipelines produce."""
        observation: dict[str, Any]
        if self.processed_observations:
            observation = {key: torch.as_tensor(value) for key, value in raw.items()}
        else:
            observation = preprocess_observation(raw)
        batch = next(iter(observation.values())).shape[0]
        observation["task"] = [task] * batch
        observation = self.preprocessor(self.env_preprocessor(observation))
        return {key: value for key, value in observation.items() if isinstance(value, torch.Tensor)}

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """Policy actions [B, D] (the policy's normalised space) as env actions [B, D_env]."""
        actions = self.postprocessor(actions)
        actions = self.env_postprocessor({ACTION: actions})[ACTION]
        return actions.detach().to("cpu", torch.float32).numpy()

    def save_pretrained(self, directory: Path | str, *, name_tokenizer_as: Path | str | None = None) -> None:
        """Write the policy's pipelines next to its weights, tokenizer bundled (`bundle_tokenizer`)."""
        directory = Path(directory)
        self.preprocessor.save_pretrained(directory)
        self.postprocessor.save_pretrained(directory)
        bundle_tokenizer(directory, self.preprocessor, name_as=name_tokenizer_as)


def load_policy_processors(policy_cfg: Any, pretrained: Path) -> tuple[Any, Any]:
    """LeRobot's ``make_pre_post_processors(cfg, pretrained_path=...)``, with the bundled tokenizer
    and the config's device."""
    if not (pretrained / PREPROCESSOR_FILE).is_file():
        raise ProcessorError(
            f"the checkpoint {pretrained} has no {PREPROCESSOR_FILE}: it was saved without LeRobot's "
            "policy processors (normaliser stats, tokenizer). Save the policy's pipelines next to its "
            "weights (PolicyProcessorPipeline.save_pretrained), or rebuild the demo checkpoint with "
            "scripts/build_sft_checkpoint.py"
        )
    overrides = with_bundled_tokenizer(pretrained, {DEVICE_STEP: {"device": str(policy_cfg.device)}})
    return make_pre_post_processors(
        policy_cfg, pretrained_path=str(pretrained), preprocessor_overrides=overrides
    )


def load_policy_config(pretrained: Path | str, cli_overrides: list[str] | None = None) -> Any:
    """LeRobot's ``PreTrainedConfig.from_pretrained`` for a local checkpoint folder, with a
    ``vlm_model_name`` that names a folder inside the checkpoint by a relative path made absolute
    (the form of checkpoints shipped in the package; a Hub id or an absolute path stays as it is)."""
    from lerobot.configs.policies import PreTrainedConfig

    config = PreTrainedConfig.from_pretrained(str(pretrained), cli_overrides=cli_overrides or [])
    name = getattr(config, VLM_NAME_FIELD, None)
    if isinstance(name, str) and not Path(name).is_absolute() and (Path(pretrained) / name).is_dir():
        setattr(config, VLM_NAME_FIELD, str((Path(pretrained) / name).resolve()))
    return config


def with_bundled_tokenizer(pretrained: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """``make_pre_post_processors``' ``preprocessor_overrides`` for the checkpoint at ``pretrained``:
    ``overrides`` plus the tokenizer bundled in it (`bundle_tokenizer`) when there is one, each kept
    only if the saved pipeline has that step (LeRobot refuses overrides of absent steps)."""
    overrides = dict(overrides)
    bundled = pretrained / BUNDLED_TOKENIZER_DIR
    if bundled.is_dir():
        overrides[TOKENIZER_STEP] = {"tokenizer_name": str(bundled.resolve())}
    steps = {
        step.get("registry_name")
        for step in json.loads((pretrained / PREPROCESSOR_FILE).read_text())["steps"]
    }
    return {name: value for name, value in overrides.items() if name in steps}


def bundle_tokenizer(directory: Path, preprocessor: Any, *, name_as: Path | str | None = None) -> None:
    """Store the tokenizer of ``preprocessor``'s tokenizer step in ``directory/tokenizer`` and make
    the saved pipeline name it: by its absolute path, or ``name_as`` — where the folder will end up
    when it is written under a temporary name, or ``"tokenizer"`` for a checkpoint shipped inside a
    package (which only our loaders resolve, wherever the package lives)."""
    config_path = directory / PREPROCESSOR_FILE
    config = json.loads(config_path.read_text())
    tokenizer_steps = [step for step in preprocessor.steps if hasattr(step, "input_tokenizer")]
    saved = [step for step in config["steps"] if step.get("registry_name") == TOKENIZER_STEP]
    if not tokenizer_steps or not saved:
        return
    target = directory / BUNDLED_TOKENIZER_DIR
    tokenizer_steps[0].input_tokenizer.save_pretrained(str(target))
    saved[0]["config"]["tokenizer_name"] = str(name_as) if name_as is not None else str(target.resolve())
    config_path.write_text(json.dumps(config, indent=4) + "\n")
