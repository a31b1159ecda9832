"""What πRL costs as XVLA grows to its real size: parameters, seconds per decision, memory.

Three sizes, each built from an ``XVLAConfig`` with random weights (nothing downloads; token ids
stand in for the tokenizer): the demo's tiny model (the shipped checkpoint's config), an
intermediate one (Florence-2-base dimensions, a 12-layer 512-wide transformer) and the real size
(Florence-2-large dimensions, LeRobot's default 24-layer 1024-wide transformer). For each: πRL
attached (frozen VLM, as the recipe's default), decisions sampled with flow_sde and with
flow_noise, and one πRL update (flow_sde, one epoch over a small rollout), every size in its own
process so its peak memory is its own. One torch thread per process unless ``--threads``.

    python benchmarks/scale.py [--sizes tiny intermediate real] [--decisions 3] [--threads 2]
                               [--device cuda]

JSON: ``benchmarks/results/scale.json`` (``scale_<device>.json`` off CPU), one row per (size,
dtype) with ``params_total``, ``params_trainable``, ``sample_s_per_decision``,
``update_s_per_decision``, ``peak_rss_mb`` (on CUDA also ``peak_cuda_mb``), ``dtype``, ``device``,
and ``growth``: the log-log slope of each cost against ``params_total``.

    python benchmarks/scale.py --levers [--lever-size real] [--threads 2]

The memory levers for one GPU, at one size: the same recorded rollout updated once per lever (frozen
VLM, the default; trainable VLM, the lever's absence; activation checkpointing; LoRA adapters on the
transformer through ``peft``; bfloat16 weights), each in its own process. A row gives the update's
memory as a GPU would hold it: weights, gradients and AdamW moments (from the parameters) plus the
activations autograd keeps for backward per decision (``SavedTensorMeter``, measured), and the
largest update minibatch that fits 24 GiB. JSON: ``benchmarks/results/scale_levers.json``.

    python benchmarks/scale.py --sizes pi0 --real-dtypes bfloat16 --decisions 1 --threads 2

``pi0`` is LeRobot's π0 at its real size (PaliGemma ``gemma_2b`` + the ``gemma_300m`` action
expert, LeRobot's default ``PI0Config``: one 224 px camera, chunk 50, K = 10), built with random
weights from its config, the VLM frozen: the same row (sampling, one update, peak memory) in the
dtypes given (LeRobot's π0 supports ``float32`` and ``bfloat16``).

    python benchmarks/scale.py --ranks 1 2 4 8 [--rank-size intermediate] [--device cuda]

Update seconds against data-parallel ranks: one recorded rollout (``--rank-decisions`` flow_sde
decisions, two PPO minibatches) updated by ``lerobot-pirl``'s data-parallel πRL update
(``recipes/pi_rl/data_parallel.py``, DDP) under ``torchrun --standalone --nproc_per_node=N`` for each
N, every rank on its own GPU (NCCL) or, on CPU, its own process (gloo). Every N runs DDP, one rank
included, so the rows differ only in the ranks. JSON: ``benchmarks/results/scale_ranks.json``
(``scale_ranks_cuda.json``), one row per N with ``update_s`` (the median of ``--rank-repeats`` timed
updates after one warm-up) and ``speedup`` (the one-rank time over this one).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"
STATE_DIM, ACTION_DIM = 21, 4

# Florence-2's DaViT stem and stages (the published base/large configs share these).
_PATCH = {"patch_size": [7, 3, 3, 3], "patch_stride": [4, 2, 2, 2], "patch_padding": [3, 1, 1, 1]}
_PATCH["patch_prenorm"] = [False, True, True, True]


def florence_config(embed: list[int], heads: list[int], d_model: int, layers: int, ffn: int, text_heads: int):
    """A Florence-2 config in the native ``transformers`` format (224 px images: a 7×7 grid)."""
    return {
        "vision_config": {
            **_PATCH,
            "depths": [1, 1, 9, 1],
            "embed_dim": embed,
            "num_heads": heads,
            "num_groups": heads,
            "window_size": 12,
            "drop_path_rate": 0.0,
            "projection_dim": d_model,
            "max_position_embeddings": 50,
            "max_temporal_embeddings": 100,
        },
        "text_config": {
            "vocab_size": 51289,
            "d_model": d_model,
            "encoder_layers": layers,
            "decoder_layers": layers,
            "encoder_attention_heads": text_heads,
            "decoder_attention_heads": text_heads,
            "encoder_ffn_dim": ffn,
            "decoder_ffn_dim": ffn,
            "max_position_embeddings": 1024,
        },
    }


REAL_POLICIES = {"pi0": "π0 (PaliGemma gemma_2b + gemma_300m expert)"}
"""Sizes that are another policy type at its real size (`pi0_config`), beside XVLA's three."""


