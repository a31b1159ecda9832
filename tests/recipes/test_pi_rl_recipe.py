"""The pi-rl recipe: optimizers, rollout assembly, updates, and exact resume."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.pi_rl_decisions import make_recipe, record_episode
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.gaussian_actor.configuration_gaussian_actor import GaussianActorConfig
from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe, PolicyNotSupportedError

STATE_DIM, ACTION_DIM = 3, 2


def states(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, STATE_DIM, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def feed(recipe: PiRLRecipe, seed: int) -> list:
    """Two actors' episodes, interleaved and out of order, 8 decisions in all."""
    a = record_episode(recipe, states(4, seed), actor_id=0, episode_id=seed, seed=seed)
    b = record_episode(
        recipe, states(4, seed + 100), actor_id=1, episode_id=seed, terminated=False, seed=seed + 1
    )
    transitions = [b[2], a[0], a[3], b[0], a[1], b[3], a[2], b[1]]
    for transition in transitions:
        recipe.accept(transition)
    return transitions


def test_pi_rl_rejects_a_policy_it_cannot_train() -> None:
    config = GaussianActorConfig(
        input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(2,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
    )
    with pytest.raises(PolicyNotSupportedError, match="policy.type is 'gaussian_actor'. Use recipe=sac"):
        PiRLRecipe(GaussianActorPolicy(config), PiRLConfig())


def test_config_errors_name_field_value_and_accepted_values() -> None:
    with pytest.raises(ValueError) as err:
        PiRLConfig(
            noise_method="flow_magic", num_steps=0, noise_std_min=0.2, noise_std_max=0.1, actor_lr=-1.0
        ).validate()
    message = str(err.value)
    assert "noise_method='flow_magic' (accepted: flow_sde, flow_noise)" in message
    assert "num_steps=0" in message and "noise_std_min=0.2, noise_std_max=0.1" in message
    assert "actor_lr=-1.0 (must be ≥ 0)" in message


def test_optimizer_has_one_group_per_part_with_its_own_lr() -> None:
    recipe = make_recipe("flow_noise", actor_lr=1e-5, value_lr=2e-4, noise_lr=3e-4)
    groups = {g["name"]: g for g in recipe.optimizer.param_groups}
    assert {name: g["lr"] for name, g in groups.items()} == {
        "actor": 1e-5,
        "value_head": 2e-4,
        "noise_head": 3e-4,
    }
    actor_ids = {id(p) for p in groups["actor"]["params"]}
    assert not actor_ids & {id(p) for p in recipe.policy.model.vlm.parameters()}  # VLM frozen
    assert actor_ids == {id(p) for p in recipe.policy.parameters() if p.requires_grad}
    assert groups["actor"]["betas"] == (0.9, 0.95) and groups["actor"]["weight_decay"] == 0.01
    assert "noise_head" not in {g["name"] for g in make_recipe("flow_sde").optimizer.param_groups}


def test_interleaved_actor_episodes_are_grouped_in_order() -> None:
    recipe = make_recipe()
    feed(recipe, seed=1)
    assert recipe.rollout_ready()
    rollout = recipe.take_rollout()
    assert [(d.actor_id, d.decision_index) for d in rollout.decisions] == [(0, i) for i in range(4)] + [
        (1, i) for i in range(4)
    ]
    assert rollout.segment_end.tolist() == [False, False, False, True] * 2
    assert rollout.terminated.tolist() == [False, False, False, True] + [False] * 4
    assert rollout.truncated.tolist() == [False] * 7 + [True]
    assert not recipe.rollout_ready() and recipe.assembler.pending() == 0  # consumed, then discarded


def test_stale_decisions_are_dropped_and_counted() -> None:
    recipe = make_recipe(max_policy_staleness=1)
    recipe.assembler.policy_version = 5
    for version, episode in ((5, 0), (4, 1), (3, 2)):
        for t in record_episode(
            recipe, states(2, episode), actor_id=0, episode_id=episode, policy_version=version
        ):
            recipe.accept(t)
    assert (recipe.assembler.received, recipe.assembler.dropped_stale, recipe.assembler.pending()) == (
        6,
        2,
        4,
    )
    recipe.assembler.advance_policy_version()  # version 6: the version-4 episode is now too old
    assert (recipe.assembler.dropped_stale, recipe.assembler.pending()) == (4, 2)


@pytest.mark.parametrize("noise_method", ["flow_noise", "flow_sde"])
def test_update_trains_xvla_and_reports_the_recipe_metrics(noise_method: str, device: str) -> None:
    recipe = make_recipe(noise_method, device=device)
    before = copy.deepcopy(recipe.policy.state_dict())
    heads_before = copy.deepcopy(recipe.heads.state_dict())
    feed(recipe, seed=1)
    metrics = recipe.update_step(iter([recipe.take_rollout()]), step=0)
    changed = [k for k, v in recipe.policy.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("model.transformer") for k in changed)
    assert not any(k.startswith("model.vlm") for k in changed)  # frozen
    assert any(not torch.equal(v, heads_before[k]) for k, v in recipe.heads.state_dict().items())
    for key in (
        "loss_actor",
        "loss_value",
        "loss_entropy",
        "approx_kl",
        "clip_frac",
        "ratio_mean",
        "explained_variance",
        "entropy",
        "pi_rl_grad_norm",
        "lr_actor",
        "lr_value_head",
    ):
        assert key in metrics, key
    assert metrics["rollout_decisions"] == 8 and metrics["policy_version"] == 1
    assert metrics["decisions_consumed_total"] == 8 and metrics["dropped_stale_total"] == 0
    # The first minibatch of the first epoch sees ratio 1 exactly; later ones have moved.
    assert metrics["approx_kl"] > 0


def _snapshot(recipe: PiRLRecipe) -> dict:
    return {
        "policy": copy.deepcopy(recipe.policy.state_dict()),
        "recipe": copy.deepcopy(recipe.state_dict()),
        "optimizer": copy.deepcopy(recipe.optimizer.state_dict()),
    }


def test_resumed_recipe_makes_the_same_next_update_bitwise() -> None:
    uninterrupted = make_recipe("flow_noise")
    feed(uninterrupted, seed=1)
    uninterrupted.update_step(iter([uninterrupted.take_rollout()]), step=0)
    saved = _snapshot(uninterrupted)
    transitions_2 = feed(uninterrupted, seed=2)
    expected_metrics = uninterrupted.update_step(iter([uninterrupted.take_rollout()]), step=1)

    resumed = make_recipe("flow_noise", seed=123)  # different init: everything must come from the save
    resumed.policy.load_state_dict(saved["policy"])
    resumed.load_state_dict(saved["recipe"], device="cpu")
    resumed.optimizer.load_state_dict(saved["optimizer"])
    for transition in transitions_2:
        resumed.accept(transition)
    metrics = resumed.update_step(iter([resumed.take_rollout()]), step=1)

    assert metrics == expected_metrics
    for key, value in uninterrupted.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[key]), key
    for key, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_resume_through_lerobot_checkpoint_files_is_exact(tmp_path) -> None:
    """save_run_checkpoint → restore_checkpoint (LeRobot's layout) → the same next update."""
    from helpers.configs import free_port, pi_rl_learner_config, write_json
    from lerobot.utils.constants import CHECKPOINTS_DIR, LAST_CHECKPOINT_LINK, PRETRAINED_MODEL_DIR

    from lerobot_pirl import discover
    from lerobot_pirl.runtime import seam
    from lerobot_pirl.runtime.algorithm_adapter import algorithm_class
    from lerobot_pirl.runtime.cli import select_recipe
    from lerobot_pirl.runtime.on_policy_learner import (
        CheckpointError,
        restore_checkpoint,
        save_run_checkpoint,
    )

    data = pi_rl_learner_config(tmp_path / "out", free_port())
    _, args = select_recipe([f"--config_path={write_json(tmp_path / 'c.json', data)}"], discover(blocked=()))
    cfg = seam.parse_train_config(args)
    cfg.validate()
    algo_cls = algorithm_class(discover(blocked=()).resolve("pi-rl"))

    def build(policy):
        algorithm = algo_cls(policy=policy, config=cfg.algorithm)
        return algorithm, algorithm.make_optimizers_and_scheduler()

    torch.manual_seed(0)
    run, run_optimizers = build(XVLAPolicy(cfg.policy))
    for t in feed_list(run.recipe, seed=1):
        run.recipe.accept(t)
    log = run.update(iter([run.recipe.take_rollout()])).to_log_dict()
    from lerobot_pirl.runtime.processors import PolicyIO

    io = PolicyIO.for_policy(cfg.policy, cfg.env)
    save_run_checkpoint(cfg, run.optimization_step, run.policy, run_optimizers, run, log, io=io)
    checkpoint = tmp_path / "out" / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK
    transitions_2 = feed_list(run.recipe, seed=2)
    for t in transitions_2:
        run.recipe.accept(t)
    expected = run.update(iter([run.recipe.take_rollout()])).to_log_dict()

    torch.manual_seed(99)  # a different RNG state and init: everything must come from the files
    resumed, resumed_optimizers = build(XVLAPolicy.from_pretrained(checkpoint / PRETRAINED_MODEL_DIR))
    assert restore_checkpoint(checkpoint, resumed_optimizers, resumed) == 1
    for t in transitions_2:
        resumed.recipe.accept(t)
    assert resumed.update(iter([resumed.recipe.take_rollout()])).to_log_dict() == expected
    for key, value in run.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[key]), key

    (checkpoint / "algorithm" / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="cannot be restored"):
        restore_checkpoint(checkpoint, resumed_optimizers, resumed)
    (checkpoint / "algorithm" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"is incomplete: missing \['algorithm/model.safetensors'\]"):
        restore_checkpoint(checkpoint, resumed_optimizers, resumed)


