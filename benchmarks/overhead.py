"""What lerobot-pirl costs on top of stock LeRobot and of a hand-written floor.

Four comparisons, each measured side by side in one process, interleaved A/B/A/B (the order flips
every repetition) so that load from other processes hits every variant alike. Reported: the
median rate of each variant over the repetitions and the ratio of the medians.

1. ``sac``: learner updates/s through the plugin (``RecipeAlgorithm`` adapter -> ``SACRecipe``,
   what LeRobot's learner calls for ``recipe=sac``) vs stock ``SACAlgorithm.update``, same policy
   config, same batches. Target: ratio >= 0.98.
2. ``learner``: decisions/s through ``PiRLRecipe.update_step`` vs a hand-written PPO update on the
   same tiny XVLA and the same rollout (pre-stacked tensors; value pass + GAE, then per minibatch
   the recipe's own ``score_chain`` through the adapter, clipped PPO + clipped value loss,
   backward, clip-grad, AdamW step; no bookkeeping). Same epochs and minibatches. Target: ratio >= 0.90.
3. ``actor``: decisions/s of ``sample_actions`` (flow_sde, flow_noise: log-prob and chain
   recording) plus ``encode_decision`` as ``runtime/on_policy_actor.py`` does it vs stock
   ``predict_action_chunk`` with the same K, batch of one observation as on the actor.
   Target: time ratio <= 1.15 for flow_sde.
4. ``wire``/``memory``: bytes per decision on the wire (``transitions_to_bytes`` of real
   PandaPickCube episodes, as the actor sends them) and held by the learner's rollout, vs the raw
   tensor bytes of chain + observation (target <= 1.25); learner RSS vs rollout size (fresh
   subprocess per size: held RSS after ingest and peak RSS after one update), with linear fits.

The policy is the demo's tiny XVLA (21-D state, 4-D action, blank 16 px image, hidden 32, depth 1,
chunk 4, H'=2, K=3). Every process uses one torch thread.

    OMP_NUM_THREADS=1 MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa HF_HUB_OFFLINE=1 \
        .venv/bin/python benchmarks/overhead.py [--quick] [--only sac learner actor wire memory] \
        [--out overhead.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import torch  # noqa: E402
from lerobot.policies.xvla.modeling_xvla import XVLAPolicy  # noqa: E402
from lerobot.transport.utils import bytes_to_transitions, transitions_to_bytes  # noqa: E402

from lerobot_pirl.envs.pick_cube import ACTION_DIM, STATE_DIM  # noqa: E402
from lerobot_pirl.flow_rl import math as flow_math  # noqa: E402
from lerobot_pirl.flow_rl.algorithm import score_chain  # noqa: E402
from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config  # noqa: E402
from lerobot_pirl.recipes.pi_rl.config import PiRLConfig  # noqa: E402
from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe  # noqa: E402
from lerobot_pirl.recipes.pi_rl.transitions import RECORD, RecordLayout  # noqa: E402
from lerobot_pirl.runtime.on_policy_actor import packed_observation  # noqa: E402
from lerobot_pirl.tasks.machine import machine_info  # noqa: E402

torch.set_num_threads(1)
RESULTS = Path(__file__).parent / "results"

# A tiny XVLA and small πRL settings: the harness measures the recipe's overhead, not learning.
TINY_ALGORITHM = dict(
    rollout_decisions=8,
    minibatch_size=4,
    update_epochs=1,
    actor_lr=1e-3,
    value_hidden_dims=[32, 32],
    noise_hidden_dim=16,
    max_updates=3,
)
DEMO_POLICY = dict(chunk_size=4, n_action_steps=2, num_denoising_steps=3, hidden_size=32, depth=1)


# ----------------------------------------------------------------------------- harness


def machine() -> dict:
    return {**machine_info(), "torch_threads": torch.get_num_threads()}


def log(message: str) -> None:
    print(f"[overhead {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def interleaved(variants: dict[str, Callable[[], int]], repeats: int) -> dict[str, dict]:
    """Run each variant's block ``repeats`` times, A/B/A/B with the order flipped every repetition.

    A block returns how many units (updates, decisions) it did; its rate is units / seconds, on the
    wall clock and on this process's CPU clock (one torch thread, so CPU time leaves out the time
    other processes on the machine took from us). One untimed warm-up block per variant first.
    """
    log(f"timing {', '.join(variants)} x {repeats}")
    for block in variants.values():
        block()
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            units = variants[name]()
            wall[name].append(units / (time.perf_counter() - start))
            cpu[name].append(units / (time.process_time() - start_cpu))
    return {
        name: {
            "median_per_s": round(statistics.median(wall[name]), 2),
            "min": round(min(wall[name]), 2),
            "max": round(max(wall[name]), 2),
            "median_per_cpu_s": round(statistics.median(cpu[name]), 2),
        }
        for name in variants
    }


def ratio(rows: dict[str, dict], numerator: str, denominator: str) -> dict[str, float]:
    """Ratio of the median rates, on the wall clock and on the CPU clock."""
    return {
        clock: round(rows[numerator][key] / rows[denominator][key], 3)
        for clock, key in (("wall", "median_per_s"), ("cpu", "median_per_cpu_s"))
    }


# ----------------------------------------------------------------------------- 1. SAC


def bench_sac(quick: bool) -> dict:
    from lerobot.rl.algorithms.sac import SACAlgorithm, SACAlgorithmConfig
    from recipes.test_sac_parity import ACTION_DIM as SAC_ACTION_DIM
    from recipes.test_sac_parity import STATE_DIM as SAC_STATE_DIM
    from recipes.test_sac_parity import _policy

    from lerobot_pirl import discover
    from lerobot_pirl.runtime.algorithm_adapter import algorithm_class

    batch_size, updates_per_block = 256, 10
    gen = torch.Generator().manual_seed(123)

    def batch() -> dict:
        return {
            "state": {"observation.state": torch.rand(batch_size, SAC_STATE_DIM, generator=gen) * 2 - 1},
            "action": torch.rand(batch_size, SAC_ACTION_DIM, generator=gen) * 2 - 1,
            "reward": torch.rand(batch_size, generator=gen),
            "next_state": {"observation.state": torch.rand(batch_size, SAC_STATE_DIM, generator=gen) * 2 - 1},
            "done": (torch.rand(batch_size, generator=gen) < 0.2).float(),
        }

    pool = [batch() for _ in range(32)]
    plugin_cls = algorithm_class(discover(blocked=()).resolve("sac"))

    def build(cls: type) -> Callable[[], int]:
        torch.manual_seed(0)
        policy = _policy()
        config = SACAlgorithmConfig(policy_config=policy.config, utd_ratio=2, policy_update_freq=1)
        algorithm = cls(policy=policy, config=config)
        algorithm.make_optimizers_and_scheduler()
        cursor = [0]

        def batches():
            while True:
                cursor[0] = (cursor[0] + 1) % len(pool)
                yield pool[cursor[0]]

        iterator = batches()

        def block() -> int:
            for _ in range(updates_per_block):
                algorithm.update(iterator)
            return updates_per_block

        return block

    rows = interleaved(
        {"stock_sac_algorithm": build(SACAlgorithm), "plugin_recipe_algorithm": build(plugin_cls)},
        repeats=6 if quick else 30,
    )
    return {
        "what": "learner updates/s: RecipeAlgorithm('sac').update vs stock SACAlgorithm.update",
        "setup": {
            "policy": "gaussian_actor (tests/recipes/test_sac_parity.py), 4-D state, 2-D action",
            "batch_size": batch_size,
            "utd_ratio": 2,
            "updates_per_block": updates_per_block,
        },
        "rows": rows,
        "ratio": ratio(rows, "plugin_recipe_algorithm", "stock_sac_algorithm"),
        "target": ">= 0.98",
    }


# ----------------------------------------------------------------------------- pi-rl setup


def make_recipe(noise_method: str, **algorithm: object) -> PiRLRecipe:
    """The demo's tiny XVLA (a stock XVLAPolicy, as make_policy builds it) inside a pi-rl recipe."""
    fields = {**TINY_ALGORITHM, "noise_method": noise_method, **algorithm}
    torch.manual_seed(0)
    policy = XVLAPolicy(tiny_xvla_config(STATE_DIM, ACTION_DIM, **DEMO_POLICY))
    recipe = PiRLRecipe(policy, PiRLConfig(policy_config=policy.config, **fields))
    recipe.build_optimizers()
    return recipe


