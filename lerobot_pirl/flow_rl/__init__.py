"""πRL, policy-agnostic: the math (``math``), the sampling/loss settings and their validation
(``settings``), the flow-policy adapter contract and registry (``adapter``), the recipe-owned heads
(``heads``) and the algorithm — sample a chain, score it, the PPO loss (``algorithm``).
"""

from lerobot_pirl.flow_rl.adapter import (
    EncodedObservation,
    FlowAdapterError,
    FlowAdapterRegistry,
    FlowPolicyAdapter,
)
from lerobot_pirl.flow_rl.algorithm import ChainSample, PiRLOutputs, pi_rl_loss, sample_chain, score_chain
from lerobot_pirl.flow_rl.heads import PiRLHeads
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
    token_log_prob,
    velocity_and_noise,
)
from lerobot_pirl.flow_rl.settings import (
    DEFAULT_NOISE_METHOD,
    NOISE_METHODS,
    PiRLLossConfig,
    PiRLSampling,
)

__all__ = [
    "DEFAULT_NOISE_METHOD",
    "NOISE_METHODS",
    "ChainSample",
    "EncodedObservation",
    "FlowAdapterError",
    "FlowAdapterRegistry",
    "FlowPolicyAdapter",
    "PiRLHeads",
    "PiRLLossConfig",
    "PiRLOutputs",
    "PiRLSampling",
    "pi_rl_loss",
    "sample_chain",
    "score_chain",
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
    "token_log_prob",
    "velocity_and_noise",
]
