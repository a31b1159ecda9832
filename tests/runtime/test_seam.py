"""Pins the LeRobot 0.6 internals `lerobot_pirl.runtime.seam` relies on.

If one of these fails after a LeRobot upgrade, the seam (and only the seam) needs attention.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.configs import free_port, sac_learner_config, write_json
from lerobot.configs.default import DatasetConfig
from lerobot.rl import actor, learner
from lerobot.rl.algorithms import factory
from lerobot.rl.train_rl import TrainRLServerPipelineConfig

from lerobot_pirl import discover
from lerobot_pirl.runtime import seam
from lerobot_pirl.runtime.algorithm_adapter import RecipeAlgorithm
from lerobot_pirl.runtime.cli import select_recipe


@pytest.fixture
def recipe_lookup():
    seam.install_recipe_lookup(discover(blocked=()))
    yield
    seam.uninstall_recipe_lookup()


def test_stock_factory_only_knows_sac() -> None:
    # Why the seam exists: registering a config is not enough for LeRobot to build an algorithm.
    assert seam._STOCK_GET_ALGORITHM_CLASS("sac").__name__ == "SACAlgorithm"
    with pytest.raises(ValueError, match="not available"):
        seam._STOCK_GET_ALGORITHM_CLASS("pi-rl")


def test_make_algorithm_looks_the_class_up_at_call_time(recipe_lookup, tmp_path: Path) -> None:
    from lerobot.policies import make_policy

    cfg = _parsed_config(tmp_path)
    cfg.validate()
    algorithm = factory.make_algorithm(cfg.algorithm, make_policy(cfg.policy, env_cfg=cfg.env))
    assert isinstance(algorithm, RecipeAlgorithm)
    assert algorithm.entry.name == "sac"
    # The learner and actor modules import make_algorithm from the factory, not get_algorithm_class.
    assert learner.make_algorithm is factory.make_algorithm
    assert actor.make_algorithm is factory.make_algorithm


def test_uninstall_restores_stock_lookup(recipe_lookup) -> None:
    seam.uninstall_recipe_lookup()
    assert factory.get_algorithm_class is seam._STOCK_GET_ALGORITHM_CLASS


def test_stock_validate_still_crashes_without_dataset_and_ours_does_not(tmp_path: Path) -> None:
    data = sac_learner_config(tmp_path / "out", free_port())
    with pytest.raises(AttributeError, match="repo_id"):
        TrainRLServerPipelineConfig.validate(_parsed_config(tmp_path, data))  # the stock method
    ours = _parsed_config(tmp_path, data)
    ours.validate()
    assert ours.dataset is None
    assert ours.algorithm.type == "sac" and ours.algorithm.policy_config is ours.policy


def test_validate_with_a_dataset_is_stock(tmp_path: Path) -> None:
    ours = _parsed_config(tmp_path)
    ours.dataset = DatasetConfig(repo_id="user/demos")
    ours.validate()
    assert ours.dataset.repo_id == "user/demos"


def test_saved_config_is_a_plain_lerobot_config(tmp_path: Path) -> None:
    cfg = _parsed_config(tmp_path)
    cfg.validate()
    cfg._save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "train_config.json").read_text())
    assert "recipe" not in saved and saved["algorithm"]["type"] == "sac"
    reloaded = TrainRLServerPipelineConfig.from_pretrained(tmp_path / "train_config.json")
    assert reloaded.algorithm.type == "sac"


def test_actor_cli_keeps_the_undecorated_function() -> None:
    assert callable(actor.actor_cli.__wrapped__)
    assert callable(learner.train)
    # run_stock_actor validates as an actor's and neutralises the config's own validate(), which
    # the stock actor calls first (it would refuse the learner's existing output directory).
    assert "validate" in actor.actor_cli.__wrapped__.__code__.co_names


def _parsed_config(tmp_path: Path, data: dict | None = None) -> seam.RecipeTrainConfig:
    data = data or sac_learner_config(tmp_path / "out", free_port())
    path = write_json(tmp_path / "train_config.json", {**data, "recipe": "sac"})
    _, args = select_recipe([f"--config_path={path}"], discover(blocked=()))
    return seam.parse_train_config(args)


def test_actor_validation_accepts_the_learners_existing_output_dir(tmp_path: Path) -> None:
    cfg = _parsed_config(tmp_path)
    (Path(cfg.output_dir) / "checkpoints" / "000001").mkdir(parents=True)
    with pytest.raises(seam.InvalidConfigError, match="resume=true"):  # as a stock validate() would
        _parsed_config(tmp_path).validate()
    seam.validate_for_actor(cfg)
    assert Path(cfg.output_dir) == tmp_path / "out" and cfg.algorithm.policy_config is cfg.policy


# --- env factory and processors (runtime/envs.py, runtime/processors.py) -----------------------


def test_lerobot_names_the_processor_steps_our_overrides_address() -> None:
    from lerobot.processor import DeviceProcessorStep, ProcessorStepRegistry, TokenizerProcessorStep

    from lerobot_pirl.runtime.processors import DEVICE_STEP, TOKENIZER_STEP

    assert ProcessorStepRegistry.get(TOKENIZER_STEP) is TokenizerProcessorStep
    assert ProcessorStepRegistry.get(DEVICE_STEP) is DeviceProcessorStep
    # A tokenizer step is saved by name only (why runtime.processors bundles the tokenizer).
    step = TokenizerProcessorStep(tokenizer_name=str(_tiny_tokenizer()), max_length=4)
    assert step.get_config()["tokenizer_name"] == str(_tiny_tokenizer())
    assert not hasattr(step, "state_dict") or not step.state_dict()


def _tiny_tokenizer() -> Path:
    from lerobot_pirl.policies.tiny_xvla import TINY_TOKENIZER_DIR

    return TINY_TOKENIZER_DIR


def test_make_env_pre_post_processors_gives_every_xvla_policy_liberos_steps() -> None:
    """Why runtime.processors takes the env's own ``get_env_processors()`` instead."""
    from lerobot.envs import make_env_pre_post_processors
    from lerobot.policies.xvla.processor_xvla import LiberoProcessorStep

    from lerobot_pirl.envs import PickCubeEnvConfig
    from lerobot_pirl.policies.tiny_xvla import tiny_xvla_config

    pre, _ = make_env_pre_post_processors(PickCubeEnvConfig(), tiny_xvla_config(21, 4))
    assert any(isinstance(step, LiberoProcessorStep) for step in pre.steps)
    own_pre, own_post = PickCubeEnvConfig().get_env_processors()
    assert own_pre.steps == [] and own_post.steps == []


def test_make_env_autoresets_in_the_same_step_with_the_final_observation_in_info() -> None:
    """runtime.envs.step_env unpacks exactly this layout."""
    import numpy as np
    from lerobot.envs import make_env

    from lerobot_pirl.envs import PickCubeEnvConfig

    config = PickCubeEnvConfig(episode_length=1, physics_dt=0.005)
    vec = make_env(config, n_envs=1)[config.type][0]
    try:
        vec.reset(seed=[0])
        observation, _, _, truncated, info = vec.step(np.zeros((1, 4), np.float32))
        assert bool(truncated[0])
        final = info["final_obs"]
        assert final.dtype == object and final.shape == (1,)
        assert final[0]["agent_pos"].shape == (21,) and observation["agent_pos"].shape == (1, 21)
        assert "success" in info["final_info"]
        assert not np.array_equal(final[0]["agent_pos"], observation["agent_pos"][0])  # already reset
    finally:
        vec.close()


def test_third_party_env_discovery_is_lerobots_function() -> None:
    from lerobot.utils import import_utils

    from lerobot_pirl.runtime import envs

    assert envs.register_third_party_plugins is import_utils.register_third_party_plugins
    assert "lerobot_env_" in import_utils.register_third_party_plugins.__doc__


def test_transport_pieces_the_learner_and_actor_build_on() -> None:
    """`transport.start_learner_server` overrides these LearnerService methods, `transport.connect_actor`
    streams through these generators and opens its (TLS) channel with LeRobot's options."""
    import inspect

    from lerobot.rl.learner_service import LearnerService
    from lerobot.transport.utils import grpc_channel_options

    for method in ("Ready", "StreamParameters", "SendTransitions", "SendInteractions"):
        assert callable(getattr(LearnerService, method))
    # Called positionally as (stop event, queue, timeout).
    assert list(inspect.signature(actor.transitions_stream).parameters) == [
        "shutdown_event",
        "transitions_queue",
        "timeout",
    ]
    assert list(inspect.signature(actor.interactions_stream).parameters) == [
        "shutdown_event",
        "interactions_queue",
        "timeout",
    ]
    options = grpc_channel_options()
    assert isinstance(options, list) and all(isinstance(o, tuple) and len(o) == 2 for o in options)