def record_episodes(noise_method: str, episodes: int, steps: int) -> list[tuple[bytes, int]]:
    """Real PandaPickCube episodes from the actor's own loop, as (payload the actor sends, decisions)."""
    from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig
    from lerobot_pirl.runtime.envs import make_envs
    from lerobot_pirl.runtime.on_policy_actor import BatchedEpisodes
    from lerobot_pirl.runtime.processors import PolicyIO

    recipe = make_recipe(noise_method)
    env_config = PickCubeEnvConfig(image_obs=False, episode_length=steps)
    envs = make_envs(env_config, 1)
    runner = BatchedEpisodes(
        envs, PolicyIO.for_policy(recipe.policy.config, env_config), recipe, 0, seeds=[0]
    )
    payloads: list[tuple[bytes, int]] = []
    try:
        while len(payloads) < episodes:
            for episode in runner.step():
                payloads.append((transitions_to_bytes(episode.decisions), len(episode.decisions)))
    finally:
        envs[0].close()
    return payloads


def ingest(recipe: PiRLRecipe, payloads: list[tuple[bytes, int]], decisions: int) -> None:
    """What the learner does with received messages until ``decisions`` are in (copies get new ids)."""
    copy = 0
    while recipe.assembler.pending() < decisions:
        payload, _ = payloads[copy % len(payloads)]
        for transition in bytes_to_transitions(payload):
            record = transition["complementary_info"][RECORD]
            record[RecordLayout.scalar_index("episode_id")] = float(copy)
            record[RecordLayout.scalar_index("policy_version")] = float(recipe.assembler.policy_version)
            if not recipe.accept(transition):
                raise RuntimeError("a benchmark decision was dropped as stale")
        copy += 1


