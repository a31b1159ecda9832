"""Multi-task few-shot SFT of a tiny XVLA or SmolVLA on MetaWorld MT10, language-conditioned.

The recipe is PickCube's (`lerobot_pirl.tasks.pick_cube.sft`) on ten tasks at once: LeRobot's
scripted MetaWorld experts (each env's ``expert_policy``, from ``TASK_POLICY_MAPPING``) with
Gaussian action noise collect a few *successful* episodes per task (failed ones are discarded);
one tiny policy is fine-tuned on all of them with its own stock flow-matching loss
(``XVLAPolicy.forward`` / ``SmolVLAPolicy.forward``), each frame carrying its task's instruction
through the checkpoint's own preprocessor (a word-level tokenizer built here over the instructions,
`tokenizer.build_instruction_tokenizer`; SmolVLA's sits in its VLM folder), the 39-D state
standardised with the demonstrations' stats. Few demonstrations keep the policy imperfect, so RL
has something to do. Everything is seeded: ``scripts/build_metaworld_sft.py [--policy smolvla]``
rebuilds the shipped checkpoints (``assets/mt10_sft``, ``assets/mt10_smolvla_sft``).

The policy must *read* the instruction, and that does not come for free: MetaWorld's 39-D state
(hand, object poses, goal) nearly identifies the task by itself, since each task has its own
scene, and a tiny XVLA trained on clean states ignores the instruction. Gaussian noise on the
normalised state of every SFT minibatch (``state_noise``, a standard BC augmentation) blurs the
scene cues, so the instruction becomes the reliable cue of which task to do. The measured sweep
and the shipped checkpoint's figures: ``benchmarks/README.md`` (MetaWorld MT10 SFT checkpoint) and
the checkpoint's provenance. The image is blank (``obs_type="state"``), so the vision tower is
frozen. The XVLA's language encoder trains; the SmolVLA keeps its stock ``train_expert_only``
(the whole VLM frozen), so its action expert learns to read the instruction from the frozen VLM's
keys and values, as a real SmolVLA fine-tune does.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature
from lerobot.utils.constants import ACTION, OBS_STATE

from lerobot_pirl.envs.metaworld import ACTION_DIM, STATE_DIM, expand_tasks
from lerobot_pirl.policies.tiny_smolvla import BUNDLED_VLM_DIR
from lerobot_pirl.policies.tiny_xvla import IMAGE_KEY, tiny_xvla_config
from lerobot_pirl.runtime.envs import make_envs, step_env
from lerobot_pirl.runtime.processors import BUNDLED_TOKENIZER_DIR, PolicyIO
from lerobot_pirl.tasks.machine import machine_info
from lerobot_pirl.tasks.metaworld.configs import (
    SHIPPED_CHECKPOINT,
    SHIPPED_CHECKPOINTS,
    mt10_env_config,
    single_task_config,
)
from lerobot_pirl.tasks.metaworld.evaluate import (
    EVAL_SEED_OFFSET,
    evaluate_tasks,
    instructions_for,
    policy_observation,
    swapped_instructions,
)
from lerobot_pirl.tasks.metaworld.tokenizer import (
    build_instruction_tokenizer,
    instruction_words,
    token_length,
)

__all__ = [
    "PROVENANCE_FILE",
    "SHIPPED_CHECKPOINT",
    "SHIPPED_CHECKPOINTS",
    "POLICY_DEFAULTS",
    "TRAIN_STEPS",
    "MT10SFTConfig",
    "Demonstrations",
    "collect_demonstrations",
    "demo_reset_seed",
    "dataset_stats",
    "make_sft_policy",
    "train_sft",
    "build_checkpoint",
]

PROVENANCE_FILE = "provenance.json"
POLICY_DEFAULTS: dict[str, dict[str, Any]] = {
    "xvla": {"chunk_size": 8, "n_action_steps": 4, "num_denoising_steps": 3, "hidden_size": 64, "depth": 2},
    "smolvla": {
        "chunk_size": 8,
        "n_action_steps": 4,
        "num_steps": 3,
        "max_state_dim": 40,
        "max_action_dim": 6,
    },
}
"""Per policy type, the fields of the tiny policy's config (``tiny_xvla_config`` /
``tiny_smolvla_config``; the language length is set from the tokenizer): the same chunk, executed
steps and denoising steps for both. SmolVLA pads the 39-D state to ``max_state_dim``."""
TRAIN_STEPS = {"xvla": 600, "smolvla": 1800}
"""Per policy type, the SFT gradient steps (the tiny SmolVLA's loss falls more slowly than the
XVLA's, as on PickCube)."""
DEMO_SEED_STRIDE = 100_000
"""Demonstration episode k of task index t under ``seed`` resets with seed
``seed * DEMO_SEED_STRIDE + t * 1_000 + k`` (`demo_reset_seed`): below ``EVAL_SEED_OFFSET`` for
``seed < 10``, so no demonstration shares a reset seed with the evaluation set."""


@dataclass
class MT10SFTConfig:
    """Everything that determines the shipped checkpoint (recorded in its provenance)."""

    policy_type: str = "xvla"
    """``xvla`` or ``smolvla`` (`POLICY_DEFAULTS`)."""
    seed: int = 0
    """Seeds the demonstrations' reset seeds, the expert noise, the init and the SFT batches (< 10)."""
    tasks: str = "MT10"
    """`MetaWorldEnvConfig.task` of the demonstrations and the evaluation."""
    demonstrations_per_task: int = 3
    """Successful expert episodes kept per task (few-shot: more make the policy too good for RL
    to have anything left to do)."""
    expert_noise: float = 0.1
    """Std of the Gaussian noise added to the expert's actions (MetaWorld units, clipped to [-1, 1])."""
    episode_length: int = 200
    """Episode limit of collection and evaluation (the env's ``episode_length``)."""
    train_steps: int | None = None
    """SFT gradient steps (None: `TRAIN_STEPS` of ``policy_type``)."""
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    state_noise: float = 0.75
    """Std of Gaussian noise added to the *normalised* state of every SFT minibatch (standard BC
    augmentation). The 39-D state alone nearly identifies the task (each task has its own scene),
    so without it the policy learns to ignore the instruction; blurring the state makes the
    instruction the reliable cue of which task to do."""
    state_std_floor: float = 0.01
    """Lower bound of the state std in the normaliser's stats: a coordinate that barely moves in
    the demonstrations (a fixed part of one scene) must not blow up when it moves at evaluation."""
    eval_episodes_per_task: int = 50
    """Deterministic evaluation episodes per task for the recorded SFT success rates."""
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
    """[N, 39] observation.state at every step of every kept episode."""
    action_chunks: torch.Tensor
    """[N, chunk, 4] the noisy expert's next ``chunk`` actions (the last one repeated past the
    episode's end); ``action_chunks[:, 0]`` is the action taken."""
    task_ids: torch.Tensor
    """[N] index into ``tasks`` of each frame's task."""
    instructions: list[str]
    """[N] each frame's instruction (its task's ``task_description``)."""
    tasks: list[str]
    episode_lengths: dict[str, list[int]]
    """Steps of each kept episode, per task."""
    episodes_tried: dict[str, int]
    episodes_kept: dict[str, int]
    reset_seeds: dict[str, list[int]]
    """Reset seed of each kept episode, per task."""
    env_steps: int


def demo_reset_seed(seed: int, task_index: int, attempt: int) -> int:
    """The reset seed of a demonstration episode (see `DEMO_SEED_STRIDE`)."""
    if not 0 <= attempt < 1_000 or not 0 <= task_index < 100:
        raise ValueError(f"demonstration attempt {attempt} of task {task_index} is outside the seed scheme")
    value = seed * DEMO_SEED_STRIDE + task_index * 1_000 + attempt
    if not 0 <= value < EVAL_SEED_OFFSET:
        raise ValueError(f"seed {seed}: demonstration reset seeds must stay below {EVAL_SEED_OFFSET}")
    return value


def collect_demonstrations(
    config: MT10SFTConfig, chunk_size: int, env_config: Any = None, max_attempts: int = 100
) -> Demonstrations:
    """``config.demonstrations_per_task`` successful noisy-expert episodes of every task, in the env
    LeRobot builds from ``env_config`` (`mt10_env_config` by default), one task at a time."""
    env_config = env_config or mt10_env_config(task=config.tasks, episode_length=config.episode_length)
    tasks = expand_tasks(config.tasks)
    states, chunks, task_ids, instructions = [], [], [], []
    lengths: dict[str, list[int]] = {task: [] for task in tasks}
    tried = dict.fromkeys(tasks, 0)
    seeds: dict[str, list[int]] = {task: [] for task in tasks}
    env_steps = 0
    for t, task in enumerate(tasks):
        rng = np.random.default_rng([config.seed, t])
        [env] = make_envs(single_task_config(env_config, task), 1)
        try:
            expert = env.call("expert_policy")[0]
            instruction = str(env.call("task_description")[0])
            while len(lengths[task]) < config.demonstrations_per_task:
                if tried[task] >= max_attempts:
                    raise RuntimeError(
                        f"{task}: no {config.demonstrations_per_task} successes in {max_attempts} tries"
                    )
                reset_seed = demo_reset_seed(config.seed, t, tried[task])
                tried[task] += 1
                raw, _ = env.reset(seed=[reset_seed])
                state = raw["agent_pos"][0]
                episode_states, episode_actions, success = [], [], False
                for _ in range(config.episode_length):
                    action = np.asarray(expert.get_action(state.astype(np.float64)), dtype=np.float32)
                    action = np.clip(action + rng.normal(0.0, config.expert_noise, action.shape), -1, 1)
                    action = action.astype(np.float32)
                    episode_states.append(torch.from_numpy(state.copy()))
                    episode_actions.append(torch.from_numpy(action))
                    result = step_env(env, action)
                    success = success or result.success
                    if result.done:
                        break
                    state = result.observation["agent_pos"][0]
                env_steps += len(episode_actions)
                if not success:
                    continue
                actions = torch.stack(episode_actions)
                padded = torch.cat([actions, actions[-1:].expand(chunk_size - 1, -1)])
                states.append(torch.stack(episode_states))
                chunks.append(padded.unfold(0, chunk_size, 1).transpose(1, 2))
                task_ids.append(torch.full((len(actions),), t, dtype=torch.long))
                instructions += [instruction] * len(actions)
                lengths[task].append(len(actions))
                seeds[task].append(reset_seed)
        finally:
            env.close()
    return Demonstrations(
        states=torch.cat(states),
        action_chunks=torch.cat(chunks),
        task_ids=torch.cat(task_ids),
        instructions=instructions,
        tasks=tasks,
        episode_lengths=lengths,
        episodes_tried=tried,
        episodes_kept={task: len(lengths[task]) for task in tasks},
        reset_seeds=seeds,
        env_steps=env_steps,
    )


def dataset_stats(demos: Demonstrations, std_floor: float = 0.0) -> dict[str, dict[str, torch.Tensor]]:
    """LeRobot-style normalisation stats of the demonstrations, the state std floored at ``std_floor``."""

    def stats(values: torch.Tensor, floor: float) -> dict[str, torch.Tensor]:
        return {
            "mean": values.mean(0),
            "std": values.std(0).clamp_min(floor),
            "min": values.min(0).values,
            "max": values.max(0).values,
        }

    return {OBS_STATE: stats(demos.states, std_floor), ACTION: stats(demos.action_chunks[:, 0], 0.0)}


def make_sft_policy(
    config: MT10SFTConfig,
    tokenizer_dir: Path | str,
    language_length: int,
    instructions: list[str] | None = None,
    vlm_dir: Path | None = None,
) -> Any:
    """A fresh tiny πRL-capable policy of ``config.policy_type`` reading the 39-D state, a blank
    image and the instruction. XVLA: ``tokenizer_dir``'s tokenizer, ``language_length`` tokens.
    SmolVLA: a tiny SmolVLM written to ``vlm_dir`` whose vocabulary covers ``instructions``."""
    # State standardised with the demonstrations' stats; MetaWorld's actions are already in [-1, 1].
    normalization = {
        "VISUAL": NormalizationMode.IDENTITY,
        "STATE": NormalizationMode.MEAN_STD,
        "ACTION": NormalizationMode.IDENTITY,
    }
    side = mt10_env_config().image_size
    torch.manual_seed(config.seed)
    if config.policy_type == "smolvla":
        from lerobot_pirl.policies.smolvla_pi_rl import PiRLSmolVLAPolicy
        from lerobot_pirl.policies.tiny_smolvla import build_tiny_smolvlm, tiny_smolvla_config

        if vlm_dir is None or not instructions:
            raise ValueError("a SmolVLA SFT policy needs vlm_dir and the instructions its vocabulary covers")
        build_tiny_smolvlm(vlm_dir, instruction_words(instructions))
        return PiRLSmolVLAPolicy(
            tiny_smolvla_config(
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
        )
    from lerobot_pirl.policies.xvla_pi_rl import PiRLXVLAPolicy

    policy_config = tiny_xvla_config(
        STATE_DIM,
        ACTION_DIM,
        image_size=side,
        language_length=language_length,
        tokenizer_name=str(tokenizer_dir),
        **config.policy,
    )
    policy_config.push_to_hub = False
    policy_config.normalization_mapping = normalization
    # The image is blank: the vision tower's output is constant, so it stays frozen. The instruction
    # varies and decides the task, so the language encoder trains.
    policy_config.freeze_vision_encoder = True
    policy_config.freeze_language_encoder = False
    policy = PiRLXVLAPolicy(policy_config)
    for parameter in policy.model.vlm.vision_tower.parameters():
        parameter.requires_grad_(False)
    return policy


def train_sft(
    policy: Any, io: PolicyIO, demos: Demonstrations, config: MT10SFTConfig, log_every: int = 250
) -> list[float]:
    """The stock policy's own flow-matching loss on the demonstrations of every task as the policy's own
    preprocessor gives them (raw observations with a blank image, each frame's instruction),
    AdamW, cosine lr, random minibatches over all tasks; returns the loss curve."""
    image_size = int(next(iter(policy.config.image_features.values())).shape[-1])
    frames = len(demos.states)
    raw = {
        "agent_pos": demos.states.numpy(),
        "pixels": {"front": np.zeros((frames, image_size, image_size, 3), np.uint8)},
    }
    observations = policy_observation(io, raw, demos.instructions)
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
        if config.state_noise > 0:
            noise = torch.randn(batch[OBS_STATE].shape, generator=generator)
            batch[OBS_STATE] = batch[OBS_STATE] + config.state_noise * noise
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
            print(f"sft step {step}/{config.train_steps}: loss {recent:.4f} ({elapsed:.0f}s)", flush=True)
    policy.eval()
    return losses


def build_checkpoint(config: MT10SFTConfig, output_dir: Path) -> dict[str, Any]:
    """Collect demonstrations, build the tokenizer, SFT, evaluate (own and swapped instructions)
    and write a stock XVLA / SmolVLA checkpoint with its processors, tokenizer (SmolVLA: its VLM
    folder, ``vlm/``) and ``provenance.json``."""
    from lerobot_pirl.policies import PiRLHeads, PiRLSampling

    started = time.perf_counter()
    env_config = mt10_env_config(task=config.tasks, episode_length=config.episode_length)
    tasks = env_config.task_names
    instructions = list(instructions_for(tasks).values())
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = build_instruction_tokenizer(Path(scratch) / "tokenizer", instructions)
        language_length = token_length(tokenizer_dir, instructions)
        policy = make_sft_policy(
            config, tokenizer_dir, language_length, instructions, output_dir / BUNDLED_VLM_DIR
        )
        demos = collect_demonstrations(config, policy.config.chunk_size, env_config)
        collected = time.perf_counter()
        print(
            f"demonstrations kept/tried per task: {demos.episodes_kept} / {demos.episodes_tried}", flush=True
        )
        stats = dataset_stats(demos, config.state_std_floor)
        io = PolicyIO.for_policy(policy.config, env_config, dataset_stats=stats)
        losses = train_sft(policy, io, demos, config)
        trained = time.perf_counter()
        # Evaluation needs the πRL sampler; the heads only supply a value that is ignored here.
        policy.attach_pi_rl(
            PiRLHeads.for_policy(policy, noise_head=False), PiRLSampling(noise_method="flow_sde")
        )
        episodes = config.eval_episodes_per_task
        own = evaluate_tasks(policy, io, env_config, episodes_per_task=episodes)
        print(f"SFT MT10 success {own['mean']:.3f}: {own['per_task']}", flush=True)
        swapped = evaluate_tasks(
            policy, io, env_config, episodes_per_task=episodes, instructions=swapped_instructions(tasks)
        )
        print(f"swapped-instruction success {swapped['mean']:.3f}: {swapped['per_task']}", flush=True)
        evaluated = time.perf_counter()
        # Named relative to the checkpoint, not by a path of this machine (our loaders resolve it).
        if config.policy_type == "smolvla":
            policy.config.vlm_model_name = BUNDLED_VLM_DIR
        else:
            policy.config.tokenizer_name = BUNDLED_TOKENIZER_DIR
        policy.save_pretrained(output_dir)
        io.save_pretrained(output_dir, name_tokenizer_as=BUNDLED_TOKENIZER_DIR)
    provenance = {
        "built_by": f"scripts/build_metaworld_sft.py --policy {config.policy_type}",
        "sft_config": asdict(config),
        "env": {
            "type": env_config.type,
            **{
                k: getattr(env_config, k)
                for k in ("task", "obs_type", "image_size", "episode_length", "reward_type")
            },
        },
        "tasks": tasks,
        "instructions": instructions_for(tasks),
        "language_length": language_length,
        "demonstrations": {
            "kept_per_task": demos.episodes_kept,
            "tried_per_task": demos.episodes_tried,
            "expert_success_rate": sum(demos.episodes_kept.values()) / sum(demos.episodes_tried.values()),
            "episode_lengths": demos.episode_lengths,
            "reset_seeds": demos.reset_seeds,
            "frames": len(demos.states),
            "env_steps": demos.env_steps,
        },
        "sft_final_loss": sum(losses[-100:]) / min(len(losses), 100),
        "evaluation": {
            "sampler": "deterministic",
            "episodes_per_task": episodes,
            "reset_seeds": f"{EVAL_SEED_OFFSET} + i, i < {episodes}, per task",
            "per_task": own["per_task"],
            "mean": own["mean"],
            "mean_episode_steps": own["mean_episode_steps"],
        },
        "swapped_instruction_evaluation": {
            "rule": "task i gets the instruction of task (i + 1) mod 10 (MT10 order); same episodes",
            "per_task": swapped["per_task"],
            "mean": swapped["mean"],
        },
        "parameters": sum(p.numel() for p in policy.parameters()),
        "seconds": {
            "demonstrations": round(collected - started, 1),
            "sft": round(trained - collected, 1),
            "evaluation": round(evaluated - trained, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "machine": machine_info(),
    }
    (output_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance
