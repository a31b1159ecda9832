"""The model card (``README.md``) in every checkpoint's ``pretrained_model/``, so the folder holds
what LeRobot's ``push_to_hub`` uploads for a policy: config, weights, train config, processor
pipelines and a card, here one that says how the policy was fine-tuned.

LeRobot's own ``PreTrainedPolicy.generate_model_card`` validates the card against the Hub (a
network call) and is made for supervised runs on a dataset; this renders LeRobot's template with
its own context (``seam.model_card_context``) offline, and appends the RL section: the recipe and
its settings, the base checkpoint, the env, and the success measured so far.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from . import seam

MODEL_CARD = "README.md"
LIBRARY_TAGS = ("robotics", "lerobot", "reinforcement-learning", "lerobot-pirl")


def rl_section(cfg: Any, step: int, log: dict[str, float]) -> str:
    """What a reader of the card needs to trust or reproduce the fine-tuning."""
    base = getattr(cfg.policy, "pretrained_path", None)
    recipe = cfg.algorithm.type
    lines = [
        "## Reinforcement-learning fine-tuning",
        "",
        f"Fine-tuned with [lerobot-pirl](https://pypi.org/project/lerobot-pirl/), recipe `{recipe}`"
        + (
            f" (`noise_method={cfg.algorithm.noise_method}`)"
            if hasattr(cfg.algorithm, "noise_method")
            else ""
        )
        + ".",
        "",
        f"- Base checkpoint: `{base}`" if base else "- Base checkpoint: none (trained from its config)",
        f"- Env: `{cfg.env.type}`" + (f", task `{cfg.env.task}`" if getattr(cfg.env, "task", None) else ""),
        f"- Updates: {step}; env steps: {int(log.get('env_steps_total', 0))}",
    ]
    if "success_rate" in log:
        lines.append(
            f"- Success rate of the training episodes of update {step}: {log['success_rate']:.2f} "
            "(sampled with the recipe's exploration noise; evaluate with `lerobot-pirl eval`)"
        )
    lines += [
        "",
        "Loads as a stock LeRobot policy: `make_policy` / `"
        + type_class_hint(cfg.policy.type)
        + ".from_pretrained(...)` and `make_pre_post_processors(..., pretrained_path=...)`.",
        "",
    ]
    return "\n".join(lines)


def type_class_hint(policy_type: str) -> str:
    return {"xvla": "XVLAPolicy", "smolvla": "SmolVLAPolicy", "pi0": "PI0Policy", "pi05": "PI05Policy"}.get(
        policy_type, "PreTrainedPolicy"
    )


def write_model_card(pretrained_dir: Path, cfg: Any, step: int, log: dict[str, float]) -> Path:
    """Render LeRobot's model-card template for the policy and append `rl_section`."""
    policy_cfg = cfg.policy
    card_data = ModelCardData(
        license=getattr(policy_cfg, "license", None) or "apache-2.0",
        library_name="lerobot",
        pipeline_tag="robotics",
        tags=sorted(
            set(getattr(policy_cfg, "tags", None) or [])
            | {*LIBRARY_TAGS, policy_cfg.type, cfg.algorithm.type}
        ),
        model_name=policy_cfg.type,
    )
    context = seam.model_card_context(policy_cfg)
    template = (
        files("lerobot.templates").joinpath("lerobot_modelcard_template.md").read_text(encoding="utf-8")
    )
    card = ModelCard.from_template(card_data, template_str=template, **context)
    card.text = card.text.rstrip() + "\n\n" + rl_section(cfg, step, log)
    path = Path(pretrained_dir) / MODEL_CARD
    card.save(str(path))
    return path