# ----------------------------------------------------------------------------- 2. learner floor


class HandWrittenPPO:
    """A minimal PPO update on the recipe's own scoring, straight on the flow-policy adapter: the floor.

    The rollout is held as stacked tensors. One update: a no-grad value pass and GAE, then per
    minibatch the adapter's frozen-VLM encode and ``flow_rl.algorithm.score_chain`` (the recipe's
    scoring itself, not a copy), clipped PPO + clipped Huber value (+ entropy) loss, backward,
    clip-grad, AdamW. No metrics, no checks, no per-decision Python objects, no policy forward.
    """

    def __init__(self, recipe: PiRLRecipe) -> None:
        self.policy, self.heads, self.cfg = recipe.policy, recipe.heads, recipe.config
        self.adapter = self.policy.pi_rl_adapter
        self.sampling = self.policy.pi_rl_sampling
        self.optimizer = recipe.optimizer
        self.parameters = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.generator = torch.Generator().manual_seed(0)
        self.policy.eval()  # dropout-free, like the recipe

    def values(self, observation: dict) -> torch.Tensor:
        obs = self.adapter.encode(observation)
        return self.heads.value(obs.features, obs.state)

    def log_prob_and_entropy(self, mb: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        obs = self.adapter.encode(mb["obs"])
        scores = score_chain(self.adapter, self.heads, obs, mb["chain"], mb["step_index"], self.sampling)
        return scores.log_prob, scores.value, scores.entropy.mean()

    def update(self, rollout: dict) -> int:
        cfg, n = self.cfg, rollout["chain"].shape[0]
        with torch.no_grad():
            values = self.values(rollout["obs"])
            next_values = torch.roll(values, -1)
            next_values[rollout["ends"]] = self.values(rollout["boundary_obs"])
        advantages, returns = flow_math.compute_gae(
            rollout["rewards"], values, next_values, rollout["terminated"], rollout["truncated"],
            cfg.gamma, cfg.gae_lambda,
        )  # fmt: skip
        advantages = flow_math.normalize_advantages(advantages)
        entropy_coef = cfg.entropy_coef if self.sampling.noise_method == "flow_noise" else 0.0
        for _ in range(cfg.update_epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, cfg.minibatch_size):
                i = order[start : start + cfg.minibatch_size]
                mb = {"obs": {k: v[i] for k, v in rollout["obs"].items()}, "chain": rollout["chain"][i]}
                mb["step_index"] = rollout["step_index"][i]
                log_prob, value, entropy = self.log_prob_and_entropy(mb)
                rho = torch.exp(log_prob - rollout["old_log_prob"][i])
                adv = advantages[i]
                clipped = torch.clamp(rho, 1 - cfg.clip_eps, 1 + cfg.clip_eps)
                loss_actor = -torch.min(rho * adv, clipped * adv).mean()
                v_old, ret = values[i], returns[i]
                v_clip = v_old + torch.clamp(value - v_old, -cfg.value_clip, cfg.value_clip)
                huber = torch.nn.functional.huber_loss
                loss_value = torch.max(
                    huber(value, ret, reduction="none", delta=cfg.huber_delta),
                    huber(v_clip, ret, reduction="none", delta=cfg.huber_delta),
                ).mean()
                loss = loss_actor + cfg.value_coef * loss_value - entropy_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm)
                self.optimizer.step()
        return n


