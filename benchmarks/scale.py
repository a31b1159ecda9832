"""What πRL costs as XVLA grows to its real size, on CPU: parameters, seconds per decision, memory.

Three sizes, each built from an ``XVLAConfig`` with random weights (nothing downloads; token ids
stand in for the tokenizer): the demo's tiny model (the shipped checkpoint's config), an
intermediate one (Florence-2-base dimensions, a 12-layer 512-wide transformer) and the real size
(Florence-2-large dimensions, LeRobot's default 24-layer 1024-wide transformer). For each: πRL
attached (frozen VLM, as the recipe's default), decisions sampled with flow_sde and with
flow_noise, and one πRL update (flow_sde, one epoch over a small rollout), every size in its own
process so its peak RSS is its own. One torch thread per process unless ``--threads``.

    python benchmarks/scale.py [--sizes tiny intermediate real] [--decisions 3] [--threads 2]

JSON: ``benchmarks/results/scale.json``, one row per (size, dtype) with ``params_total``,
``params_trainable``, ``sample_s_per_decision``, ``update_s_per_decision``, ``peak_rss_mb``,
``dtype``, ``device``, and ``growth``: the log-log slope of each cost against ``params_total``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import subprocess
import sys
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


def xvla_config(size: str, dtype: str):
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.xvla.configuration_xvla import XVLAConfig

    if size == "tiny":
        from lerobot.configs.policies import PreTrainedConfig

        from lerobot_pirl.demo.sft import SHIPPED_CHECKPOINT

        config = PreTrainedConfig.from_pretrained(str(SHIPPED_CHECKPOINT))
        config.dtype = dtype
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
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
            "observation.images.front": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 224, 224)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
    )


def _observation(config, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One preprocessed observation (no batch dim): state, image, token ids (a fixed instruction)."""
    from lerobot_pirl.policies.tiny_xvla import language_tokens

    image_shape = config.input_features["observation.images.front"].shape
    vocab = config.florence_config["text_config"]["vocab_size"]
    return {
        "observation.state": torch.randn(STATE_DIM, generator=generator),
        "observation.images.front": torch.rand(*image_shape, generator=generator),
        "observation.language.tokens": language_tokens(1, config.tokenizer_max_length, vocab)[0],
    }


def _recipe(config, noise_method: str, rollout: int):
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    from lerobot_pirl.recipes.pi_rl.config import PiRLConfig
    from lerobot_pirl.recipes.pi_rl.recipe import PiRLRecipe

    torch.manual_seed(0)
    policy = XVLAPolicy(config)
    settings = PiRLConfig(
        policy_config=config,
        noise_method=noise_method,
        rollout_decisions=rollout,
        minibatch_size=max(rollout // 2, 1),
        update_epochs=1,
        value_hidden_dims=[256, 256],
        critic_warmup_updates=0,
    )
    return PiRLRecipe(policy, settings)


def _sample(recipe, observations: list[dict[str, torch.Tensor]]) -> tuple[float, list[Any]]:
    """Seconds per decision sampling one observation at a time (after one warm-up decision)."""
    sampler = recipe.sampler()
    with torch.no_grad():
        sampler.act({k: v[None] for k, v in observations[0].items()})
        results = []
        started = time.perf_counter()
        for observation in observations:
            actions, samples = sampler.act({k: v[None] for k, v in observation.items()})
            results.append((observation, actions[0], samples[0]))
    return (time.perf_counter() - started) / len(observations), results


def measure(size: str, dtype: str, decisions: int) -> dict[str, Any]:
    from lerobot_pirl.recipes.on_policy import ActorDecision

    config = xvla_config(size, dtype)
    generator = torch.Generator().manual_seed(0)
    observations = [_observation(config, generator) for _ in range(decisions)]
    row: dict[str, Any] = {"size": size, "dtype": dtype, "device": "cpu", "threads": torch.get_num_threads()}

    started = time.perf_counter()
    recipe = _recipe(config, "flow_noise", decisions)
    row["build_s"] = round(time.perf_counter() - started, 1)
    row["sample_s_per_decision_flow_noise"] = round(_sample(recipe, observations)[0], 4)
    del recipe

    recipe = _recipe(config, "flow_sde", decisions)
    parameters = list(recipe.policy.parameters())
    row["params_total"] = sum(p.numel() for p in parameters)
    row["params_trainable"] = sum(p.numel() for p in parameters if p.requires_grad)
    row["params_vlm"] = sum(p.numel() for p in recipe.policy.flow_adapter().vlm_parameters())
    sample_s, sampled = _sample(recipe, observations)
    row["sample_s_per_decision"] = round(sample_s, 4)
    row["chunk"] = {
        "size": config.chunk_size,
        "executed": recipe.sampler().executed_steps,
        "K": config.num_denoising_steps,
    }
    for index, (observation, actions, sample) in enumerate(sampled):
        transition = recipe.encode_decision(
            ActorDecision(
                observation=observation,
                next_observation=observation,
                actions=actions,
                rewards=[float(index % 2)] * recipe.sampler().executed_steps,
                terminated=index == len(sampled) - 1,
                truncated=False,
                sample=sample,
                policy_version=0,
                actor_id=0,
                episode_id=0,
                decision_index=index,
            )
        )
        assert recipe.accept(transition)
    recipe.build_optimizers()
    assert recipe.rollout_ready()
    started = time.perf_counter()
    metrics = recipe.update_step(iter([recipe.take_rollout()]), 0)
    row["update_s_per_decision"] = round((time.perf_counter() - started) / decisions, 4)
    row["update_finite"] = bool(
        math.isfinite(metrics["loss_actor"]) and math.isfinite(metrics["pi_rl_grad_norm"])
    )
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


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
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--child-timeout", type=float, default=1800, help="seconds per (size, dtype)")
    parser.add_argument("--out", default="scale.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:  # a child process: one row as JSON on the last line
        print(json.dumps(measure(args.one[0], args.one[1], args.decisions)))
        return
    from lerobot_pirl.demo.machine import machine_info

    rows = []
    for size in args.sizes:
        for dtype in args.real_dtypes if size == "real" else ["float32"]:
            cmd = [sys.executable, __file__, "--one", size, dtype, "--decisions", str(args.decisions)]
            cmd += ["--threads", str(args.threads)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
            try:
                done = subprocess.run(
                    cmd, capture_output=True, text=True, env=env, timeout=args.child_timeout
                )
            except subprocess.TimeoutExpired:
                row = {"size": size, "dtype": dtype, "error": f"did not finish within {args.child_timeout} s"}
            else:
                if done.returncode != 0:
                    tail = [line for line in done.stderr.splitlines() if "Error" in line] or ["no error line"]
                    row = {"size": size, "dtype": dtype, "error": f"exit {done.returncode}: {tail[-1]}"}
                else:
                    row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    float_rows = [r for r in rows if r.get("dtype") == "float32" and "error" not in r]
    result = {
        "benchmark": "scale",
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "rows": rows,
        "growth": {
            key: _slope(float_rows, key)
            for key in ("sample_s_per_decision", "update_s_per_decision", "peak_rss_mb")
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