def pi0_config(dtype: str, device: str = "cpu"):
    """LeRobot's default ``PI0Config`` (its real size) on this benchmark's state, one camera and action."""
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.pi0.configuration_pi0 import PI0Config

    return PI0Config(
        dtype=dtype,
        device=device,
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
            "observation.images.front": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 224, 224)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
    )


def policy_config(size: str, dtype: str, device: str = "cpu"):
    return pi0_config(dtype, device) if size in REAL_POLICIES else xvla_config(size, dtype, device)


def xvla_config(size: str, dtype: str, device: str = "cpu"):
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.xvla.configuration_xvla import XVLAConfig

    if size == "tiny":
        from lerobot.configs.policies import PreTrainedConfig

        from lerobot_pirl.tasks.pick_cube.sft import SHIPPED_CHECKPOINT

        config = PreTrainedConfig.from_pretrained(str(SHIPPED_CHECKPOINT))
        config.dtype, config.device = dtype, device
        return config
    if size == "intermediate":  # Florence-2-base, a 12 × 512 transformer
        florence = florence_config([128, 256, 512, 1024], [4, 8, 16, 32], 768, 6, 3072, 12)
        transformer = {"hidden_size": 512, "depth": 12, "num_heads": 8}
    elif size == "real":  # Florence-2-large, LeRobot's default transformer (1024 × 24)
        florence = florence_config([256, 512, 1024, 2048], [8, 16, 32, 64], 1024, 12, 4096, 16)
        transformer = {}
    else:
        raise ValueError(f"unknown size {size!r} (tiny, intermediate, real)")
    return XVLAConfig(
        florence_config=florence,
        **transformer,
        action_mode="auto",
        max_state_dim=32,
        chunk_size=32,
        n_action_steps=8,
        num_denoising_steps=10,
        num_domains=1,
        dtype=dtype,
        device=device,
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
            "observation.images.front": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 224, 224)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
    )


