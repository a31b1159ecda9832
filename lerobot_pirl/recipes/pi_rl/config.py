"""Every πRL hyperparameter, explicit and documented; defaults from the πRL paper (arXiv 2510.25889)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...flow_rl.settings import (
    NOISE_METHODS,
    PiRLLossConfig,
    PiRLSampling,
    fields_of,
    loss_problems,
    sampling_problems,
)
from ..on_policy import OnPolicyConfig

__all__ = ["LR_SCHEDULES", "NOISE_METHODS", "PiRLConfig"]

LR_SCHEDULES = ("constant", "linear")


@dataclass
class PiRLConfig(OnPolicyConfig):
    """``algorithm`` block for ``recipe=pi-rl`` (also settable as ``--algorithm.<field>=...``).

    The runtime's fields (learner address, security, actors, stopping rule) are `OnPolicyConfig`'s.
    The sampling and loss fields are `PiRLSampling`'s and `PiRLLossConfig`'s, flattened into the
    block LeRobot's parser reads; their defaults are those classes' own (one source).
    """

    # --- likelihood -----------------------------------------------------------------------
    noise_method: str = PiRLSampling.noise_method
    """"flow_sde" (one random SDE step per decision; the default: the steadier variant on the
    learning benchmark) or "flow_noise" (learned per-element std, every step stochastic)."""
    num_steps: int | None = PiRLSampling.num_steps
    """K denoising steps during RL; None uses the policy's ``num_denoising_steps``."""
    executed_steps: int | None = PiRLSampling.executed_steps
    """H' env steps executed per decision (≤ chunk_size); None uses the policy's ``n_action_steps``."""
    noise_level: float = PiRLSampling.noise_level
    """Flow-SDE noise level a (> 0; 0.3–0.8 works, 0.2 was unstable in the paper)."""
    noise_std_min: float = PiRLSampling.noise_std_min
    """Flow-Noise lower std bound (π0: 0.08; π0.5: 0.04)."""
    noise_std_max: float = PiRLSampling.noise_std_max
    """Flow-Noise upper std bound (π0: 0.16; π0.5: 0.10)."""

    # --- advantage estimation ---------------------------------------------------------------
    gamma: float = 0.99
    """Discount per decision (chunk-level MDP)."""
    gae_lambda: float = 0.95
    """GAE λ."""

    # --- PPO -----------------------------------------------------------------------------------
    clip_eps: float = PiRLLossConfig.clip_eps
    """PPO ratio clip ε."""
    value_clip: float = PiRLLossConfig.value_clip
    """Clip of the value change around the rollout's old value."""
    huber_delta: float = PiRLLossConfig.huber_delta
    """Huber δ of the value loss."""
    entropy_coef: float = PiRLLossConfig.entropy_coef
    """Entropy bonus coefficient (Flow-Noise only; Flow-SDE has no entropy term)."""
    value_coef: float = PiRLLossConfig.value_coef
    """Weight of the value loss in the total loss."""
    ratio_granularity: str = PiRLLossConfig.ratio_granularity
    """PPO ratio per "decision" (the chunk's likelihood, the πRL paper's choice) or per "token"
    (one clipped ratio per executed action step, each with the decision's advantage)."""
    update_epochs: int = 2
    """Passes over each rollout."""
    minibatch_size: int = 64
    """Decisions per gradient step."""
    rollout_decisions: int = 256
    """Decisions per update (the rollout size); the rollout is discarded after the update."""
    max_policy_staleness: int = 1
    """Keep decisions sampled by policy versions ≥ current − this; older ones are dropped (counted)."""
    target_kl: float | None = None
    """Stop an update's remaining minibatches once a minibatch's approx_kl exceeds 1.5 × this
    (ReinFlow / SB3 style early stop); null never stops early."""
    critic_warmup_updates: int = 0
    """The first this many updates train only the value head (actor and noise-head lr 0), so the
    first actor steps see advantages from a fitted critic (ReinFlow, DPPO)."""
    normalize_value_input: bool = True
    """Standardise the value head's proprio input with running statistics of the rollouts."""

    # --- optimisation ----------------------------------------------------------------------------
    actor_lr: float = 5e-6
    """Learning rate of the trainable policy (actor) parameters."""
    value_lr: float = 1e-4
    """Learning rate of the value head."""
    noise_lr: float = 1e-4
    """Learning rate of the Flow-Noise noise head."""
    lr_schedule: str = "constant"
    """"constant", or "linear": after the critic warm-up every lr decays linearly from its base
    value to ``lr_final_ratio`` × base over ``lr_decay_updates`` updates, then holds (CleanRL's
    annealing, with a floor). It follows the checkpointed policy version, so a resumed run is on
    the same schedule."""
    lr_decay_updates: int = 100
    """Updates over which the linear schedule decays (``max_updates`` is the usual choice)."""
    lr_final_ratio: float = 0.1
    """The linear schedule's last lr as a fraction of the base lr."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""

    # --- heads and freezing ----------------------------------------------------------------------
    value_hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 256])
    """Value head MLP widths (input: pooled VLM features ⊕ proprio)."""
    noise_hidden_dim: int = 128
    """Noise head hidden width."""
    detach_value_input: bool = True
    """Stop value-loss gradients at the head's input (the critic never moves the policy)."""
    freeze_vlm: bool = True
    """Freeze every VLM (Florence-2) parameter, as the paper does by default."""
    activation_checkpointing: bool = False
    """Recompute the policy transformer's per-block activations in backward instead of keeping
    them: less memory per update minibatch for about one more forward pass (learner only; sampling
    keeps no activations). Needs an adapter with ``checkpoint_activations`` (XVLA's has one)."""

    def validate(self) -> None:
        """Raise one ValueError naming every bad field, its value and what is accepted.

        Not ``__post_init__``: draccus would replace the message with a generic one.
        """
        problems = sampling_problems(**fields_of(self, PiRLSampling))
        problems += loss_problems(**fields_of(self, PiRLLossConfig))
        for name in ("actor_lr", "value_lr", "noise_lr", "weight_decay"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} (must be ≥ 0)")
        if not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm={self.max_grad_norm} (must be > 0)")
        for name in ("update_epochs", "minibatch_size", "rollout_decisions"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be ≥ 1)")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            problems.append(f"gamma={self.gamma}, gae_lambda={self.gae_lambda} (must be in [0, 1])")
        if self.target_kl is not None and not self.target_kl > 0:
            problems.append(f"target_kl={self.target_kl} (must be > 0, or null)")
        if self.critic_warmup_updates < 0:
            problems.append(f"critic_warmup_updates={self.critic_warmup_updates} (must be ≥ 0)")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule={self.lr_schedule!r} (accepted: {', '.join(LR_SCHEDULES)})")
        if self.lr_decay_updates < 1:
            problems.append(f"lr_decay_updates={self.lr_decay_updates} (must be ≥ 1)")
        if not 0 <= self.lr_final_ratio <= 1:
            problems.append(f"lr_final_ratio={self.lr_final_ratio} (must be in [0, 1])")
        if self.max_policy_staleness < 0:
            problems.append(f"max_policy_staleness={self.max_policy_staleness} (must be ≥ 0)")
        problems += self.runtime_problems()
        if problems:
            raise ValueError("invalid pi-rl algorithm config: " + "; ".join(problems))

    def data_parallel_problems(self, world_size: int) -> list[str]:
        """What cannot work on ``world_size`` learner ranks (each rank takes a share of every
        minibatch; ``minibatch_size`` stays the global size)."""
        if self.minibatch_size < world_size:
            return [
                f"minibatch_size={self.minibatch_size} is smaller than the {world_size} ranks (every rank "
                "takes a share of each minibatch: use minibatch_size ≥ ranks, ideally a multiple)"
            ]
        return []

    def lr_factor(self, policy_version: int) -> float:
        """The multiplier of every base lr at update ``policy_version`` (0-based; warm-up counts as 0).

        Constant: 1. Linear: 1 at the first actor update, falling to ``lr_final_ratio`` after
        ``lr_decay_updates`` updates.
        """
        if self.lr_schedule == "constant":
            return 1.0
        progress = min(max(policy_version - self.critic_warmup_updates, 0) / self.lr_decay_updates, 1.0)
        return 1.0 - (1.0 - self.lr_final_ratio) * progress

    def sampling(self) -> PiRLSampling:
        """The sampling settings (K and H' still None where the policy's own values apply)."""
        return PiRLSampling(**fields_of(self, PiRLSampling))

    def loss(self) -> PiRLLossConfig:
        return PiRLLossConfig(**fields_of(self, PiRLLossConfig))
