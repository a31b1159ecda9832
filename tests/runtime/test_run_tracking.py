"""Run tracking as LeRobot users turn it on: ``wandb.enable=true`` (offline here), through LeRobot's
own ``WandBLogger``, with its learner's step keys."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.configs import free_port, write_json
from helpers.learner_process import checkpoint_steps, train_with_one_actor

from lerobot_pirl.runtime.cli import RecipeSelectionError, require_tracking
from lerobot_pirl.tasks.pick_cube.configs import pretrained_pi_rl_config
from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT


def _config(tmp_path: Path, **wandb: object) -> tuple[Path, Path]:
    output_dir = tmp_path / "out"
    data = pretrained_pi_rl_config(
        SHIPPED_CHECKPOINT,
        output_dir,
        free_port(),
        env={"episode_length": 10, "physics_dt": 0.005},
        rollout_decisions=8,
        minibatch_size=4,
        update_epochs=1,
        envs_per_actor=2,
        max_updates=1000,
    )
    data["wandb"] = {"enable": True, "project": "lerobot-pirl-test", **wandb}
    return write_json(tmp_path / "train_config.json", data), output_dir


def _logged_records(run_file: Path) -> list[dict]:
    """The history rows of an offline W&B run, read with wandb's own record reader."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    store = datastore.DataStore()
    store.open_for_scan(str(run_file))
    rows = []
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pi-rl learner and actor from the shipped checkpoint, W&B offline, until two updates."""
    tmp_path = tmp_path_factory.mktemp("tracked")
    config, output_dir = _config(tmp_path, mode="offline")

    def trained(learner_log: str, actor_log: str) -> bool:
        return 2 in checkpoint_steps(output_dir)

    train_with_one_actor(config, tmp_path, trained, "two pi-rl updates", env={"WANDB_MODE": "offline"})
    return output_dir


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_pi_rl_run_logs_lerobots_keys_to_an_offline_wandb_run(tracked_run: Path) -> None:
    [run_file] = (tracked_run / "wandb").glob("offline-run-*/run-*.wandb")
    rows = _logged_records(run_file)
    updates = [row for row in rows if "train/Optimization step" in row]
    episodes = [row for row in rows if "train/Interaction step" in row]
    assert [row["train/Optimization step"] for row in updates][:2] == [1, 2]
    for key in (
        "loss_actor",
        "loss_value",
        "approx_kl",
        "clip_frac",
        "explained_variance",
        "env_steps_total",
    ):
        assert all(f"train/{key}" in row for row in updates), key
    # Each actor episode as LeRobot's learner logs its actors' messages.
    assert episodes and all("train/Episodic reward" in row and "train/success" in row for row in episodes)
    # What the metrics file says for update 1 is what W&B got.
    first = json.loads((tracked_run / "logs" / "metrics.jsonl").read_text().splitlines()[0])
    assert updates[0]["train/loss_actor"] == pytest.approx(first["loss_actor"], rel=1e-6)


PUSHED = ("*.safetensors", "*.json", "*.yaml", "*.md")
"""The file patterns LeRobot's ``PreTrainedPolicy.push_model_to_hub`` uploads."""


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_checkpoint_holds_what_lerobots_push_to_hub_uploads_with_a_model_card(tracked_run: Path) -> None:
    from lerobot.configs.policies import PreTrainedConfig

    pretrained = tracked_run / "checkpoints" / "000002" / "pretrained_model"
    names = {path.name for path in pretrained.iterdir() if path.is_file()}
    for required in (
        "config.json",
        "model.safetensors",
        "train_config.json",
        "policy_preprocessor.json",
        "policy_postprocessor.json",
        "README.md",
    ):
        assert required in names, required
    uploaded = {n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in PUSHED)}
    assert uploaded == names  # nothing the checkpoint needs is left behind by the upload filter
    assert PreTrainedConfig.from_pretrained(str(pretrained)).type == "xvla"
    card = (pretrained / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: lerobot" in card  # Hub metadata header
    assert "pi-rl" in card and "lerobot-pirl" in card
    assert f"Base checkpoint: `{SHIPPED_CHECKPOINT}`" in card
    update_2 = json.loads((tracked_run / "logs" / "metrics.jsonl").read_text().splitlines()[1])
    assert f"update 2: {update_2['success_rate']:.2f}" in card
    assert f"env steps: {int(update_2['env_steps_total'])}" in card


@pytest.mark.integration
def test_wandb_enabled_without_the_package_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    config, _ = _config(tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if `pip install lerobot-pirl[wandb]` never ran

    class Cfg:
        class wandb:  # noqa: N801
            enable, project = True, "p"

    with pytest.raises(RecipeSelectionError, match=r"pip install 'lerobot-pirl\[wandb\]'"):
        require_tracking(Cfg)
    done = subprocess.run(
        [sys.executable, "-m", "lerobot_pirl.runtime.learner", f"--config_path={config}"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(_blocker(tmp_path))},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert re.search(r"error: wandb.enable=true needs Weights & Biases: pip install", done.stderr)
    assert "Traceback" not in done.stderr


def _blocker(tmp_path: Path) -> Path:
    """A sitecustomize that makes ``import wandb`` fail in a child process."""
    folder = tmp_path / "no_wandb"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    return folder
