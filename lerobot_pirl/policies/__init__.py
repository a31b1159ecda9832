"""Policy-side πRL: the XVLA mixin (sampling with exact log-probs, PPO forward) and tiny XVLAs."""

from lerobot_pirl.policies.xvla_pi_rl import (
    PI_RL_ADVANTAGE,
    PI_RL_CHAIN,
    PI_RL_OLD_LOG_PROB,
    PI_RL_OLD_VALUE,
    PI_RL_RETURN,
    PI_RL_STEP_INDEX,
    PiRLHeads,
    PiRLLossConfig,
    PiRLMixin,
    PiRLOutputs,
    PiRLRecord,
    PiRLSampling,
    PiRLXVLAPolicy,
    adopt_pi_rl,
)

__all__ = [
    "PI_RL_ADVANTAGE",
    "PI_RL_CHAIN",
    "PI_RL_OLD_LOG_PROB",
    "PI_RL_OLD_VALUE",
    "PI_RL_RETURN",
    "PI_RL_STEP_INDEX",
    "PiRLHeads",
    "PiRLLossConfig",
    "PiRLMixin",
    "PiRLOutputs",
    "PiRLRecord",
    "PiRLSampling",
    "PiRLXVLAPolicy",
    "adopt_pi_rl",
]
