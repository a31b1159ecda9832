"""The MT10 few-shot SFT builder (demonstrations, instruction tokenizer, SFT) on a tiny budget, the
MT10 evaluation's instruction handling, and the shipped ``mt10_sft`` checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Headless MuJoCo: must be decided before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from lerobot.policies.factory import make_pre_post_processors  # noqa: E402
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy  # noqa: E402
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from lerobot_pirl.envs.metaworld import ACTION_DIM, STATE_DIM, lerobot_metaworld  # noqa: E402
from lerobot_pirl.policies.tiny_smolvla import BUNDLED_VLM_DIR  # noqa: E402
from lerobot_pirl.runtime.processors import BUNDLED_TOKENIZER_DIR, PolicyIO, load_policy_config  # noqa: E402
from lerobot_pirl.tasks.metaworld.configs import ENV_SETTINGS, mt10_env_config  # noqa: E402
from lerobot_pirl.tasks.metaworld.evaluate import (  # noqa: E402
    EVAL_SEED_OFFSET,
    instructions_for,
    policy_observation,
    swapped_instructions,
)
from lerobot_pirl.tasks.metaworld.sft import (  # noqa: E402
    PROVENANCE_FILE,
    SHIPPED_CHECKPOINT,
    SHIPPED_CHECKPOINTS,
    MT10SFTConfig,
    collect_demonstrations,
    dataset_stats,
    demo_reset_seed,
    make_sft_policy,
    train_sft,
)
from lerobot_pirl.tasks.metaworld.tokenizer import build_instruction_tokenizer, token_length  # noqa: E402

pytestmark = [
    pytest.mark.timeout(300),
    # MetaWorld's scripted experts warn about their own gains on every action.
    pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high:UserWarning"),
]

MT10 = mt10_env_config().task_names
DESCRIPTIONS = lerobot_metaworld().TASK_DESCRIPTIONS
TWO_TASKS = "reach-v3,drawer-close-v3"
TINY_POLICY = {"chunk_size": 4, "n_action_steps": 2, "num_denoising_steps": 2, "hidden_size": 32, "depth": 1}


@pytest.fixture(scope="module")
def mt10_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    directory = build_instruction_tokenizer(
        tmp_path_factory.mktemp("tok") / "tokenizer", instructions_for(MT10).values()
    )
    return directory


@pytest.fixture(scope="module")
def tiny_demos():
    config = MT10SFTConfig(tasks=TWO_TASKS, demonstrations_per_task=1, policy=TINY_POLICY)
    return config, collect_demonstrations(config, chunk_size=TINY_POLICY["chunk_size"])


def test_mt10_is_metaworlds_ten_tasks_and_the_env_settings_are_state_only():
    assert MT10 == [
        "reach-v3",
        "push-v3",
        "pick-place-v3",
        "door-open-v3",
        "drawer-open-v3",
        "drawer-close-v3",
        "button-press-topdown-v3",
        "peg-insert-side-v3",
        "window-open-v3",
        "window-close-v3",
    ]
    assert ENV_SETTINGS["obs_type"] == "state" and ENV_SETTINGS["task"] == "MT10"


def test_collector_keeps_successful_noisy_expert_episodes_per_task(tiny_demos):
    config, demos = tiny_demos
    assert demos.tasks == ["reach-v3", "drawer-close-v3"]
    assert demos.episodes_kept == {"reach-v3": 1, "drawer-close-v3": 1}
    frames = len(demos.states)
    assert demos.states.shape == (frames, STATE_DIM) and demos.states.dtype == torch.float32
    assert demos.action_chunks.shape == (frames, TINY_POLICY["chunk_size"], ACTION_DIM)
    assert frames == sum(sum(lengths) for lengths in demos.episode_lengths.values())
    # Kept episodes end in success before the time limit (success terminates the episode).
    for lengths in demos.episode_lengths.values():
        assert all(1 <= n < config.episode_length for n in lengths)
    # Each frame carries its own task's instruction, in task order.
    first = demos.episode_lengths["reach-v3"][0]
    assert demos.instructions[:first] == [DESCRIPTIONS["reach-v3"]] * first
    assert demos.instructions[first:] == [DESCRIPTIONS["drawer-close-v3"]] * (frames - first)
    assert demos.task_ids.tolist() == [0] * first + [1] * (frames - first)
    # Chunks are the actions taken, shifted: chunk t+1 starts where chunk t's second action is.
    assert torch.equal(demos.action_chunks[1:first, 0], demos.action_chunks[: first - 1, 1])
    assert float(demos.action_chunks.abs().max()) <= 1.0
    # Expert noise: consecutive actions of a noisy expert are never identical.
    assert float((demos.action_chunks[1:first, 0] - demos.action_chunks[: first - 1, 0]).abs().sum()) > 0
    # The state carries the goal (MetaWorld's last 3 coordinates), not zeros.
    assert float(demos.states[:, 36:].abs().sum()) > 0
    # Demonstration reset seeds never meet the evaluation set's.
    for seeds in demos.reset_seeds.values():
        assert all(0 <= seed < EVAL_SEED_OFFSET for seed in seeds)


def test_collector_is_reproducible(tiny_demos):
    config, demos = tiny_demos
    again = collect_demonstrations(
        MT10SFTConfig(tasks="reach-v3", demonstrations_per_task=1, policy=TINY_POLICY), chunk_size=4
    )
    first = demos.episode_lengths["reach-v3"][0]
    assert torch.equal(again.states, demos.states[:first])
    assert torch.equal(again.action_chunks, demos.action_chunks[:first])


def test_demonstration_seeds_stay_below_the_evaluation_seeds():
    assert demo_reset_seed(0, 0, 0) == 0
    assert demo_reset_seed(9, 9, 999) < EVAL_SEED_OFFSET
    with pytest.raises(ValueError):
        demo_reset_seed(10, 0, 0)


def test_tokenizer_encodes_every_mt10_instruction_without_unk(mt10_tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(str(mt10_tokenizer))
    instructions = [DESCRIPTIONS[task] for task in MT10]
    encoded = [tokenizer(text)["input_ids"] for text in instructions]
    for text, ids in zip(instructions, encoded, strict=True):
        assert tokenizer.unk_token_id not in ids, text
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(ids) == len(text.split()) + 2
        assert max(ids) < 128  # the tiny Florence-2 vocabulary
    assert len({tuple(ids) for ids in encoded}) == len(instructions)  # distinct instructions, distinct ids
    assert tokenizer("Open a drawer")["input_ids"] != tokenizer("Push and close a drawer")["input_ids"]
    assert tokenizer("an unheard instruction")["input_ids"].count(tokenizer.unk_token_id) == 3
    # The language length keeps the longest instruction ("Pick and place a puck to a goal") whole.
    assert token_length(mt10_tokenizer, instructions) == 10


def test_tokenizer_is_deterministic(mt10_tokenizer, tmp_path):
    again = build_instruction_tokenizer(tmp_path / "again", reversed(list(instructions_for(MT10).values())))
    assert (again / "tokenizer.json").read_text() == (mt10_tokenizer / "tokenizer.json").read_text()


def test_swapped_instructions_give_each_task_the_next_tasks():
    swapped = swapped_instructions(MT10)
    assert swapped["reach-v3"] == DESCRIPTIONS["push-v3"]
    assert swapped["window-close-v3"] == DESCRIPTIONS["reach-v3"]
    assert all(swapped[task] != DESCRIPTIONS[task] for task in MT10)
    with pytest.raises(ValueError):
        swapped_instructions(["reach-v3"])


def test_sft_on_a_tiny_budget_reads_the_instruction_and_lowers_the_loss(tiny_demos, mt10_tokenizer):
    config, demos = tiny_demos
    config = MT10SFTConfig(
        tasks=TWO_TASKS, demonstrations_per_task=1, policy=TINY_POLICY, train_steps=60, batch_size=32, lr=3e-3
    )
    policy = make_sft_policy(
        config, mt10_tokenizer, token_length(mt10_tokenizer, instructions_for(MT10).values())
    )
    # The language encoder trains (the instruction decides the task); the blank image's tower does not.
    assert any(p.requires_grad for p in policy.model.vlm.language_model.parameters())
    assert not any(p.requires_grad for p in policy.model.vlm.vision_tower.parameters())
    env_config = mt10_env_config(task=TWO_TASKS)
    io = PolicyIO.for_policy(
        policy.config, env_config, dataset_stats=dataset_stats(demos, config.state_std_floor)
    )
    raw = {
        "agent_pos": demos.states[:2].numpy(),
        "pixels": {"front": np.zeros((2, 16, 16, 3), np.uint8)},
    }
    observation = policy_observation(io, raw, [DESCRIPTIONS["reach-v3"], DESCRIPTIONS["drawer-close-v3"]])
    tokens = observation["observation.language.tokens"]
    assert tokens.shape == (2, 10) and not torch.equal(tokens[0], tokens[1])
    losses = train_sft(policy, io, demos, config, log_every=0)
    assert len(losses) == 60 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


def test_smolvla_sft_keeps_the_vlm_frozen_reads_the_instruction_and_lowers_the_loss(tiny_demos, tmp_path):
    _, demos = tiny_demos
    config = MT10SFTConfig(
        policy_type="smolvla",
        tasks=TWO_TASKS,
        demonstrations_per_task=1,
        policy={"chunk_size": 4, "n_action_steps": 2, "num_steps": 2},
        train_steps=60,
        batch_size=32,
        lr=3e-3,
    )
    assert config.policy["max_state_dim"] == 40  # the SmolVLA defaults fill what was not given
    instructions = list(instructions_for(MT10).values())
    policy = make_sft_policy(config, None, 10, instructions, tmp_path / "vlm")
    # Stock `train_expert_only`: the whole VLM is frozen, only the action expert and projections train.
    assert policy.config.train_expert_only
    assert not any(p.requires_grad for p in policy.model.vlm_with_expert.vlm.parameters())
    assert any(p.requires_grad for p in policy.model.vlm_with_expert.lm_expert.parameters())
    # The VLM's vocabulary covers every MT10 instruction word.
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "vlm"))
    for text in instructions:
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text
    io = PolicyIO.for_policy(
        policy.config,
        mt10_env_config(task=TWO_TASKS),
        dataset_stats=dataset_stats(demos, config.state_std_floor),
    )
    raw = {
        "agent_pos": demos.states[:2].numpy(),
        "pixels": {"front": np.zeros((2, 16, 16, 3), np.uint8)},
    }
    observation = policy_observation(io, raw, [DESCRIPTIONS["reach-v3"], DESCRIPTIONS["drawer-close-v3"]])
    tokens = observation["observation.language.tokens"]
    assert not torch.equal(tokens[0], tokens[1])
    losses = train_sft(policy, io, demos, config, log_every=0)
    assert len(losses) == 60 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


STOCK_CLASSES = {"xvla": XVLAPolicy, "smolvla": SmolVLAPolicy}


def _provenance(policy_type: str) -> dict:
    return json.loads((SHIPPED_CHECKPOINTS[policy_type] / PROVENANCE_FILE).read_text())


def test_shipped_checkpoints_are_the_default_xvla_and_a_smolvla():
    assert list(SHIPPED_CHECKPOINTS) == ["xvla", "smolvla"]
    assert SHIPPED_CHECKPOINTS["xvla"] == SHIPPED_CHECKPOINT
    with pytest.raises(ValueError, match="policy_type='pi0' \\(accepted: xvla, smolvla\\)"):
        MT10SFTConfig(policy_type="pi0")


@pytest.mark.parametrize("policy_type", list(SHIPPED_CHECKPOINTS))
def test_shipped_checkpoint_loads_strictly_with_its_stock_class_and_processors_offline(policy_type):
    checkpoint = SHIPPED_CHECKPOINTS[policy_type]
    # The stock class from the checkpoint's own config (a SmolVLA's VLM folder resolved, as
    # `lerobot-pirl eval` passes it to lerobot-eval).
    policy = STOCK_CLASSES[policy_type].from_pretrained(
        str(checkpoint), config=load_policy_config(checkpoint), strict=True
    )
    assert policy.config.type == policy_type
    assert policy.config.input_features["observation.state"].shape == (STATE_DIM,)
    assert policy.config.output_features["action"].shape == (ACTION_DIM,)
    # The longest instruction fits whole (10 tokens; SmolVLA pads to its tiny config's 16).
    assert policy.config.tokenizer_max_length >= _provenance(policy_type)["language_length"] == 10
    if policy_type == "xvla":
        assert policy.config.tokenizer_max_length == 10
        assert policy.config.tokenizer_name == BUNDLED_TOKENIZER_DIR
    else:
        assert json.loads((checkpoint / "config.json").read_text())["vlm_model_name"] == BUNDLED_VLM_DIR
    size = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    assert size < 2 * 2**20, f"the shipped checkpoint is {size} bytes"
    for path in checkpoint.rglob("*.json"):
        assert "/tmp" not in path.read_text() and str(Path.home()) not in path.read_text(), path
    bundled = str((checkpoint / BUNDLED_TOKENIZER_DIR).resolve())
    preprocessor, postprocessor = make_pre_post_processors(
        policy.config,
        pretrained_path=str(checkpoint),
        preprocessor_overrides={"tokenizer_processor": {"tokenizer_name": bundled}},
    )
    from lerobot.envs.utils import preprocess_observation

    raw = {
        "agent_pos": np.zeros((10, STATE_DIM), np.float32),
        "pixels": {"front": np.zeros((10, 16, 16, 3), np.uint8)},
    }
    observation = preprocess_observation(raw)
    observation["task"] = [DESCRIPTIONS[task] for task in MT10]
    batch = preprocessor(observation)
    tokens = batch["observation.language.tokens"]
    tokenizer = AutoTokenizer.from_pretrained(bundled)
    assert all(tokenizer.unk_token_id not in row for row in tokens.tolist())
    assert len({tuple(row) for row in tokens.tolist()}) == 10
    # The normaliser carries the demonstrations' state stats (standardised zeros are not zeros).
    assert float(batch["observation.state"].abs().sum()) > 0
    with torch.no_grad():
        actions = postprocessor(policy.eval().predict_action_chunk(batch))
    assert actions.shape == (10, policy.config.chunk_size, ACTION_DIM) and torch.isfinite(actions).all()


@pytest.mark.parametrize("policy_type", list(SHIPPED_CHECKPOINTS))
def test_shipped_provenance_is_consistent(policy_type):
    provenance = _provenance(policy_type)
    config = MT10SFTConfig(**provenance["sft_config"])
    assert config == MT10SFTConfig(policy_type=policy_type), "built with non-default settings"
    assert provenance["tasks"] == MT10
    assert provenance["demonstrations"]["kept_per_task"] == dict.fromkeys(
        MT10, config.demonstrations_per_task
    )
    evaluation, swapped = provenance["evaluation"], provenance["swapped_instruction_evaluation"]
    assert evaluation["sampler"] == "deterministic" and evaluation["episodes_per_task"] >= 50
    for result in (evaluation, swapped):
        assert list(result["per_task"]) == MT10
        assert result["mean"] == pytest.approx(sum(result["per_task"].values()) / 10)
        # Rates are counts over the episodes of each task.
        for rate in result["per_task"].values():
            assert (rate * evaluation["episodes_per_task"]) == pytest.approx(
                round(rate * evaluation["episodes_per_task"])
            )
    assert 0.0 < evaluation["mean"] <= 0.50  # a few-shot SFT: room for RL
    assert swapped["mean"] < evaluation["mean"] - 0.1  # the instruction matters
    for seeds in provenance["demonstrations"]["reset_seeds"].values():
        assert all(seed < EVAL_SEED_OFFSET for seed in seeds)
