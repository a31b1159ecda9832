"""Few-shot SFT of a tiny VLA (XVLA or SmolVLA) on noisy scripted-expert demonstrations (the demo's
starting policies).

The recipe mirrors how πRL is used in practice: a flow-matching VLA is first fine-tuned on a
handful of imperfect demonstrations with its *own* loss (stock ``XVLAPolicy.forward`` /
``SmolVLAPolicy.forward``), which leaves a policy that succeeds sometimes; RL then closes the gap.
Everything is seeded, so ``scripts/build_sft_checkpoint.py`` rebuilds the shipped checkpoints.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature
from lerobot.utils.constants import ACTION, OBS_STATE

from lerobot_pirl.envs.pick_cube import (
    ACTION_DIM,
    IMAGE_KEY,
    STATE_DIM,
    TASK_DESCRIPTION,
    PickCubeEnvConfig,
    scripted_expert_action,
)
from lerobot_pirl.policies.tiny_smolvla import BUNDLED_VLM_DIR
from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config
from lerobot_pirl.runtime.envs import make_envs, step_env
from lerobot_pirl.runtime.processors import BUNDLED_TOKENIZER_DIR, PolicyIO
from lerobot_pirl.tasks.pick_cube.evaluate import evaluate_policy, evaluation_env

PROVENANCE_FILE = "provenance.json"
SHIPPED_CHECKPOINT = Path(__file__).parent / "assets" / "pick_cube_sft"
"""The tiny XVLA SFT checkpoint shipped in the package (a stock XVLA ``pretrained_model`` folder)."""
SHIPPED_CHECKPOINTS = {
    "xvla": SHIPPED_CHECKPOINT,
    "smolvla": Path(__file__).parent / "assets" / "pick_cube_smolvla_sft",
}
"""The shipped SFT checkpoint of each policy type. The SmolVLA one keeps its VLM folder (config,
processor, tokenizer; no weights: ``load_vlm_weights=False``) inside itself as ``vlm/``, named
relative to the checkpoint in ``config.json`` (our loaders resolve it, ``load_policy_config``)."""

POLICY_DEFAULTS: dict[str, dict[str, Any]] = {
    "xvla": {"chunk_size": 4, "n_action_steps": 2, "num_denoising_steps": 3, "hidden_size": 64, "depth": 2},
    "smolvla": {
        "chunk_size": 4,
        "n_action_steps": 2,
        "num_steps": 3,
        "max_state_dim": 24,
        "max_action_dim": 6,
    },
}
"""Per policy type, the fields of the tiny policy's config (``tiny_xvla_config`` /
``tiny_smolvla_config``): the same chunk, executed steps and denoising steps for both."""
TRAIN_STEPS = {"xvla": 500, "smolvla": 1500}
"""Per policy type, the SFT gradient steps that leave the shipped policy imperfect but often
successful (the tiny SmolVLA's loss falls more slowly than the XVLA's; the steps tried are in
benchmarks/README.md)."""


@dataclass
class SFTConfig:
    """Everything that determines the shipped checkpoint (recorded in its provenance)."""

    policy_type: str = "xvla"
    """``xvla`` or ``smolvla`` (`POLICY_DEFAULTS`)."""
    seed: int = 0
    """Seeds the demonstrations' block positions, the expert noise, the init and the SFT batches."""
    demonstrations: int = 10
    """Successful expert episodes kept for SFT (failed ones are discarded, as a human would). With
    the state standardised by the checkpoint's normaliser, few demonstrations and a short SFT are
    what keep the starting policy imperfect (more of either makes it succeed too often for RL to
    have anything left to do; measured figures in the README)."""
    expert_noise_m: float = 0.015
    """Std (m) of the Gaussian noise on the expert's position deltas: an imperfect demonstrator."""
    max_episode_steps: int = 50
    """Episode limit while collecting, evaluating and training with RL."""
    train_steps: int | None = None
    """SFT gradient steps (None: `TRAIN_STEPS` of ``policy_type``)."""
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_episodes: int = 100
    """Deterministic evaluation episodes for the recorded SFT success rate."""
    state_normalization: str = "MEAN_STD"
    """LeRobot ``NormalizationMode`` of ``observation.state`` in the checkpoint's preprocessor:
    ``MEAN_STD`` (standardised with the demonstrations' stats) or ``IDENTITY`` (the raw state, for
    the lever study's normalisation row)."""
    eval_physics_dt: float = 0.005
    """gym-hil physics substep of that evaluation: the one the demo trains and evaluates with
    (``ENV_SETTINGS["physics_dt"]`` in ``tasks.pick_cube.configs``). The demonstrations are
    collected at gym-hil's default (0.002)."""
    policy: dict[str, Any] = field(default_factory=dict)
    """Fields of the tiny policy's config (empty: `POLICY_DEFAULTS` of ``policy_type``)."""

    def __post_init__(self) -> None:
        if self.policy_type not in POLICY_DEFAULTS:
            raise ValueError(f"policy_type={self.policy_type!r} (accepted: {', '.join(POLICY_DEFAULTS)})")
        self.policy = {**POLICY_DEFAULTS[self.policy_type], **self.policy}
        if self.train_steps is None:
            self.train_steps = TRAIN_STEPS[self.policy_type]