def stacked_rollout(recipe: PiRLRecipe) -> dict:
    """The recipe's rollout as plain stacked tensors (what a minimal PPO keeps from the start)."""
    rollout = recipe.take_rollout()
    decisions = rollout.decisions

    def stack(observations: list[dict]) -> dict:
        return {k: torch.stack([o[k] for o in observations]) for k in observations[0]}

    ends = rollout.segment_end
    return {
        "rollout": rollout,
        "obs": stack([d.observation for d in decisions]),
        "boundary_obs": stack(
            [d.next_observation for d, e in zip(decisions, ends.tolist(), strict=True) if e]
        ),
        "ends": ends,
        "chain": torch.stack([d.chain for d in decisions]),
        "step_index": torch.tensor([d.step_index for d in decisions]).clamp(min=0),
        "old_log_prob": torch.stack([d.old_token_log_prob.sum() for d in decisions]),
        "rewards": rollout.rewards,
        "terminated": rollout.terminated,
        "truncated": rollout.truncated | ends,
    }


def check_floor_matches(recipe: PiRLRecipe, floor: HandWrittenPPO, data: dict) -> float:
    """The floor computes the recipe's log-prob: max |difference| on the first 16 decisions."""
    from lerobot_pirl.policies import PI_RL_CHAIN, PI_RL_STEP_INDEX

    mb = {"obs": {k: v[:16] for k, v in data["obs"].items()}, "chain": data["chain"][:16]}
    mb["step_index"] = data["step_index"][:16]
    with torch.no_grad():
        ours = floor.log_prob_and_entropy(mb)[0]
        batch = {**mb["obs"], PI_RL_CHAIN: mb["chain"], PI_RL_STEP_INDEX: mb["step_index"].float()}
        theirs = recipe.policy.pi_rl_outputs(batch).log_prob
    difference = float((ours - theirs).abs().max())
    assert difference < 1e-3, f"the hand-written floor disagrees with the recipe's log-prob by {difference}"
    return difference


def bench_learner(quick: bool, payloads: dict[str, list]) -> dict:
    rollout_decisions, minibatch, epochs = 64, 16, 2
    out = {
        "what": "decisions/s: PiRLRecipe.update_step vs a hand-written PPO update (same math, no extras)",
        "setup": {
            "policy": "demo tiny XVLA (hidden 32, depth 1, chunk 4, H'=2, K=3), frozen VLM",
            "rollout_decisions": rollout_decisions,
            "minibatch_size": minibatch,
            "update_epochs": epochs,
            "data": "real PandaPickCube episodes, decoded as the learner does",
        },
        "target": ">= 0.90",
    }
    for method in ("flow_sde", "flow_noise"):
        settings = dict(rollout_decisions=rollout_decisions, minibatch_size=minibatch, update_epochs=epochs)
        recipe, floor_recipe = make_recipe(method, **settings), make_recipe(method, **settings)
        ingest(recipe, payloads[method], rollout_decisions)
        rollout = recipe.take_rollout()
        ingest(floor_recipe, payloads[method], rollout_decisions)
        floor = HandWrittenPPO(floor_recipe)
        data = stacked_rollout(floor_recipe)
        difference = check_floor_matches(recipe, floor, data)
        step = [0]

        def recipe_block(recipe=recipe, rollout=rollout, step=step) -> int:
            recipe.update_step(iter([rollout]), step[0])
            step[0] += 1
            return len(rollout)

        def ingest_block(recipe=recipe, episodes=payloads[method]) -> int:
            ingest(recipe, episodes, rollout_decisions)
            return len(recipe.take_rollout())

        rows = interleaved(
            {"hand_written_ppo": lambda f=floor, d=data: f.update(d), "recipe_update_step": recipe_block},
            repeats=6 if quick else 30,
        )
        ingest_rows = interleaved({"ingest": ingest_block}, repeats=3 if quick else 10)
        out[method] = {
            "rows": rows,
            "ratio": ratio(rows, "recipe_update_step", "hand_written_ppo"),
            "floor_log_prob_max_abs_diff": difference,
            "ingest_decisions_per_s": ingest_rows["ingest"]["median_per_s"],
        }
    return out


# ----------------------------------------------------------------------------- 3. actor


