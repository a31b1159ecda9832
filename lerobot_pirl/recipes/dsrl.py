"""Built-in ``dsrl`` recipe: DSRL, LeRobot's own SAC steering a frozen XVLA through its initial noise.

DSRL (Wagenmaker et al., 2025, "Steering Your Diffusion Policy with Latent Space RL") improves a
pretrained flow policy without touching its weights: a small SAC agent chooses the initial noise
the policy's deterministic sampler starts from. Here the agent is LeRobot's ``gaussian_actor``
trained by LeRobot's ``SACAlgorithm`` — this recipe is `SACRecipe` under another name, every
update delegated — and the frozen XVLA lives in the env (``env.type = "pirl_dsrl"``,
`lerobot_pirl.envs.noise_steered`), which turns each noise action into H' env steps. So the learner is
LeRobot's SAC learner loop with its replay buffer, and the actor LeRobot's actor.

When to prefer it to πRL: few env steps (off-policy, replayed data), a policy too large to
fine-tune, or a checkpoint that must stay bit-identical. πRL moves the policy itself and can go
past what any choice of start noise reaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lerobot.rl.algorithms.sac import SACAlgorithmConfig

from .hookspecs import hookimpl
from .registry import RecipeRegistry
from .sac import SACRecipe


@dataclass
class DSRLConfig(SACAlgorithmConfig):
    """LeRobot's SAC config, unchanged; the noise space is set in the ``pirl_dsrl`` env block."""

    def validate_train_config(self, cfg: Any) -> None:
        """The whole config, before anything starts: a ``gaussian_actor`` agent on a ``pirl_dsrl``
        env whose action is the agent's action."""
        problems = []
        env_type = getattr(cfg.env, "type", None)
        if env_type != "pirl_dsrl":
            problems.append(
                f"env.type={env_type!r}: recipe=dsrl steers a frozen XVLA through env.type='pirl_dsrl' "
                "(its env.inner is the task, env.checkpoint the XVLA)"
            )
        if cfg.policy.type != "gaussian_actor":
            problems.append(f"policy.type={cfg.policy.type!r}: the DSRL agent is LeRobot's 'gaussian_actor'")
        if not problems:
            noise_shape = tuple(cfg.env.features["action"].shape)
            declared = cfg.policy.output_features.get("action") if cfg.policy.output_features else None
            if declared is not None and tuple(declared.shape) != noise_shape:
                problems.append(
                    f"policy.output_features.action has shape {tuple(declared.shape)}, but the env's "
                    f"noise action has {noise_shape} (leave it out: make_policy takes it from the env)"
                )
        if problems:
            raise ValueError("invalid dsrl config: " + "; ".join(problems))


class DSRLRecipe(SACRecipe):
    name = "dsrl"
    config_class = DSRLConfig


@hookimpl
def lerobot_pirl_register_recipes(registry: RecipeRegistry) -> None:
    registry.add(DSRLRecipe)
