"""The policy comes from its checkpoint (``--policy.path`` or ``policy.pretrained_path`` alone), as
LeRobot's ``--policy.path`` has it; a contradicting policy block, a missing checkpoint and a taken
output folder are refused with the fields named; a failed start's leftovers block nothing; the
random checkpoint command builds an XVLA shaped for an env that stock LeRobot loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.configs import free_port, write_json
from lerobot.envs.factory import make_env
from lerobot.policies.factory import make_pre_post_processors
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

from lerobot_pirl.envs.arrange_boxes import ArrangeBoxesEnvConfig
from lerobot_pirl.recipes.registry import installed
from lerobot_pirl.runtime import seam
from lerobot_pirl.runtime.cli import select_recipe
from lerobot_pirl.runtime.random_checkpoint import RandomCheckpointError, random_checkpoint
from lerobot_pirl.tasks.pick_cube.configs import pretrained_pi_rl_config
from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT


@pytest.fixture(scope="module")
def boxes_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny XVLA for pirl_arrange_boxes: 7-D action, unlike the shipped 4-D one."""
    return random_checkpoint(ArrangeBoxesEnvConfig(), tmp_path_factory.mktemp("ckpt") / "boxes", seed=3)


def _parse(tmp_path: Path, data: dict, *extra: str) -> seam.RecipeTrainConfig:
    path = write_json(tmp_path / "train_config.json", data)
    _, args = select_recipe([f"--config_path={path}", *extra], installed())
    return seam.parse_train_config(args)


def _config(tmp_path: Path, policy: dict) -> dict:
    return {
        "output_dir": str(tmp_path / "out"),
        "recipe": "pi-rl",
        "policy": policy,
        "algorithm": {"learner_port": free_port()},
        "env": {"type": "pirl_arrange_boxes"},
    }


def test_pretrained_path_alone_builds_the_checkpoints_own_policy(
    tmp_path: Path, boxes_checkpoint: Path
) -> None:
    cfg = _parse(tmp_path, _config(tmp_path, {"type": "xvla", "pretrained_path": str(boxes_checkpoint)}))
    saved = json.loads((boxes_checkpoint / "config.json").read_text())
    assert Path(cfg.policy.pretrained_path) == boxes_checkpoint
    assert cfg.policy.output_features["action"].shape == (7,)  # XVLAConfig's default would not know
    assert cfg.policy.hidden_size == saved["hidden_size"] == 64
    assert cfg.policy.resize_imgs_with_padding == (32, 32)
    cfg.validate()  # LeRobot's validate keeps it (no second resolution from sys.argv)
    assert cfg.policy.output_features["action"].shape == (7,)


def test_policy_path_with_overrides_is_lerobots_route(tmp_path: Path, boxes_checkpoint: Path) -> None:
    data = _config(tmp_path, {"type": "xvla"})
    del data["policy"]
    cfg = _parse(tmp_path, data, f"--policy.path={boxes_checkpoint}", "--policy.n_action_steps=3")
    assert Path(cfg.policy.pretrained_path) == boxes_checkpoint
    assert cfg.policy.n_action_steps == 3 and cfg.policy.output_features["action"].shape == (7,)


def test_a_block_of_another_architecture_is_refused_naming_the_fields(
    tmp_path: Path, boxes_checkpoint: Path
) -> None:
    # The README's trap: the demo's config (the shipped 21-D state, 4-D action XVLA) with only
    # pretrained_path pointed at another checkpoint.
    demo = pretrained_pi_rl_config(SHIPPED_CHECKPOINT, tmp_path / "out", free_port())
    demo["policy"]["pretrained_path"] = str(boxes_checkpoint)
    demo["env"] = {"type": "pirl_arrange_boxes"}
    with pytest.raises(seam.InvalidConfigError) as refused:
        _parse(tmp_path, demo)
    message = str(refused.value)
    assert "contradicts the checkpoint policy.pretrained_path=" in message and "\n" not in message
    named = message.split(" in ", 1)[1].split(":")[0].split(", ")
    assert {"output_features", "resize_imgs_with_padding"} <= set(named)  # 7-D action, resized images
    assert "device" not in named and "push_to_hub" not in named  # deployment fields may differ
    assert not (tmp_path / "out").exists()  # refused before anything starts


def test_a_block_that_repeats_the_checkpoint_and_sets_where_it_runs_is_accepted(tmp_path: Path) -> None:
    demo = pretrained_pi_rl_config(SHIPPED_CHECKPOINT, tmp_path / "out", free_port())
    demo["policy"]["repo_id"] = "me/fine-tuned"
    cfg = _parse(tmp_path, demo)
    assert cfg.policy.repo_id == "me/fine-tuned" and cfg.policy.push_to_hub is False
    assert Path(cfg.policy.pretrained_path) == SHIPPED_CHECKPOINT


def test_a_pretrained_path_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        seam.InvalidConfigError, match=r"policy.pretrained_path=.*missing is not a policy checkpoint"
    ):
        _parse(tmp_path, _config(tmp_path, {"type": "xvla", "pretrained_path": str(tmp_path / "missing")}))


def test_a_failed_starts_leftovers_block_nothing_but_checkpoints_need_resume(tmp_path: Path) -> None:
    data = _config(tmp_path, {"type": "xvla", "pretrained_path": str(SHIPPED_CHECKPOINT)})
    data["env"] = {"type": "pirl_pick_cube"}
    (tmp_path / "out" / "logs").mkdir(parents=True)  # what a learner that died at start-up leaves
    cfg = _parse(tmp_path, data)
    cfg.validate()
    assert cfg.output_dir == tmp_path / "out"
    (tmp_path / "out" / "checkpoints" / "000004").mkdir(parents=True)
    with pytest.raises(seam.InvalidConfigError, match=r"checkpoints \(last at step 4\).*set resume=true"):
        _parse(tmp_path, data).validate()


def test_random_checkpoint_loads_with_stock_lerobot_and_acts_in_its_env(boxes_checkpoint: Path) -> None:
    policy = XVLAPolicy.from_pretrained(str(boxes_checkpoint), strict=True)
    preprocessor, postprocessor = make_pre_post_processors(
        policy.config, pretrained_path=str(boxes_checkpoint)
    )
    env = make_env(ArrangeBoxesEnvConfig(), n_envs=1)["pirl_arrange_boxes"][0]
    try:
        raw, _ = env.reset(seed=[0])
        observation = {
            "observation.state": torch.as_tensor(raw["agent_pos"], dtype=torch.float32),
            "observation.images.front": torch.as_tensor(raw["pixels"]["front"]).permute(0, 3, 1, 2).float()
            / 255,
            "task": ["arrange the boxes"],
        }
        with torch.no_grad():
            action = postprocessor(policy.select_action(preprocessor(observation)))
        _, reward, *_ = env.step(action.numpy())
    finally:
        env.close()
    assert action.shape == (1, 7) and np.isfinite(reward).all()
    card = (boxes_checkpoint / "README.md").read_text()
    assert "pirl_arrange_boxes" in card and "7-D" in card


def test_random_checkpoint_refuses_an_env_without_a_camera(tmp_path: Path) -> None:
    from lerobot.envs.configs import PushtEnv

    with pytest.raises(RandomCheckpointError, match="XVLA reads at least one camera"):
        random_checkpoint(PushtEnv(obs_type="environment_state_agent_pos"), tmp_path / "x")
    assert not (tmp_path / "x").exists()
