"""The πRL learner on torch.distributed: detection, start-up errors, and 2 gloo ranks = 1 process.

Equivalence (2 gloo ranks launched by torchrun vs this process, same rollouts and seed):

* every rank ends each update with bitwise the same parameters, heads and optimizer state (DDP's
  all-reduce hands every rank the same sum);
* against one process, parameters agree to 5e-6 (absolute; they are O(0.01–1) and move by up to
  lr = 1e-3 per AdamW step) and the logged metrics to 1e-5 relative. Not bitwise: the all-reduce
  adds the two ranks' gradients in another order than one backward over the whole minibatch, and
  a forward over 2 rows rounds differently from one over 4 (other matmul blocking); float32 keeps
  ~1e-7 relative per operation, and a few AdamW steps carry that into the parameters.
* one exception: the attention **key** bias. Its true gradient is exactly zero (a softmax does not
  change when every score of a query shifts by q·b_k), so what both runs compute is rounding noise,
  which AdamW normalises into steps of up to lr. It is only checked against that bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lerobot_pirl.runtime import distributed

TESTS = Path(__file__).resolve().parents[1]
PARAM_ATOL = 5e-6
METRIC_RTOL, METRIC_ATOL = 1e-5, 1e-6
LR = 1e-3  # helpers.pi_rl_decisions.make_recipe's actor_lr
COUNTS = ("minibatch_steps", "stopped_early", "skipped_nonfinite_steps", "critic_warmup")


# ----------------------------------------------------------------------------- detection & errors


def test_a_plain_launch_is_not_distributed() -> None:
    assert distributed.detect({}) is None
    assert distributed.detect({"LOCAL_RANK": "0"}) is None  # only RANK/WORLD_SIZE decide


def test_torchruns_variables_give_the_rank() -> None:
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    launch = distributed.detect(env)
    assert launch == distributed.Launch(rank=1, world_size=2, local_rank=1, local_world_size=2)
    assert not launch.is_main and launch.label == "rank 1/2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK, MASTER_ADDR, MASTER_PORT is not"),
        (
            {"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
            "RANK='x' is not an integer",
        ),
        (
            {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
            "RANK=2 must be in [0, WORLD_SIZE=2)",
        ),
    ],
)
def test_inconsistent_variables_are_refused_before_anything_starts(env: dict, message: str) -> None:
    with pytest.raises(distributed.DistributedLaunchError) as error:
        distributed.detect(env)
    assert message in str(error.value)


def test_check_launch_names_every_problem() -> None:
    from types import SimpleNamespace

    from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
    from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe
    from lerobot_pirl.recipes.sac import SACRecipe

    launch = distributed.Launch(rank=0, world_size=8, local_rank=3, local_world_size=8)
    cfg = SimpleNamespace(algorithm=PiRLConfig(minibatch_size=4), policy=SimpleNamespace(device="cuda"))
    with pytest.raises(distributed.DistributedLaunchError) as error:
        distributed.check_launch(launch, cfg, PiRLRecipe)
    text = str(error.value)
    assert "minibatch_size=4 is smaller than the 8 ranks" in text
    if torch.cuda.device_count() <= 3:
        assert "LOCAL_RANK=3, but this machine has" in text
    cfg = SimpleNamespace(algorithm=PiRLConfig(minibatch_size=8), policy=SimpleNamespace(device="cpu"))
    distributed.check_launch(launch, cfg, PiRLRecipe)  # fine
    with pytest.raises(distributed.DistributedLaunchError, match="no data-parallel update"):
        distributed.check_launch(launch, cfg, SACRecipe)


def test_torchrun_with_a_recipe_of_lerobots_own_loop_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers.configs import free_port, sac_learner_config, write_json

    from lerobot_pirl.runtime.learner import main

    for name, value in {
        "RANK": "0",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "1",
    }.items():
        monkeypatch.setenv(name, value)
    config = write_json(tmp_path / "sac.json", sac_learner_config(tmp_path / "out", free_port()))
    assert main([f"--config_path={config}"]) == 2
    assert "recipe 'sac' runs in LeRobot's own learner loop, which has no multi-rank mode" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


def test_a_bad_collective_timeout_is_refused_with_the_field_named() -> None:
    from lerobot_pirl.recipes.pi_rl.config import PiRLConfig

    with pytest.raises(ValueError, match=r"distributed_timeout_s=0 \(must be > 0 s\)"):
        PiRLConfig(distributed_timeout_s=0).validate()


def test_default_threads_are_shared_out_among_a_nodes_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    from lerobot_pirl.runtime.cli import default_torch_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_torch_threads() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert default_torch_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_torch_threads() == 1


def test_one_rank_under_ddp_updates_exactly_like_no_ddp(tmp_path: Path) -> None:
    """World size 1 (``torchrun --nproc_per_node=1``): DDP's all-reduce of one rank is the identity,
    so the update is bitwise the plain one."""
    import torch.distributed as dist
    from helpers.data_parallel_updates import build, run_updates

    plain, actor = build("flow_noise", {}, None)
    expected = run_updates(plain, actor, range(2))
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        recipe, actor = build("flow_noise", {}, None)
        recipe.enable_data_parallel(dist.group.WORLD)
        got = run_updates(recipe, actor, range(2))
    finally:
        dist.destroy_process_group()
    for want, have in zip(expected, got, strict=True):
        assert want["metrics"] == pytest.approx(have["metrics"], nan_ok=True, rel=0, abs=0)
        for key, value in want["state"]["policy"].items():
            assert torch.equal(value, have["state"]["policy"][key]), key


# ----------------------------------------------------------------------------- 2 ranks vs 1 process


def _torchrun(out: Path, *args: str, timeout: float = 240) -> list[list[dict]]:
    """Two gloo ranks of `helpers.data_parallel_updates`; returns each rank's results."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "helpers.data_parallel_updates", f"--out={out}", *args],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def _assert_ranks_identical(ranks: list[list[dict]]) -> None:
    for first, second in zip(*ranks, strict=True):
        for part in ("policy", "recipe"):
            for key, value in first["state"][part].items():
                other = second["state"][part][key]
                if key == "counters":  # [version, received, dropped, consumed]: only rank 0 receives
                    value, other = value[:1], other[:1]
                assert torch.equal(value, other), (part, key)
        for one, two in zip(
            first["state"]["optimizer"]["state"].values(),
            second["state"]["optimizer"]["state"].values(),
            strict=True,
        ):
            assert all(torch.equal(one[k], two[k]) for k in one)


