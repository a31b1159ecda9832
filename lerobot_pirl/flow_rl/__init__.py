"""Flow-matching RL math for πRL: step kernels, Gaussian log-probs, PPO/value losses, GAE.

Pure, policy-agnostic functions; the policy mixins adapt them to a concrete model.
"""

from lerobot_pirl.flow_rl.math import (
    aggregate_entropy,
    aggregate_log_prob,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    flow_noise_chain_log_prob,
    flow_noise_std,
    flow_sde_chain_log_prob,
    flow_sde_sigmas,
    flow_sde_step,
    gather_chain_step,
    gaussian_entropy,
    gaussian_log_prob,
    normalize_advantages,
    ode_step_mean,
    ppo_actor_loss,
    std_bounds_to_log_var_bounds,
    time_grid,
    velocity_and_noise,
)

__all__ = [
    "aggregate_entropy",
    "aggregate_log_prob",
    "clipped_value_loss",
    "compute_gae",
    "explained_variance",
    "flow_noise_chain_log_prob",
    "flow_noise_std",
    "flow_sde_chain_log_prob",
    "flow_sde_sigmas",
    "flow_sde_step",
    "gather_chain_step",
    "gaussian_entropy",
    "gaussian_log_prob",
    "normalize_advantages",
    "ode_step_mean",
    "ppo_actor_loss",
    "std_bounds_to_log_var_bounds",
    "time_grid",
    "velocity_and_noise",
]