def test_received_payloads_are_loaded_weights_only() -> None:
    """The learner feeds received bytes to LeRobot's ``bytes_to_transitions``; it must keep
    ``torch.load(weights_only=True)``, so a payload cannot run code on the learner."""
    import io
    import pickle

    from lerobot.transport.utils import bytes_to_transitions

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    import torch

    buffer = io.BytesIO()
    torch.save([Payload()], buffer, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        bytes_to_transitions(buffer.getvalue())


def test_lerobots_actor_drives_any_env_type_through_the_env_path_we_install() -> None:
    """``act_with_policy`` reads ``make_robot_env`` / ``make_processors`` from its module when it
    runs; installed, they build a ``pirl_pick_cube`` env that LeRobot's own step functions drive:
    observations in policy keys with a batch dim, the executed action where the actor reads it."""
    import numpy as np
    import torch
    from lerobot.processor import TransitionKey
    from lerobot.rl import gym_manipulator

    from lerobot_pirl.envs.pick_cube import PickCubeEnvConfig

    assert {"make_robot_env", "make_processors"} <= set(actor.act_with_policy.__code__.co_names)
    seam.install_actor_env_path()
    try:
        config = PickCubeEnvConfig(episode_length=3)
        env, teleop = actor.make_robot_env(cfg=config)
        env_processor, action_processor = actor.make_processors(env, teleop, config, "cpu")
        assert teleop is None
        transition = gym_manipulator.reset_and_build_transition(env, env_processor, action_processor)
        state = transition[TransitionKey.OBSERVATION]["observation.state"]
        assert state.shape == (1, 21) and state.dtype == torch.float32
        action = torch.tensor([0.1, -0.2, 0.3, 0.0])
        steps = []
        for _ in range(3):
            transition = gym_manipulator.step_env_and_process_transition(
                env, transition, action.clone(), env_processor, action_processor
            )
            steps.append(transition)
        assert torch.equal(steps[0][TransitionKey.COMPLEMENTARY_DATA]["teleop_action"], action)
        assert [bool(t[TransitionKey.TRUNCATED]) for t in steps] == [False, False, True]  # the time limit
        assert np.isfinite(float(steps[0][TransitionKey.REWARD]))
        env.close()
    finally:
        seam.uninstall_actor_env_path()
    assert actor.make_robot_env is gym_manipulator.make_robot_env
    assert actor.make_processors is gym_manipulator.make_processors


def test_lerobot_eval_looks_its_processor_factories_up_in_its_module_at_call_time() -> None:
    """`seam.install_eval_processors` replaces the two names ``eval_main`` reads as globals."""
    import inspect

    from lerobot.scripts import lerobot_eval

    stock = (lerobot_eval.make_pre_post_processors, lerobot_eval.make_env_pre_post_processors)
    code = inspect.unwrap(lerobot_eval.eval_main).__code__
    assert {"make_pre_post_processors", "make_env_pre_post_processors"} <= set(code.co_names)

    def policy_side(*args, **kwargs):
        raise AssertionError

    def env_side(*args, **kwargs):
        raise AssertionError

    seam.install_eval_processors(policy_side, env_side)
    try:
        assert lerobot_eval.make_pre_post_processors is policy_side
        assert lerobot_eval.make_env_pre_post_processors is env_side
    finally:
        seam.uninstall_eval_processors()
    assert (lerobot_eval.make_pre_post_processors, lerobot_eval.make_env_pre_post_processors) == stock


def test_lerobot_resolves_policy_path_in_validate_through_the_method_we_override() -> None:
    """`RecipeTrainConfig` skips ``_resolve_pretrained_from_cli`` once `policy_from_checkpoint` has
    built the policy; `policy_from_checkpoint` reads the path and overrides as LeRobot does."""
    import inspect

    from lerobot.configs import parser
    from lerobot.configs.train import TrainPipelineConfig

    assert "self._resolve_pretrained_from_cli()" in inspect.getsource(TrainPipelineConfig.validate)
    source = inspect.getsource(TrainPipelineConfig._resolve_pretrained_from_cli)
    assert 'parser.get_path_arg("policy")' in source and 'parser.get_yaml_overrides("policy")' in source
    assert parser.get_path_arg("policy", ["--policy.path=/x"]) == "/x"
    assert parser.get_cli_overrides("policy", ["--policy.path=/x", "--policy.device=cpu"]) == ["--device=cpu"]


def test_lerobots_metaworld_env_parts_our_env_type_builds_on() -> None:
    """`lerobot_pirl.envs.metaworld` subclasses LeRobot's ``MetaworldEnv``: its constructor, its
    ``_ensure_env`` (per-seed positions), its ``reset`` (which formats through
    ``_format_raw_obs``) and its ``render`` (the corner2 flip, reading ``_ensure_env``, ``_env``
    and ``camera_name`` only) are used as they are."""
    import inspect

    from lerobot.envs.metaworld import MetaworldEnv

    parameters = inspect.signature(MetaworldEnv.__init__).parameters
    assert {"task", "camera_name", "obs_type", "observation_width", "observation_height"} <= set(parameters)
    ensure = inspect.getsource(MetaworldEnv._ensure_env)
    assert "_freeze_rand_vec = False" in ensure and "seeded_rand_vec = True" in ensure
    reset = inspect.getsource(MetaworldEnv.reset)
    assert "self._env.seed(seed)" in reset and "self._format_raw_obs(raw_obs)" in reset
    render = inspect.getsource(MetaworldEnv.render)
    reads = set(re.findall(r"self\.(\w+)", render))
    assert reads == {"_ensure_env", "_env", "camera_name"} and "np.flip(image, (0, 1))" in render