def _key_bias_slice(key: str, value: torch.Tensor) -> slice | None:
    if key.endswith("attn.qkv.bias"):
        hidden = value.shape[0] // 3
        return slice(hidden, 2 * hidden)
    return None


def _assert_same_update(single: dict, ranked: dict, optimizer_steps: int) -> None:
    for key, want in single["state"]["policy"].items():
        have = ranked["state"]["policy"][key]
        difference = (want.float() - have.float()).abs()
        noise = _key_bias_slice(key, want)
        if noise is not None:  # rounding noise through AdamW: bounded by its step size
            assert float(difference[noise].max()) <= 4 * LR * optimizer_steps, key
            difference[noise] = 0
        assert float(difference.max()) <= PARAM_ATOL, (key, float(difference.max()))
    for key, want in single["state"]["recipe"].items():
        if key.startswith("heads."):
            assert torch.allclose(want.float(), ranked["state"]["recipe"][key].float(), atol=PARAM_ATOL), key
        else:  # counters (rank 0 counted what it received) and the minibatch generator
            assert torch.equal(want, ranked["state"]["recipe"][key]), key
    for key in COUNTS:
        assert single["metrics"][key] == ranked["metrics"][key], key
    assert single["metrics"] == pytest.approx(
        ranked["metrics"], rel=METRIC_RTOL, abs=METRIC_ATOL, nan_ok=True
    )


@pytest.mark.integration
@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    ("noise_method", "lengths", "fields"),
    [
        # 9 decisions in minibatches of 4: the last minibatch has 1 row, rank 1 none (weight 0).
        pytest.param("flow_noise", "4,5", [], id="flow_noise-short-last-minibatch"),
        # Equal shares; the explained variance is defined (no 1-row minibatch); KL early stop.
        pytest.param("flow_sde", "4,4", ["--update_epochs=4", "--target_kl=0.3"], id="flow_sde-target_kl"),
    ],
)
def test_two_gloo_ranks_update_like_one_process(
    tmp_path: Path, noise_method: str, lengths: str, fields: list[str]
) -> None:
    from helpers.data_parallel_updates import build, run_updates

    overrides = {field.removeprefix("--").split("=")[0]: float(field.split("=")[1]) for field in fields}
    overrides = {k: int(v) if k == "update_epochs" else v for k, v in overrides.items()}
    episode_lengths = tuple(int(n) for n in lengths.split(","))
    recipe, actor = build(noise_method, overrides, None)
    single = run_updates(recipe, actor, range(2), lengths=episode_lengths)

    ranks = _torchrun(tmp_path / "ranks", f"--noise_method={noise_method}", f"--lengths={lengths}", *fields)
    _assert_ranks_identical(ranks)
    steps = 0
    for update in range(2):
        steps += int(single[update]["metrics"]["minibatch_steps"])
        _assert_same_update(single[update], ranks[0][update], steps)
    if noise_method == "flow_sde":
        stopped = [single[u]["metrics"]["stopped_early"] for u in range(2)]
        assert 1.0 in stopped, "target_kl never stopped an update early: the test lost its point"
        assert all(r["metrics"]["explained_variance"] == r["metrics"]["explained_variance"] for r in single)


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_state_saved_by_either_learner_resumes_in_the_other(tmp_path: Path) -> None:
    """Update 0 by one process → update 1 by two ranks, and update 0 by two ranks → update 1 by one
    process: both equal one process doing both (what a checkpoint holds of the recipe: policy,
    heads, counters, minibatch generator, AdamW moments)."""
    from helpers.data_parallel_updates import build, run_updates

    recipe, actor = build("flow_noise", {}, None)
    single = run_updates(recipe, actor, range(2))
    state_file = tmp_path / "single_update0.pt"
    torch.save(single[0]["state"], state_file)
    steps = int(single[0]["metrics"]["minibatch_steps"] + single[1]["metrics"]["minibatch_steps"])

    # 1 process → 2 ranks.
    ranks = _torchrun(tmp_path / "resumed", "--noise_method=flow_noise", f"--load={state_file}", "--first=1")
    _assert_ranks_identical(ranks)
    _assert_same_update(single[1], ranks[0][0], steps)

    # 2 ranks → 1 process.
    two = _torchrun(tmp_path / "fresh", "--noise_method=flow_noise", "--last=0")
    resumed, actor = build("flow_noise", {}, two[0][0]["state"])
    _assert_same_update(single[1], run_updates(resumed, actor, range(1, 2))[0], steps)
