"""A saved flow-matching policy as the actors and evaluators sample it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..recipes.registry import installed
from .processors import PolicyIO, load_policy_config


def load_flow_policy(pretrained_dir: Path | str, env_config: Any = None) -> tuple[Any, PolicyIO]:
    """A stock checkpoint (any policy type with a flow adapter) as a πRL-sampling policy, in eval
    mode, with fresh heads (only the deterministic and native samplers are meant to be used), and
    its own LeRobot processors (from the checkpoint's pipeline files) for ``env_config``."""
    from ..policies import PiRLHeads, PiRLSampling

    config = load_policy_config(pretrained_dir)
    policy_class = installed().adapters.resolve(config.type).policy_class
    policy = policy_class.from_pretrained(str(pretrained_dir), config=config)
    policy.attach_pi_rl(PiRLHeads.for_policy(policy, noise_head=False), PiRLSampling(noise_method="flow_sde"))
    policy.config.pretrained_path = Path(pretrained_dir)
    return policy.eval(), PolicyIO.for_policy(policy.config, env_config)