def feed_list(recipe: PiRLRecipe, seed: int) -> list:
    a = record_episode(recipe, states(4, seed), actor_id=0, episode_id=seed, seed=seed)
    b = record_episode(recipe, states(4, seed + 100), actor_id=1, episode_id=seed, seed=seed + 1)
    return [*a, *b]


@pytest.mark.integration
def test_executed_steps_longer_than_the_chunk_fails_before_training(tmp_path) -> None:
    from helpers.configs import free_port, pi_rl_learner_config, write_json
    from helpers.learner_process import run_shim

    data = pi_rl_learner_config(tmp_path / "out", free_port(), executed_steps=9)
    path = write_json(tmp_path / "c.json", data)
    result = run_shim("lerobot_pirl.runtime.learner", path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "recipe 'pi-rl' cannot start" in result.stderr
    assert "executed_steps=9 (must be in [1, chunk_size=4])" in result.stderr
    assert "Traceback" not in result.stderr.split("cannot start")[-1]


def test_non_finite_loss_skips_the_step_and_leaves_parameters_untouched() -> None:
    recipe = make_recipe("flow_sde")
    feed(recipe, seed=1)
    rollout = recipe.take_rollout()
    rollout.decisions[0].old_token_log_prob = torch.tensor(
        [float("nan"), 0.0]
    )  # poisons every minibatch that contains it
    recipe.config.minibatch_size = 8  # one minibatch per epoch: every step sees the NaN
    before = copy.deepcopy(recipe.policy.state_dict())
    optimizer_before = copy.deepcopy(recipe.optimizer.state_dict())
    metrics = recipe.update_step(iter([rollout]), step=0)
    assert metrics["skipped_nonfinite_steps"] == 2  # 2 epochs × 1 minibatch
    assert all(torch.equal(v, before[k]) for k, v in recipe.policy.state_dict().items())
    assert recipe.optimizer.state_dict()["state"] == optimizer_before["state"]


def test_two_seeded_runs_give_identical_update_metrics() -> None:
    def run() -> list[dict]:
        recipe = make_recipe("flow_noise", seed=0)
        out = []
        for update in range(3):
            torch.manual_seed(100 + update)  # the actor's sampling RNG
            feed(recipe, seed=update)
            out.append(recipe.update_step(iter([recipe.take_rollout()]), step=update))
        return out

    assert run() == run()


def test_value_input_statistics_merge_like_one_pass_over_all_rows() -> None:
    from lerobot_pirl.policies import PiRLHeads

    heads = PiRLHeads(vlm_dim=2, proprio_dim=3, token_dim=4, action_dim=2, noise_head=False)
    rows = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([5.0, 0.1, 1.0]) + 2
    raw = rows[:4].clone()
    assert torch.equal(heads.normalized_state(raw), raw)  # identity before any statistics
    for part in (rows[:7], rows[7:30], rows[30:]):  # uneven batches: Chan's merge must be exact
        heads.observe_state(part)
    assert heads.state_count.item() == 50
    torch.testing.assert_close(heads.state_mean, rows.mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(heads.state_var, rows.var(0, unbiased=False), rtol=1e-5, atol=1e-6)
    expected = (raw - rows.mean(0)) / rows.var(0, unbiased=False).sqrt()
    torch.testing.assert_close(heads.normalized_state(raw), expected, rtol=1e-4, atol=1e-4)
    # The statistics are part of the heads' state: pushed to actors and checkpointed with them.
    assert {"state_mean", "state_var", "state_count"} <= set(heads.state_dict())


def test_update_feeds_rollout_states_to_the_value_statistics_only_when_enabled() -> None:
    on, off = make_recipe("flow_sde"), make_recipe("flow_sde", normalize_value_input=False)
    for recipe in (on, off):
        feed(recipe, seed=1)
        recipe.update_step(iter([recipe.take_rollout()]), step=0)
    assert on.heads.state_count.item() == 8 and off.heads.state_count.item() == 0


def test_critic_warmup_trains_only_the_value_head_then_restores_the_actor_lr() -> None:
    recipe = make_recipe("flow_noise", critic_warmup_updates=1, actor_lr=1e-3, noise_lr=2e-3)
    policy_before = copy.deepcopy(recipe.policy.state_dict())
    noise_before = copy.deepcopy(recipe.heads.noise_head.state_dict())
    value_before = copy.deepcopy(recipe.heads.value_head.state_dict())
    feed(recipe, seed=1)
    warm = recipe.update_step(iter([recipe.take_rollout()]), step=0)
    assert warm["critic_warmup"] == 1.0 and warm["lr_actor"] == 0.0 and warm["lr_noise_head"] == 0.0
    assert all(torch.equal(v, policy_before[k]) for k, v in recipe.policy.state_dict().items())
    assert all(torch.equal(v, noise_before[k]) for k, v in recipe.heads.noise_head.state_dict().items())
    assert any(not torch.equal(v, value_before[k]) for k, v in recipe.heads.value_head.state_dict().items())
    feed(recipe, seed=2)
    after = recipe.update_step(iter([recipe.take_rollout()]), step=1)
    assert after["critic_warmup"] == 0.0 and (after["lr_actor"], after["lr_noise_head"]) == (1e-3, 2e-3)
    assert any(not torch.equal(v, policy_before[k]) for k, v in recipe.policy.state_dict().items())


def test_linear_lr_schedule_decays_after_the_warm_up_and_holds_at_the_floor() -> None:
    # warm-up 1, decay over 4 updates to 0.25 x base: factors by policy version 0..6 are
    # 1 (warm-up, actor lr 0 anyway), 1, 1 - 0.75/4, 1 - 0.75*2/4, 1 - 0.75*3/4, 0.25, 0.25.
    config = PiRLConfig(
        lr_schedule="linear", lr_decay_updates=4, lr_final_ratio=0.25, critic_warmup_updates=1
    )
    assert [config.lr_factor(v) for v in range(7)] == [1.0, 1.0, 0.8125, 0.625, 0.4375, 0.25, 0.25]
    assert PiRLConfig().lr_factor(50) == 1.0  # constant by default

    recipe = make_recipe(
        "flow_sde", lr_schedule="linear", lr_decay_updates=2, lr_final_ratio=0.5, actor_lr=1e-3, value_lr=4e-3
    )
    seen = []
    for update in range(4):
        feed(recipe, seed=update)
        metrics = recipe.update_step(iter([recipe.take_rollout()]), step=update)
        seen += [metrics["lr_actor"], metrics["lr_value_head"]]
    assert seen == pytest.approx([1e-3, 4e-3, 7.5e-4, 3e-3, 5e-4, 2e-3, 5e-4, 2e-3])


def test_target_kl_stops_the_update_after_the_minibatch_that_crossed_it() -> None:
    free = make_recipe("flow_sde", update_epochs=4, actor_lr=1e-2)
    stopped = make_recipe("flow_sde", update_epochs=4, actor_lr=1e-2, target_kl=1e-9)
    for recipe in (free, stopped):
        feed(recipe, seed=1)
    assert free.update_step(iter([free.take_rollout()]), step=0)["minibatch_steps"] == 8  # 4 × 8/4
    metrics = stopped.update_step(iter([stopped.take_rollout()]), step=0)
    # Minibatch 1 scores the rollout's own policy (approx_kl 0); minibatch 2 has moved past 1.5e-9.
    assert metrics["stopped_early"] == 1.0 and metrics["minibatch_steps"] == 2


def test_new_algorithm_fields_are_validated() -> None:
    with pytest.raises(ValueError) as err:
        PiRLConfig(
            target_kl=0.0,
            critic_warmup_updates=-1,
            envs_per_actor=0,
            lr_schedule="cosine",
            lr_decay_updates=0,
            lr_final_ratio=1.5,
            max_actors=0,
        ).validate()
    message = str(err.value)
    for text in (
        "target_kl=0.0 (must be > 0, or null)",
        "critic_warmup_updates=-1 (must be ≥ 0)",
        "envs_per_actor=0 (must be ≥ 1)",
        "lr_schedule='cosine' (accepted: constant, linear)",
        "lr_decay_updates=0 (must be ≥ 1)",
        "lr_final_ratio=1.5 (must be in [0, 1])",
        "max_actors=0 (must be ≥ 1)",
    ):
        assert text in message


def test_update_advantages_follow_gae_across_termination_truncation_and_a_rollout_cut() -> None:
    """Three episodes in one rollout, GAE recomputed by hand from the value head's own values.

    Episode 0 (actor 0) terminates after 3 decisions; episode 1 (actor 1) is truncated by the time
    limit after 2; episode 2 (actor 2) had 4 decisions recorded but only its first 2 arrive, so the
    rollout cuts it. With δ_i = r_i + γ·(1 − term_i)·V(next_i) − V_i and
    A_i = δ_i + γλ·(1 − done_i)·A_{i+1}: next_i is the next decision's observation inside an
    episode and the decision's own next_observation at the end of each segment; done_i is set at
    the termination, the truncation and the cut, so no trace crosses into the next episode.
    """
    gamma, lam = 0.9, 0.8
    recipe = make_recipe("flow_sde", rollout_decisions=7, gamma=gamma, gae_lambda=lam)
    episodes = [
        record_episode(recipe, states(3, 1), actor_id=0, episode_id=0, terminated=True, seed=1),
        record_episode(recipe, states(2, 2), actor_id=1, episode_id=0, terminated=False, seed=2),
        record_episode(recipe, states(4, 3), actor_id=2, episode_id=0, terminated=True, seed=3)[:2],
    ]
    for episode in episodes:
        for transition in episode:
            recipe.accept(transition)
    rollout = recipe.take_rollout()
    observations = {
        k: torch.stack([d.observation[k] for d in rollout.decisions])
        for k in rollout.decisions[0].observation
    }
    values, advantages, returns = recipe.advantages(rollout, observations)

    def value(observation: dict) -> float:
        return float(recipe.policy.pi_rl_value({k: v.unsqueeze(0) for k, v in observation.items()})[0])

    expected = []
    for actor, (episode, terminated_last) in enumerate(zip(episodes, (True, False, False), strict=True)):
        decisions = [d for d in rollout.decisions if d.actor_id == actor]
        assert len(decisions) == len(episode)
        trace = 0.0
        per_episode = []
        for i in reversed(range(len(decisions))):
            last = i == len(decisions) - 1
            v_next = value(decisions[i].next_observation) if last else value(decisions[i + 1].observation)
            terminal = last and terminated_last
            delta = (
                decisions[i].reward + gamma * (0.0 if terminal else v_next) - value(decisions[i].observation)
            )
            trace = delta + (0.0 if last else gamma * lam * trace)
            per_episode.insert(0, trace)
        expected += per_episode
    torch.testing.assert_close(advantages, torch.tensor(expected), rtol=0, atol=1e-5)
    torch.testing.assert_close(returns, advantages + values)
    assert rollout.terminated.tolist() == [False, False, True, False, False, False, False]
    assert (rollout.truncated | rollout.segment_end).tolist() == [
        False,
        False,
        True,
        False,
        True,
        False,
        True,
    ]


def test_update_autocast_follows_lerobots_precision_rule() -> None:
    """As ``lerobot_train``: the policy's ``dtype`` decides; ``use_amp`` only without a ``dtype``."""
    from types import SimpleNamespace

    from lerobot_pirl.recipes.pi_rl.recipe import update_autocast

    cpu = torch.device("cpu")
    bf16 = update_autocast(SimpleNamespace(dtype="bfloat16", use_amp=False), cpu)
    assert isinstance(bf16, torch.autocast) and bf16.fast_dtype == torch.bfloat16
    assert not isinstance(
        update_autocast(SimpleNamespace(dtype="float32", use_amp=True), cpu), torch.autocast
    )
    amp = update_autocast(SimpleNamespace(use_amp=True), cpu)
    assert isinstance(amp, torch.autocast) and amp.fast_dtype == torch.get_autocast_dtype("cpu")
    assert not isinstance(update_autocast(SimpleNamespace(use_amp=False), cpu), torch.autocast)


def test_bfloat16_xvla_trains_under_autocast_with_float32_log_probs() -> None:
    recipe = make_recipe("flow_sde", dtype="bfloat16")
    assert {p.dtype for p in recipe.policy.model.transformer.parameters()} == {torch.bfloat16}
    before = copy.deepcopy(recipe.policy.state_dict())
    feed(recipe, seed=1)
    rollout = recipe.take_rollout()
    assert all(d.old_token_log_prob.dtype == torch.float32 for d in rollout.decisions)
    metrics = recipe.update_step(iter([rollout]), step=0)
    for key in ("loss_actor", "loss_value", "approx_kl", "pi_rl_grad_norm"):
        assert torch.isfinite(torch.tensor(metrics[key])), (key, metrics[key])
    assert metrics["skipped_nonfinite_steps"] == 0
    changed = [k for k, v in recipe.policy.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("model.transformer") for k in changed)


def test_actor_sampler_takes_cpu_observations_and_returns_records_the_wire_carries(device: str) -> None:
    """The actor keeps CPU observation rows; the sampler moves them to the policy's device and
    hands back CPU records, equal to sampling the same observations on that device directly."""
    from helpers.xvla_batches import observation_batch

    recipe = make_recipe("flow_sde", device=device)
    observations = observation_batch(recipe.policy.config, states(3, seed=5))
    torch.manual_seed(7)
    chunks, samples = recipe.sampler().act(observations)
    torch.manual_seed(7)
    direct, record = recipe.policy.sample_actions({k: v.to(device) for k, v in observations.items()})
    torch.testing.assert_close(chunks, direct[:, : recipe.sampler().executed_steps])
    assert len(samples) == 3
    for row, sample in enumerate(samples):
        assert {sample.chain.device.type, sample.step_index.device.type} == {"cpu"}
        torch.testing.assert_close(sample.chain, record.chain[row : row + 1].cpu())
        torch.testing.assert_close(sample.token_log_prob, record.token_log_prob[row : row + 1].cpu())