def bench_actor(quick: bool) -> dict:
    from lerobot_pirl.recipes.on_policy import ActorDecision

    decisions_per_block = 25
    recipes = {method: make_recipe(method) for method in ("flow_sde", "flow_noise")}
    stock = recipes["flow_sde"].policy  # stock predict_action_chunk is inherited unchanged
    generator = torch.Generator().manual_seed(0)
    states = torch.rand(decisions_per_block, STATE_DIM, generator=generator) * 2 - 1
    observations = [
        {
            "observation.state": states[i],
            **{key: torch.zeros(ft.shape) for key, ft in stock.config.image_features.items()},
            "observation.language.tokens": torch.arange(stock.config.tokenizer_max_length),
        }
        for i in range(decisions_per_block)
    ]
    assert stock.config.num_denoising_steps == recipes["flow_sde"].policy.pi_rl_sampling.num_steps

    def stock_block() -> int:
        for observation in observations:
            stock.reset()
            stock.predict_action_chunk({k: v.unsqueeze(0) for k, v in observation.items()})
        return decisions_per_block

    def pi_rl_block(recipe: PiRLRecipe, encode: bool = True) -> Callable[[], int]:
        sampler = recipe.sampler()

        def block() -> int:
            for index, raw in enumerate(observations):
                observation = packed_observation(raw) if encode else raw
                actions, samples = sampler.act({k: v.unsqueeze(0) for k, v in observation.items()})
                if not encode:
                    continue
                recipe.encode_decision(  # the actor's own encoding (runtime/on_policy_actor.py)
                    ActorDecision(
                        observation=observation,
                        next_observation=observation,
                        actions=actions[0],
                        rewards=[0.0] * sampler.executed_steps,
                        terminated=False,
                        truncated=False,
                        sample=samples[0],
                        policy_version=recipe.policy_version,
                        actor_id=0,
                        episode_id=0,
                        decision_index=index,
                    )
                )
            return decisions_per_block

        return block

    rows = interleaved(
        {
            "stock_predict_action_chunk": stock_block,
            "flow_sde_sample_encode": pi_rl_block(recipes["flow_sde"]),
            "flow_noise_sample_encode": pi_rl_block(recipes["flow_noise"]),
            "flow_sde_sample_only": pi_rl_block(recipes["flow_sde"], encode=False),
            "flow_noise_sample_only": pi_rl_block(recipes["flow_noise"], encode=False),
        },
        repeats=6 if quick else 30,
    )
    variants = [
        "flow_sde_sample_encode",
        "flow_noise_sample_encode",
        "flow_sde_sample_only",
        "flow_noise_sample_only",
    ]
    return {
        "what": "decisions/s at batch 1: sample_actions (+ encode_decision) vs stock predict_action_chunk",
        "setup": {"policy": "demo tiny XVLA (hidden 32, depth 1, chunk 4, H'=2, K=3)", "batch": 1},
        "rows": rows,
        # time ratios: pi-rl seconds per decision / stock seconds per decision
        "time_ratios": {name: ratio(rows, "stock_predict_action_chunk", name) for name in variants},
        "target": "time ratio <= 1.15 for flow_sde",
    }


# ----------------------------------------------------------------------------- 4. wire and memory


def raw_bytes_per_decision(transition: dict, layout: RecordLayout) -> dict:
    """Raw tensor bytes of one decision: its chain and its observation (float32; token ids int64)."""
    observation = sum(v.numel() * v.element_size() for v in transition["state"].values())
    return {"chain": layout.chain_numel * 4, "observation": observation}


def held_bytes(recipe: PiRLRecipe) -> int:
    """Bytes of the distinct tensor storages the learner's pending rollout holds."""
    seen: dict[int, int] = {}
    for decisions in recipe.assembler._pending.values():
        for d in decisions:
            for tensor in [*d.observation.values(), *d.next_observation.values(), d.chain]:
                storage = tensor.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def bench_wire(payloads: dict[str, list]) -> dict:
    out: dict = {"what": "bytes per decision on the wire (transitions_to_bytes) and held by the learner"}
    for method, episodes in payloads.items():
        decisions = sum(n for _, n in episodes)
        wire = sum(len(p) for p, _ in episodes) / decisions
        recipe = make_recipe(method, rollout_decisions=decisions)
        raw = raw_bytes_per_decision(bytes_to_transitions(episodes[0][0])[0], recipe.record_layout)
        raw_total = raw["chain"] + raw["observation"]
        ingest(recipe, episodes, decisions)
        held = held_bytes(recipe) / decisions
        out[method] = {
            "decisions": decisions,
            "raw_bytes_per_decision": {**raw, "total": raw_total},
            "wire_bytes_per_decision": round(wire, 1),
            "wire_ratio": round(wire / raw_total, 3),
            "learner_held_tensor_bytes_per_decision": round(held, 1),
            "learner_held_ratio": round(held / raw_total, 3),
        }
    out["target"] = "<= 1.25"
    return out