@dataclass
class Demonstrations:
    states: torch.Tensor
    """[N, STATE_DIM] observation.state at every step of every kept episode."""
    action_chunks: torch.Tensor
    """[N, chunk, ACTION_DIM] the expert's next ``chunk`` actions; past the episode end the last
    action is repeated (the expert keeps lifting). ``action_chunks[:, 0]`` is the action taken."""
    rewards: torch.Tensor
    """[N] env reward of each step (1.0 on the success step)."""
    next_states: torch.Tensor
    """[N, STATE_DIM] observation.state after each step (for off-policy learners such as SAC)."""
    terminated: torch.Tensor
    """[N] bool, the episode ended by success or failure at this step (not by the time limit)."""
    episodes_tried: int
    episodes_kept: int
    env_steps: int


def collect_demonstrations(config: SFTConfig, chunk_size: int) -> Demonstrations:
    """Expert episodes in the env LeRobot builds from `PickCubeEnvConfig` (gym-hil's default physics)."""
    rng = np.random.default_rng(config.seed)
    [env] = make_envs(PickCubeEnvConfig(episode_length=config.max_episode_steps), 1)
    kept: list[dict[str, torch.Tensor]] = []
    tried, env_steps = 0, 0
    try:
        while len(kept) < config.demonstrations:
            raw, _ = env.reset(seed=[config.seed * 100_003 + tried])
            state = raw["agent_pos"][0]
            tried += 1
            steps: dict[str, list] = {
                "states": [],
                "actions": [],
                "rewards": [],
                "next": [],
                "terminated": [],
            }
            success = False
            for _ in range(config.max_episode_steps):
                action = scripted_expert_action(state, rng, noise_std=config.expert_noise_m)
                steps["states"].append(torch.from_numpy(state.copy()))
                steps["actions"].append(torch.from_numpy(action))
                result = step_env(env, action)
                ended = result.final_observation if result.done else result.observation
                assert ended is not None
                state = ended["agent_pos"][0]
                steps["rewards"].append(result.reward)
                steps["next"].append(torch.from_numpy(state.copy()))
                steps["terminated"].append(result.terminated)
                success = success or result.success
                if result.done:
                    break
            env_steps += len(steps["actions"])
            if not success:
                continue
            actions = torch.stack(steps["actions"])
            padded = torch.cat([actions, actions[-1:].expand(chunk_size - 1, -1)])
            kept.append(
                {
                    "states": torch.stack(steps["states"]),
                    "chunks": padded.unfold(0, chunk_size, 1).transpose(1, 2),
                    "rewards": torch.tensor(steps["rewards"], dtype=torch.float32),
                    "next": torch.stack(steps["next"]),
                    "terminated": torch.tensor(steps["terminated"]),
                }
            )
    finally:
        env.close()

    def joined(key: str) -> torch.Tensor:
        return torch.cat([episode[key] for episode in kept])

    return Demonstrations(
        states=joined("states"),
        action_chunks=joined("chunks"),
        rewards=joined("rewards"),
        next_states=joined("next"),
        terminated=joined("terminated"),
        episodes_tried=tried,
        episodes_kept=len(kept),
        env_steps=env_steps,
    )


def dataset_stats(demos: Demonstrations) -> dict[str, dict[str, torch.Tensor]]:
    """LeRobot-style normalisation stats of the demonstrations (what a LeRobotDataset would carry)."""

    def stats(values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "mean": values.mean(0),
            "std": values.std(0),
            "min": values.min(0).values,
            "max": values.max(0).values,
        }

    return {OBS_STATE: stats(demos.states), ACTION: stats(demos.action_chunks[:, 0])}


def make_sft_policy(config: SFTConfig, vlm_dir: Path | None = None) -> Any:
    """The random tiny policy of ``config.policy_type`` (SmolVLA: over the VLM folder ``vlm_dir``,
    which `build_tiny_smolvlm` writes), VLM frozen: the image is blank and the instruction fixed,
    so the VLM output is constant."""
    # The state is standardised with the demonstrations' stats by LeRobot's normaliser; actions are
    # already in [-1, 1] (and πRL's exploration noise is set in those units), so they stay as they are.
    normalization = {
        "VISUAL": NormalizationMode.IDENTITY,
        "STATE": NormalizationMode(config.state_normalization),
        "ACTION": NormalizationMode.IDENTITY,
    }
    torch.manual_seed(config.seed)
    if config.policy_type == "smolvla":
        from lerobot_pirl.policies.smolvla_pi_rl import PiRLSmolVLAPolicy
        from lerobot_pirl.policies.tiny_smolvla import build_tiny_smolvlm, tiny_smolvla_config

        if vlm_dir is None:
            raise ValueError("a SmolVLA SFT policy needs vlm_dir, the folder its VLM config is built in")
        build_tiny_smolvlm(vlm_dir)
        side = PickCubeEnvConfig.image_size  # the env's (blank) camera, as make_policy sets it
        smolvla_config = tiny_smolvla_config(
            vlm_dir,
            STATE_DIM,
            ACTION_DIM,
            **config.policy,
            input_features={
                OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
                IMAGE_KEY: PolicyFeature(type=FeatureType.VISUAL, shape=(3, side, side)),
            },
            normalization_mapping=normalization,
            train_expert_only=True,
            push_to_hub=False,
        )
        return PiRLSmolVLAPolicy(smolvla_config)
    from lerobot_pirl.policies.xvla_pi_rl import PiRLXVLAPolicy

    policy_config = tiny_xvla_config(STATE_DIM, ACTION_DIM, **config.policy)
    policy_config.push_to_hub = False
    policy_config.normalization_mapping = normalization
    policy_config.freeze_vision_encoder = True
    policy_config.freeze_language_encoder = True
    policy = PiRLXVLAPolicy(policy_config)
    for parameter in policy.model.vlm.parameters():
        parameter.requires_grad_(False)
    return policy