def _observation(config, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One preprocessed observation (no batch dim): state, image, token ids (a fixed instruction:
    the ids do not change the cost; π0 also takes the attention mask of its padded prompt)."""
    image_shape = config.input_features["observation.images.front"].shape
    observation = {
        "observation.state": torch.randn(STATE_DIM, generator=generator),
        "observation.images.front": torch.rand(*image_shape, generator=generator),
    }
    if config.type == "pi0":
        observation["observation.language.tokens"] = torch.arange(config.tokenizer_max_length) + 2
        observation["observation.language.attention_mask"] = torch.ones(
            config.tokenizer_max_length, dtype=torch.bool
        )
        return observation
    vocab = config.florence_config["text_config"]["vocab_size"]
    observation["observation.language.tokens"] = torch.arange(config.tokenizer_max_length) % vocab
    return observation


def _recipe(config, noise_method: str, rollout: int, lever: str = "frozen_vlm", **settings: Any):
    from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
    from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe

    if config.type == "pi0":
        from lerobot.policies.pi0.modeling_pi0 import PI0Policy as Policy
    else:
        from lerobot.policies.xvla.modeling_xvla import XVLAPolicy as Policy
    torch.manual_seed(0)
    policy = Policy(config).to(config.device)
    if lever == "lora":
        _inject_lora(policy)
    pi_rl = PiRLConfig(
        policy_config=config,
        noise_method=noise_method,
        rollout_decisions=rollout,
        minibatch_size=max(rollout // 2, 1),
        update_epochs=1,
        value_hidden_dims=[256, 256],
        critic_warmup_updates=0,
        freeze_vlm=lever != "trainable_vlm",
        activation_checkpointing=lever == "activation_checkpointing",
        **settings,
    )
    return PiRLRecipe(policy, pi_rl)


def _inject_lora(policy, rank: int = 16) -> None:
    """LoRA adapters (``peft``) on every linear layer of the transformer blocks, the rest of the
    transformer frozen. LeRobot's ``wrap_with_peft`` would return a ``PeftModel`` around the policy
    (and its XVLA declares no default targets), so the adapters go in place, keeping the class."""
    from peft import LoraConfig, inject_adapter_in_model

    transformer = policy.model.transformer
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["qkv", "proj", "fc1", "fc2"])
    inject_adapter_in_model(config, transformer)
    for name, parameter in transformer.named_parameters():
        parameter.requires_grad_("lora_" in name)


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_memory(row: dict[str, Any], device: str) -> None:
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device == "cuda":
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _sample(recipe, observations: list[dict[str, torch.Tensor]]) -> tuple[float, list[Any]]:
    """Seconds per decision sampling one observation at a time (after one warm-up decision)."""
    sampler = recipe.sampler()
    device = recipe.policy.config.device
    with torch.no_grad():
        sampler.act({k: v[None].to(device) for k, v in observations[0].items()})
        results = []
        _synchronize(device)
        started = time.perf_counter()
        for observation in observations:
            actions, samples = sampler.act({k: v[None].to(device) for k, v in observation.items()})
            results.append((observation, actions[0], samples[0]))
        _synchronize(device)
    return (time.perf_counter() - started) / len(observations), results


def _transitions(recipe, sampled: list[Any]) -> list[Any]:
    """The sampled decisions as the actor sends them: one episode, rewards alternating 0 / 1."""
    from lerobot_pirl.recipes.on_policy import ActorDecision

    executed = recipe.sampler().executed_steps
    return [
        recipe.encode_decision(
            ActorDecision(
                observation=observation,
                next_observation=observation,
                actions=actions,
                rewards=[float(index % 2)] * executed,
                terminated=index == len(sampled) - 1,
                truncated=False,
                sample=sample,
                policy_version=0,
                actor_id=0,
                episode_id=0,
                decision_index=index,
            )
        )
        for index, (observation, actions, sample) in enumerate(sampled)
    ]


def _parameter_counts(recipe) -> dict[str, int]:
    parameters = list(recipe.policy.parameters())
    return {
        "params_total": sum(p.numel() for p in parameters),
        "params_trainable": sum(p.numel() for p in parameters if p.requires_grad),
        "params_vlm": sum(p.numel() for p in recipe.policy.flow_adapter().vlm_parameters()),
    }


def measure(size: str, dtype: str, decisions: int, device: str = "cpu") -> dict[str, Any]:
    config = policy_config(size, dtype, device)
    generator = torch.Generator().manual_seed(0)
    observations = [_observation(config, generator) for _ in range(decisions)]
    row: dict[str, Any] = {"size": size, "dtype": dtype, "device": device, "threads": torch.get_num_threads()}
    if size in REAL_POLICIES:
        row["policy"] = REAL_POLICIES[size]
    else:  # a real-size policy is built once: two builds would double the run and the peak
        started = time.perf_counter()
        recipe = _recipe(config, "flow_noise", decisions)
        row["build_s"] = round(time.perf_counter() - started, 1)
        row["sample_s_per_decision_flow_noise"] = round(_sample(recipe, observations)[0], 4)
        del recipe

    started = time.perf_counter()
    recipe = _recipe(config, "flow_sde", decisions)
    row["build_s"] = round(time.perf_counter() - started, 1)
    row.update(_parameter_counts(recipe))
    sample_s, sampled = _sample(recipe, observations)
    row["sample_s_per_decision"] = round(sample_s, 4)
    row["chunk"] = {
        "size": config.chunk_size,
        "executed": recipe.sampler().executed_steps,
        "K": recipe.policy.pi_rl_sampling.num_steps,
    }
    for transition in _transitions(recipe, sampled):
        assert recipe.accept(transition)
    recipe.build_optimizers()
    assert recipe.rollout_ready()
    _synchronize(device)
    started = time.perf_counter()
    metrics = recipe.update_step(iter([recipe.take_rollout()]), 0)
    _synchronize(device)
    row["update_s_per_decision"] = round((time.perf_counter() - started) / decisions, 4)
    row["update_finite"] = bool(
        math.isfinite(metrics["loss_actor"]) and math.isfinite(metrics["pi_rl_grad_norm"])
    )
    _peak_memory(row, device)
    return row


LEVERS = ("frozen_vlm", "trainable_vlm", "activation_checkpointing", "lora", "bfloat16")
GPU_BYTES = 24 * 2**30


def record_rollout(size: str, decisions: int, path: Path) -> None:
    """Sample ``decisions`` flow_sde decisions at ``size`` (float32) and save them as transitions."""
    config = xvla_config(size, "float32")
    generator = torch.Generator().manual_seed(0)
    observations = [_observation(config, generator) for _ in range(decisions)]
    recipe = _recipe(config, "flow_sde", decisions)
    torch.save(_transitions(recipe, _sample(recipe, observations)[1]), path)


def measure_lever(size: str, lever: str, transitions_path: Path) -> dict[str, Any]:
    """One update (one minibatch: the whole recorded rollout) with ``lever``: its memory and time."""
    transitions = torch.load(transitions_path, weights_only=False)
    dtype = "bfloat16" if lever == "bfloat16" else "float32"
    config = xvla_config(size, dtype)
    recipe = _recipe(config, "flow_sde", len(transitions), lever=lever)
    row: dict[str, Any] = {"size": size, "lever": lever, "dtype": dtype, "device": "cpu"}
    row.update(_parameter_counts(recipe))
    for transition in transitions:
        assert recipe.accept(transition)
    optimizer = recipe.build_optimizers()["pi_rl"]
    parameters = list(recipe.policy.parameters())
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    weight_bytes = sum(p.numel() * p.element_size() for p in parameters)
    weight_bytes += sum(p.numel() * p.element_size() for p in recipe.heads.parameters())
    # AdamW keeps two moments per trained element, in the element's dtype, and a gradient.
    trained_bytes = sum(p.numel() * p.element_size() for p in trained)
    recipe.policy.eval()
    batch, _, _ = recipe.prepare_update(recipe.take_rollout())
    started = time.perf_counter()
    with SavedTensorMeter(exclude=parameters + list(recipe.heads.parameters())) as meter:
        loss, _ = recipe.policy.forward(batch, model="pi_rl")
    loss.backward()
    optimizer.step()
    row["update_s_per_decision"] = round((time.perf_counter() - started) / len(transitions), 3)
    row["loss_finite"] = bool(torch.isfinite(loss.detach()))
    activation_bytes = meter.peak_bytes / len(transitions)
    fixed_bytes = weight_bytes + 3 * trained_bytes
    row["weights_mb"] = round(weight_bytes / 2**20, 1)
    row["grads_and_adamw_mb"] = round(3 * trained_bytes / 2**20, 1)
    row["activations_mb_per_decision"] = round(activation_bytes / 2**20, 1)
    row["update_mb_minibatch_64"] = round((fixed_bytes + 64 * activation_bytes) / 2**20, 1)
    row["max_minibatch_on_24_gib"] = max(int((GPU_BYTES - fixed_bytes) // activation_bytes), 0)
    _peak_memory(row, "cpu")
    return row


def measure_rank(size: str, transitions_path: Path, device: str, repeats: int) -> dict[str, Any] | None:
    """This rank's part of one ``torchrun`` launch: the recorded rollout updated ``repeats`` + 1 times
    (the first warms up DDP's buckets and the device), each timed between barriers. Rank 0 returns
    the row; the others None."""
    import torch.distributed as dist

    from lerobot_pirl.runtime import distributed

    launch = distributed.detect()
    if launch is None:
        raise SystemExit("--rank-child runs under torchrun (RANK / WORLD_SIZE unset)")
    rank_device = f"cuda:{launch.local_rank}" if device == "cuda" else "cpu"
    distributed.init_process_group(launch, rank_device, timeout_s=1800)
    try:
        transitions = torch.load(transitions_path, weights_only=False)
        # The same rollout is fed again before every update: it must never count as stale.
        config = xvla_config(size, "float32", rank_device)
        recipe = _recipe(config, "flow_sde", len(transitions), max_policy_staleness=10**6)
        recipe.build_optimizers()
        recipe.enable_data_parallel()
        seconds = []
        for _ in range(repeats + 1):
            for transition in transitions:
                assert recipe.accept(transition)
            rollout = recipe.take_rollout()
            _synchronize(device)
            dist.barrier()
            started = time.perf_counter()
            metrics = recipe.update_step(iter([rollout]), 0)
            _synchronize(device)
            dist.barrier()
            seconds.append(time.perf_counter() - started)
        row = {
            "ranks": launch.world_size,
            "size": size,
            "device": device,
            "backend": distributed.backend_for(rank_device),
            "decisions": len(transitions),
            "minibatches_per_update": 2,
            "update_s": round(statistics.median(seconds[1:]), 4),
            "update_s_each": [round(s, 4) for s in seconds[1:]],
            "warmup_update_s": round(seconds[0], 4),
            "loss_finite": all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)),
        }
        return row if launch.is_main else None
    finally:
        distributed.close_process_group()


def measure_ranks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Record one rollout, then one ``torchrun`` launch per rank count; rows with ``speedup``."""
    rows: list[dict[str, Any]] = []
    if args.device == "cuda" and max(args.ranks) > torch.cuda.device_count():
        usable = [n for n in args.ranks if n <= torch.cuda.device_count()]
        print(f"only {torch.cuda.device_count()} GPU(s): measuring ranks {usable}", file=sys.stderr)
        args.ranks = usable
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rollout.pt"
        recorded = _run_child(
            ["--record", args.rank_size, str(path), "--decisions", str(args.rank_decisions)],
            {"size": args.rank_size, "ranks": "record"},
            args.child_timeout,
            args.threads,
        )
        if "error" in recorded:
            return [recorded]
        for ranks in args.ranks:
            launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", __file__]
            child = ["--rank-child", args.rank_size, str(path), "--device", args.device]
            child += ["--rank-repeats", str(args.rank_repeats)]
            row = _run_child(
                child, {"size": args.rank_size, "ranks": ranks}, args.child_timeout, args.threads, launcher
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    single = next((r["update_s"] for r in rows if r.get("ranks") == 1 and "update_s" in r), None)
    for row in rows:
        if single is not None and "update_s" in row:
            row["speedup"] = round(single / row["update_s"], 3)
    return rows


def _run_child(
    args: list[str], label: dict[str, Any], timeout: float, threads: int, launcher: list[str] | None = None
) -> dict[str, Any]:
    """One measurement in its own process (its own peak memory); a row, or the row's error."""
    cmd = [sys.executable, *(launcher or [__file__]), *args, "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**label, "error": f"did not finish within {timeout} s"}
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if "Error" in line] or ["no error line"]
        return {**label, "error": f"exit {done.returncode}: {tail[-1]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


class SavedTensorMeter:
    """Bytes autograd keeps between forward and backward while the meter is open: each distinct
    storage once, the excluded tensors' (parameters, counted as weights) never; live and peak.

    What a GPU must hold for an update's activations, device-independent (measured on CPU). Not
    counted: the transient recomputation of one checkpointed block during backward.
    """

    def __init__(self, exclude: list[torch.Tensor] = ()) -> None:  # type: ignore[assignment]
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._refs: dict[int, list[int]] = {}  # storage pointer -> [saved references, bytes]
        self.live_bytes = self.peak_bytes = 0

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: torch.Tensor) -> Any:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer in self._excluded or storage.nbytes() == 0:
            return tensor
        refs = self._refs.setdefault(pointer, [0, storage.nbytes()])
        if refs[0] == 0:
            self.live_bytes += refs[1]
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        refs[0] += 1
        return _Saved(tensor, self, pointer)

    @staticmethod
    def _unpack(saved: Any) -> torch.Tensor:
        return saved.tensor if isinstance(saved, _Saved) else saved

    def _release(self, pointer: int) -> None:
        refs = self._refs[pointer]
        refs[0] -= 1
        if refs[0] == 0:
            self.live_bytes -= refs[1]
            del self._refs[pointer]


class _Saved:
    """One saved reference; autograd drops it with the graph, after backward."""

    def __init__(self, tensor: torch.Tensor, meter: SavedTensorMeter, pointer: int) -> None:
        self.tensor, self._meter, self._pointer = tensor, meter, pointer

    def __del__(self) -> None:
        self._meter._release(self._pointer)


def _slope(rows: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares slope of log(cost) against log(params_total): cost ∝ params^slope."""
    points = [(math.log(r["params_total"]), math.log(r[key])) for r in rows if r.get(key)]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return round(num / den, 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["tiny", "intermediate", "real"])
    parser.add_argument("--real-dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--decisions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--levers", action="store_true", help="measure the memory levers instead")
    parser.add_argument("--lever-size", default="real")
    parser.add_argument("--lever-decisions", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--record", nargs=2, metavar=("SIZE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--one-lever", nargs=3, metavar=("SIZE", "LEVER", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--ranks", nargs="+", type=int, help="measure update seconds vs data-parallel ranks")
    parser.add_argument("--rank-size", default="tiny", help="the XVLA size of --ranks")
    parser.add_argument("--rank-decisions", type=int, default=16)
    parser.add_argument("--rank-repeats", type=int, default=3)
    parser.add_argument("--rank-child", nargs=2, metavar=("SIZE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--child-timeout", type=float, default=1800, help="seconds per child process")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False on this machine")
    # Child processes: one row as JSON on the last line.
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.decisions, args.device)))
        return
    if args.record:
        record_rollout(args.record[0], args.decisions, Path(args.record[1]))
        print(json.dumps({"recorded": args.record[1]}))
        return
    if args.one_lever:
        print(json.dumps(measure_lever(args.one_lever[0], args.one_lever[1], Path(args.one_lever[2]))))
        return
    if args.rank_child:
        row = measure_rank(args.rank_child[0], Path(args.rank_child[1]), args.device, args.rank_repeats)
        if row is not None:
            print(json.dumps(row), flush=True)
        return
    from lerobot_pirl.tasks.machine import machine_info

    rows = []
    if args.ranks:
        rows = measure_ranks(args)
        result: dict[str, Any] = {"benchmark": "scale_ranks", "launcher": "torchrun --standalone"}
        out = args.out or ("scale_ranks.json" if args.device == "cpu" else f"scale_ranks_{args.device}.json")
    elif args.levers:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rollout.pt"
            size = args.lever_size
            recorded = _run_child(
                ["--record", size, str(path), "--decisions", str(args.lever_decisions)],
                {"size": size, "lever": "record"},
                args.child_timeout,
                args.threads,
            )
            if "error" in recorded:
                rows.append(recorded)
            else:
                for lever in LEVERS:
                    label = {"size": size, "lever": lever}
                    rows.append(
                        _run_child(
                            ["--one-lever", size, lever, str(path)], label, args.child_timeout, args.threads
                        )
                    )
                    print(json.dumps(rows[-1]), flush=True)
        result = {"benchmark": "scale_levers", "gpu_budget_gib": GPU_BYTES / 2**30}
        out = args.out or "scale_levers.json"
    else:
        for size in args.sizes:
            for dtype in args.real_dtypes if size == "real" or size in REAL_POLICIES else ["float32"]:
                one = ["--one", size, dtype, "--decisions", str(args.decisions), "--device", args.device]
                rows.append(_run_child(one, {"size": size, "dtype": dtype}, args.child_timeout, args.threads))
                print(json.dumps(rows[-1]), flush=True)
        float_rows = [r for r in rows if r.get("dtype") == "float32" and "error" not in r]
        result = {
            "benchmark": "scale",
            "growth": {
                key: _slope(float_rows, key)
                for key in ("sample_s_per_decision", "update_s_per_decision", "peak_rss_mb")
            },
        }
        out = args.out or ("scale.json" if args.device == "cpu" else f"scale_{args.device}.json")
    result.update({"date": datetime.date.today().isoformat(), "machine": machine_info(), "rows": rows})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
