"""``lerobot-pirl``: the project's own commands.

* ``demo``: RL from a shipped SFT checkpoint on an embedded task, PandaPickCube or MetaWorld MT10
  (``lerobot_pirl.demo``);
* ``eval``: LeRobot's ``lerobot-eval`` with this package's env types (``runtime.lerobot_eval``);
* ``tls-keygen``: a self-signed certificate for the learner's TLS (``runtime.cli.tls_keygen``);
* ``random-checkpoint``: a random tiny XVLA shaped for an env, a plumbing check
  (``runtime.random_checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from lerobot_pirl.demo.pi_rl_demo import DemoConfig, run_demo
from lerobot_pirl.demo.processes import DemoError
from lerobot_pirl.flow_rl.settings import NOISE_METHODS
from lerobot_pirl.tasks.embedded import EMBEDDED_TASKS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lerobot-pirl")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="πRL- or DSRL-fine-tune a shipped tiny SFT checkpoint (XVLA; SmolVLA on PandaPickCube) on "
        "PandaPickCube or MetaWorld MT10 (learner + actors)",
        description="Start a pi-rl learner and actors on localhost from the shipped SFT checkpoint, "
        "evaluate its checkpoints with the deterministic sampler and write learning_curve.{json,png}.",
    )
    defaults = DemoConfig()
    demo.add_argument(
        "--env",
        choices=list(EMBEDDED_TASKS),
        default=defaults.task,
        help="pick_cube: gym-hil PandaPickCube; metaworld: MetaWorld MT10, ten tasks told apart by "
        "their instructions (each from its own shipped checkpoint)",
    )
    demo.add_argument(
        "--policy",
        choices=sorted({policy for task in EMBEDDED_TASKS.values() for policy in task.checkpoints}),
        default=None,
        help="start from the task's shipped SFT checkpoint of this policy type (default xvla; "
        + "; ".join(f"{t.name}: {', '.join(t.checkpoints)}" for t in EMBEDDED_TASKS.values())
        + ")",
    )
    demo.add_argument(
        "--recipe",
        choices=["pi-rl", "dsrl"],
        default="pi-rl",
        help="pi-rl: fine-tune the policy (πRL); dsrl: keep it frozen and learn its initial noise with "
        "LeRobot's SAC (LeRobot's own learner and actor)",
    )
    demo.add_argument("--noise-method", choices=NOISE_METHODS, default=defaults.noise_method)
    demo.add_argument(
        "--env-steps",
        type=int,
        default=None,
        help="training budget in env steps, summed over actors (default: "
        + ", ".join(f"{t.name} {t.demo_env_steps}" for t in EMBEDDED_TASKS.values())
        + ")",
    )
    demo.add_argument("--actors", type=int, default=defaults.actors)
    demo.add_argument(
        "--eval-every-updates",
        type=int,
        default=None,
        help="default: "
        + ", ".join(f"{t.name} {t.demo_eval_every_updates}" for t in EMBEDDED_TASKS.values()),
    )
    demo.add_argument(
        "--first-eval-update",
        type=int,
        default=defaults.first_eval_update,
        help="also evaluate this early update's checkpoint",
    )
    demo.add_argument(
        "--eval-episodes",
        type=int,
        default=None,
        help="deterministic episodes per evaluation, per task on MT10 (default: "
        + ", ".join(f"{t.name} {t.eval_episodes}" for t in EMBEDDED_TASKS.values())
        + ")",
    )
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    demo.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a pretrained_model folder of a policy with a πRL adapter (default: the task's shipped "
        "SFT checkpoint, --policy)",
    )
    demo.add_argument(
        "--algorithm",
        type=json.loads,
        default={},
        help="PiRLConfig overrides as JSON, e.g. '{\"actor_lr\": 3e-4}' (with --recipe dsrl: "
        "SACAlgorithmConfig fields)",
    )
    demo.add_argument(
        "--env-overrides",
        type=json.loads,
        default={},
        help="training env overrides (fields of the task's env config) as JSON, e.g. "
        "'{\"physics_dt\": 0.002}'",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    commands.add_parser(
        "eval",
        add_help=False,
        help="LeRobot's lerobot-eval with this package's env types: same flags, same eval_info.json "
        "(e.g. --policy.path=CKPT --env.type=pirl_pick_cube --eval.n_episodes=50)",
    )
    commands.add_parser(
        "random-checkpoint",
        add_help=False,
        help="a random tiny XVLA pretrained_model folder shaped for an env's features, to check an env "
        "with the learner and actors (--env.type=NAME [--env.FIELD=...] or --config_path=train_config.json; "
        "--output_dir=DIR)",
    )
    keygen = commands.add_parser(
        "tls-keygen",
        help="write a self-signed certificate and key for the learner's TLS (learner.crt, learner.key)",
        description="Generate a self-signed TLS certificate for the learner's address(es). Point the "
        "learner's algorithm.tls_cert_path / tls_key_path at the two files and copy learner.crt to "
        "the actor machines (their algorithm.tls_cert_path or tls_ca_path).",
    )
    keygen.add_argument("--out", type=Path, required=True, help="directory for learner.crt and learner.key")
    keygen.add_argument(
        "--host",
        action="append",
        default=None,
        help="a name or IP the actors use to reach the learner (repeatable; default localhost, 127.0.0.1)",
    )
    return parser


def _random_checkpoint(argv: list[str]) -> None:
    import torch

    from lerobot_pirl.errors import LerobotPirlError
    from lerobot_pirl.runtime.random_checkpoint import main as random_checkpoint

    torch.set_num_threads(1)
    try:
        folder = random_checkpoint(argv)
    except LerobotPirlError as exc:
        print(f"lerobot-pirl random-checkpoint: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"a random tiny XVLA for this env: {folder} (use it as --policy.path)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval"]:  # every flag is lerobot-eval's: its own parser reads them
        from lerobot_pirl.runtime.lerobot_eval import main as lerobot_eval

        lerobot_eval(argv[1:])
        return
    if argv[:1] == ["random-checkpoint"]:  # LeRobot-style --env.* flags, parsed by draccus
        _random_checkpoint(argv[1:])
        return
    args = _parser().parse_args(argv)
    if args.command == "tls-keygen":
        from lerobot_pirl.runtime.cli import tls_keygen

        tls_keygen(args.out, args.host or ["localhost", "127.0.0.1"])
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)  # this process only follows files and plots
    config = DemoConfig(
        task=args.env,
        noise_method=args.noise_method,
        env_steps=args.env_steps,
        actors=args.actors,
        eval_every_updates=args.eval_every_updates,
        first_eval_update=args.first_eval_update,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
        output_dir=args.output_dir,
        policy=args.policy,
        checkpoint=args.checkpoint,
        algorithm=args.algorithm,
        env=args.env_overrides,
        progress=not args.no_progress,
    )
    # SIGTERM unwinds like Ctrl-C, so the learner, actors and evaluator are stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.recipe == "dsrl":
            from lerobot_pirl.demo.dsrl_demo import run_dsrl_demo

            summary = run_dsrl_demo(config)
        else:
            summary = run_demo(config)
    except DemoError as exc:
        print(f"lerobot-pirl demo: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        where = config.output_dir
        print(f"lerobot-pirl demo: interrupted; checkpoints, logs, evaluations: {where}", file=sys.stderr)
        raise SystemExit(130) from None
    sft = summary["sft_success_rate"]
    figure = "learning_curve.json" if args.recipe == "dsrl" else "learning_curve.png"
    print(
        f"success rate {'-' if sft is None else f'{sft:.2f}'} (SFT) -> {summary['final_success_rate']:.2f} "
        f"after {summary['evaluations'][-1]['env_steps']} env steps ({summary['wall_s'] / 60:.1f} min); "
        f"learning curve: {config.output_dir / figure}"
    )


if __name__ == "__main__":
    main()
