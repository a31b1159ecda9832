"""LeRobot's own evaluator (what ``lerobot-eval`` runs) on any env type LeRobot can build, ours included.

Three things stand between stock ``lerobot-eval`` and a plugin's env types in LeRobot 0.6.1:

- its plugin discovery imports only distributions named ``lerobot_env_*`` (and the other
  ``lerobot_<kind>_*`` prefixes), so it never registers the types under our ``lerobot_pirl.envs``
  entry points; `register_env_plugins` does;
- a tokenizer bundled in the checkpoint (``runtime.processors.bundle_tokenizer``: tiny checkpoints
  built offline) is named by a path LeRobot resolves against the working directory;
  `policy_processors` loads the bundled copy, as our own loaders do; a shipped SmolVLA
  checkpoint's VLM folder, named relative to the checkpoint, is passed to ``lerobot-eval`` as the
  override ``--policy.vlm_model_name=<absolute path>`` (`bundled_vlm_override`);
- ``make_env_pre_post_processors`` gives every XVLA policy LIBERO's env steps (a 180° image flip,
  a second ImageNet normalisation, a 6-D-rotation-to-axis-angle action step) whatever the env.
  `env_processors` gives them to LIBERO envs only, and every other env its own
  ``get_env_processors()``, as LeRobot does for every other policy type.

`eval_checkpoint` is LeRobot's evaluation of a saved policy (stock class, its own processors,
``select_action``), the function tests and benchmarks call; ``lerobot-pirl eval`` (`main`) is
``lerobot-eval`` itself with the points above handled, same flags, same ``eval_info.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lerobot.envs import make_env, make_env_pre_post_processors
from lerobot.envs.configs import EnvConfig

from . import seam
from .envs import register_env_plugins
from .processors import PREPROCESSOR_FILE, VLM_NAME_FIELD, load_policy_config, with_bundled_tokenizer

LIBERO_ENV_TYPES = frozenset({"libero", "libero_plus"})
"""Env types whose observations LeRobot's XVLA env steps were written for."""


def env_processors(env_cfg: EnvConfig, policy_cfg: Any) -> tuple[Any, Any]:
    """LeRobot's ``make_env_pre_post_processors``, except that XVLA's LIBERO steps go to LIBERO
    envs only (see the module docstring)."""
    from lerobot.policies.xvla.configuration_xvla import XVLAConfig

    if isinstance(policy_cfg, XVLAConfig) and env_cfg.type not in LIBERO_ENV_TYPES:
        return env_cfg.get_env_processors()
    return make_env_pre_post_processors(env_cfg=env_cfg, policy_cfg=policy_cfg)


def policy_processors(
    policy_cfg: Any,
    pretrained_path: Any = None,
    preprocessor_overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """LeRobot's ``make_pre_post_processors``, loading a checkpoint's bundled tokenizer if it has one."""
    from lerobot.policies.factory import make_pre_post_processors

    overrides = dict(preprocessor_overrides or {})
    if pretrained_path and (Path(pretrained_path) / PREPROCESSOR_FILE).is_file():
        overrides = with_bundled_tokenizer(Path(pretrained_path), overrides)
    return make_pre_post_processors(
        policy_cfg, pretrained_path=pretrained_path, preprocessor_overrides=overrides, **kwargs
    )


def eval_checkpoint(
    checkpoint: Path | str,
    env_cfg: EnvConfig,
    *,
    n_episodes: int,
    start_seed: int,
    batch_size: int = 10,
    device: str = "cpu",
) -> dict[str, Any]:
    """LeRobot's ``eval_policy`` on a saved policy, built the way ``lerobot-eval --policy.path``
    builds it: the stock class from ``config.json`` (``make_policy``), the checkpoint's own
    processors (``make_pre_post_processors(pretrained_path=...)``), ``select_action``, envs from
    ``make_env``. Episode i resets with seed ``start_seed + i``. Returns LeRobot's
    ``aggregated`` dict (``pc_success``, ``avg_sum_reward``, ...) plus ``successes`` per episode."""
    from lerobot.policies.factory import make_policy
    from lerobot.scripts.lerobot_eval import eval_policy

    policy_cfg = load_policy_config(checkpoint)
    policy_cfg.pretrained_path = Path(checkpoint)
    policy_cfg.device = device
    policy = make_policy(cfg=policy_cfg, env_cfg=env_cfg)
    preprocessor, postprocessor = policy_processors(
        policy_cfg,
        pretrained_path=str(checkpoint),
        preprocessor_overrides={"device_processor": {"device": device}},
    )
    env_preprocessor, env_postprocessor = env_processors(env_cfg, policy_cfg)
    suites = make_env(env_cfg, n_envs=min(batch_size, n_episodes))
    [vector_env] = [env for tasks in suites.values() for env in tasks.values()]
    try:
        with torch.no_grad():
            info = eval_policy(
                vector_env,
                policy,
                env_preprocessor,
                env_postprocessor,
                preprocessor,
                postprocessor,
                n_episodes=n_episodes,
                start_seed=start_seed,
            )
    finally:
        vector_env.close()
    return {**info["aggregated"], "successes": [bool(e["success"]) for e in info["per_episode"]]}


def bundled_vlm_override(argv: Sequence[str]) -> list[str]:
    """``--policy.vlm_model_name=<absolute path>`` when ``--policy.path`` is a local checkpoint that
    names its VLM folder relative to itself (`load_policy_config`) and no override is given."""
    paths = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--policy.path=")]
    if len(paths) != 1 or any(arg.startswith(f"--policy.{VLM_NAME_FIELD}=") for arg in argv):
        return []
    if not (Path(paths[0]) / "config.json").is_file():
        return []  # a Hub id: LeRobot resolves it
    saved = json.loads((Path(paths[0]) / "config.json").read_text()).get(VLM_NAME_FIELD)
    resolved = getattr(load_policy_config(paths[0]), VLM_NAME_FIELD, None)
    return [f"--policy.{VLM_NAME_FIELD}={resolved}"] if resolved != saved else []


def main(argv: Sequence[str] | None = None) -> None:
    """``lerobot-pirl eval [lerobot-eval flags]``: LeRobot's ``lerobot-eval`` with every installed env
    type registered, `policy_processors` and `env_processors` in place of LeRobot's."""
    from lerobot.scripts import lerobot_eval
    from lerobot.utils.utils import init_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    argv += bundled_vlm_override(argv)
    init_logging()
    register_env_plugins()
    seam.install_eval_processors(policy_processors, env_processors)
    saved = sys.argv
    sys.argv = ["lerobot-pirl eval", *argv]
    try:
        lerobot_eval.eval_main()
    finally:
        sys.argv = saved
        seam.uninstall_eval_processors()