def train_sft(
    policy: Any, io: PolicyIO, demos: Demonstrations, config: SFTConfig, log_every: int = 250
) -> list[float]:
    """The stock policy's own flow-matching loss on the demonstrations as the policy's own preprocessor gives
    them (the env's raw observations with a blank image), AdamW, random minibatches; returns the
    loss curve."""
    image_size = int(next(iter(policy.config.image_features.values())).shape[-1])
    frames = len(demos.states)
    raw = {
        "agent_pos": demos.states.numpy(),
        "pixels": {"front": np.zeros((frames, image_size, image_size, 3), np.uint8)},
    }
    observations = io.observation(raw, TASK_DESCRIPTION)
    generator = torch.Generator().manual_seed(config.seed)
    parameters = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.train_steps)
    losses, started = [], time.perf_counter()
    policy.train()
    for step in range(1, config.train_steps + 1):
        rows = torch.randint(frames, (config.batch_size,), generator=generator)
        batch = {key: value[rows] for key, value in observations.items()}
        batch[ACTION] = demos.action_chunks[rows]
        loss, _ = policy.forward(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log_every and step % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            elapsed = time.perf_counter() - started
            print(f"sft step {step}/{config.train_steps}: loss {recent:.4f} ({elapsed:.0f}s)")
    policy.eval()
    return losses


def build_checkpoint(config: SFTConfig, output_dir: Path) -> dict[str, Any]:
    """Collect demos, SFT, evaluate, and write a stock XVLA / SmolVLA checkpoint + ``provenance.json``."""
    from lerobot_pirl.policies import PiRLHeads, PiRLSampling

    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    policy = make_sft_policy(config, output_dir / BUNDLED_VLM_DIR)
    demos = collect_demonstrations(config, policy.config.chunk_size)
    print(f"{demos.episodes_kept} demonstrations kept of {demos.episodes_tried} expert episodes")
    env_config = evaluation_env(episode_length=config.max_episode_steps, physics_dt=config.eval_physics_dt)
    io = PolicyIO.for_policy(policy.config, env_config, dataset_stats=dataset_stats(demos))
    losses = train_sft(policy, io, demos, config)
    # Evaluation needs the πRL sampler; the heads only supply a value that is ignored here.
    policy.attach_pi_rl(PiRLHeads.for_policy(policy, noise_head=False), PiRLSampling(noise_method="flow_sde"))
    result = evaluate_policy(policy, io, env_config, episodes=config.eval_episodes)
    print(f"SFT success rate {result.success_rate:.3f} ± {result.stderr:.3f} over {result.episodes} episodes")
    # Named relative to the checkpoint, not by an absolute path of this machine.
    if config.policy_type == "smolvla":
        policy.config.vlm_model_name = BUNDLED_VLM_DIR
    else:
        policy.config.tokenizer_name = BUNDLED_TOKENIZER_DIR
    policy.save_pretrained(output_dir)
    # LeRobot's pipeline files, the tokenizer bundled and named relative to the checkpoint (the
    # package can live anywhere; our loaders resolve it, see runtime.processors).
    io.save_pretrained(output_dir, name_tokenizer_as=BUNDLED_TOKENIZER_DIR)
    provenance = {
        "built_by": f"scripts/build_sft_checkpoint.py --policy {config.policy_type}",
        "sft_config": asdict(config),
        "demonstrations": {
            "kept": demos.episodes_kept,
            "expert_episodes": demos.episodes_tried,
            "expert_success_rate": demos.episodes_kept / demos.episodes_tried,
            "frames": len(demos.states),
            "env_steps": demos.env_steps,
        },
        "sft_final_loss": sum(losses[-100:]) / min(len(losses), 100),
        "evaluation": {
            "sampler": "deterministic",
            "max_episode_steps": config.max_episode_steps,
            "physics_dt": config.eval_physics_dt,
            **result.to_dict(),
        },
        "parameters": sum(p.numel() for p in policy.parameters()),
        "build_seconds": round(time.perf_counter() - started, 1),
        "versions": {"torch": torch.__version__, "lerobot": _lerobot_version()},
    }
    (output_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def _lerobot_version() -> str:
    from importlib.metadata import version

    return version("lerobot")
