"""Policy-side πRL: the policy mixin, the XVLA flow-policy adapter, and tiny XVLAs."""

from lerobot_pirl.flow_rl.algorithm import PiRLOutputs
from lerobot_pirl.flow_rl.heads import PiRLHeads
from lerobot_pirl.flow_rl.settings import PiRLLossConfig, PiRLSampling
from lerobot_pirl.policies.pi_rl import (
    PI_RL_ADVANTAGE,
    PI_RL_CHAIN,
    PI_RL_OLD_TOKEN_LOG_PROB,
    PI_RL_OLD_VALUE,
    PI_RL_RETURN,
    PI_RL_STEP_INDEX,
    PiRLMixin,
    PiRLRecord,
    adopt_pi_rl,
)
from lerobot_pirl.policies.xvla_pi_rl import PiRLXVLAPolicy, XVLAFlowAdapter

__all__ = [
    "PI_RL_ADVANTAGE",
    "PI_RL_CHAIN",
    "PI_RL_OLD_TOKEN_LOG_PROB",
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
    "XVLAFlowAdapter",
    "adopt_pi_rl",
]