def rss_child(decisions: int, payload_file: Path, method: str) -> None:
    """In a fresh process: ingest ``decisions`` as the learner does, then one update; print RSS.

    Peak RSS is Linux's VmHWM, reset once the recipe is built (``/proc/self/clear_refs``), so
    the peaks of imports and model building do not hide the rollout's.
    """
    import pickle

    def status(field: str) -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
        return int(line.split()[1]) * 1024

    payloads = pickle.loads(payload_file.read_bytes())
    recipe = make_recipe(method, rollout_decisions=decisions, minibatch_size=64, update_epochs=1)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before = status("VmRSS:")
    ingest(recipe, payloads, decisions)
    held = status("VmRSS:") - before
    recipe.update_step(iter([recipe.take_rollout()]), 0)
    peak = status("VmHWM:") - before
    print(json.dumps({"decisions": decisions, "baseline_rss": before, "held_rss": held, "peak_rss": peak}))


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {
        "slope_bytes_per_decision": round(slope, 1),
        "intercept_mib": round(intercept / 2**20, 2),
        "r2": round(1 - ss_res / ss_tot, 4),
    }


def bench_memory(quick: bool, payloads: dict[str, list], raw: dict[str, int]) -> dict:
    import pickle

    sizes = [64, 256, 1024] if quick else [64, 256, 1024, 4096]
    out: dict = {
        "what": "learner RSS above the built recipe vs rollout size, one fresh subprocess per size: held "
        "after ingest, peak (VmHWM) during ingest + one update (minibatch 64, 1 epoch)",
        "sizes": sizes,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for method, episodes in payloads.items():
            payload_file = Path(tmp) / f"{method}.pkl"
            payload_file.write_bytes(pickle.dumps(episodes))
            rows = []
            for size in sizes:
                result = subprocess.run(
                    [sys.executable, __file__, "--rss-child", str(size), str(payload_file), method],
                    capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                )  # fmt: skip
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            xs = [r["decisions"] for r in rows]
            held = linear_fit(xs, [r["held_rss"] for r in rows])
            peak = linear_fit(xs, [r["peak_rss"] for r in rows])
            out[method] = {
                "rows": rows,
                "held_rss_fit": {
                    **held,
                    "ratio_to_raw": round(held["slope_bytes_per_decision"] / raw[method], 3),
                },
                "peak_rss_fit": {
                    **peak,
                    "ratio_to_raw": round(peak["slope_bytes_per_decision"] / raw[method], 3),
                },
            }
    return out


# ----------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--rss-child":
        rss_child(int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and sizes (~2 min)")
    sections = ["sac", "learner", "actor", "wire", "memory"]
    parser.add_argument("--only", nargs="+", choices=sections, default=sections)
    parser.add_argument("--out", default="overhead.json", help="file name under benchmarks/results/")
    args = parser.parse_args()

    result: dict = {
        "benchmark": "overhead",
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "quick": args.quick,
    }
    payloads: dict[str, list] = {}
    if {"learner", "wire", "memory"} & set(args.only):
        payloads = {
            method: record_episodes(method, episodes=2, steps=64) for method in ("flow_sde", "flow_noise")
        }
    RESULTS.mkdir(exist_ok=True)

    def save(section: str, value: dict) -> None:  # after every section, so a failure keeps the rest
        result[section] = value
        (RESULTS / args.out).write_text(json.dumps(result, indent=2) + "\n")

    if "sac" in args.only:
        save("sac", bench_sac(args.quick))
    if "learner" in args.only:
        save("learner", bench_learner(args.quick, payloads))
    if "actor" in args.only:
        save("actor", bench_actor(args.quick))
    if {"wire", "memory"} & set(args.only):
        save("wire", bench_wire(payloads))
    if "memory" in args.only:
        raw = {m: result["wire"][m]["raw_bytes_per_decision"]["total"] for m in payloads}
        save("memory", bench_memory(args.quick, payloads, raw))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
