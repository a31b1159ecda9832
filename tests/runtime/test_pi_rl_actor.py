"""PI-RL across processes: a learner and two actors on gym-hil PandaPickCube, over localhost gRPC."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.configs import free_port, pi_rl_learner_config, write_json
from helpers.learner_process import (
    actor_counter,
    checkpoint_steps,
    learner_final_counters,
    start_actor,
    start_learner,
    stop,
    wait_all,
    wait_for,
)

from lerobot_pirl.envs.pick_cube import ACTION_DIM, STATE_DIM

_counter = actor_counter
_final_counters = learner_final_counters


def _pick_cube_config(output_dir: Path, env: dict | None = None, **algorithm) -> dict:
    """Tiny XVLA on PandaPickCube: flow_sde, 20-decision rollouts, 20-step episodes, no update cap."""
    return pi_rl_learner_config(
        output_dir,
        free_port(),
        state_dim=STATE_DIM,
        action_dim=ACTION_DIM,
        noise_method="flow_sde",
        rollout_decisions=20,
        minibatch_size=10,
        max_updates=1000,
        env={"episode_length": 20, **(env or {})},
        **algorithm,
    )


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_pi_rl_two_actors_feed_one_learner_and_stop_cleanly(tmp_path: Path) -> None:
    """Two actors of three envs each (batched sampling, shaped reward, 20 controller substeps)."""
    output_dir = tmp_path / "out"
    data = _pick_cube_config(output_dir, envs_per_actor=3, env={"physics_dt": 0.005, "shaping_coef": 1.0})
    config = write_json(tmp_path / "train_config.json", data)
    learner = start_learner(config, tmp_path / "learner.log")
    actors = [start_actor(config, i, tmp_path / f"actor{i}.log") for i in range(2)]
    try:

        def newer_version_finished(i: int) -> bool:
            """Actor i finished an episode sampled with pushed weights (its envs run in lockstep, so
            that is a round of episodes after the one that was running when the weights came)."""
            log = tmp_path / f"actor{i}.log"
            return log.exists() and re.search(r"version=[1-9]", log.read_text()) is not None

        def done_or_died() -> bool:
            done = 3 in checkpoint_steps(output_dir) and all(newer_version_finished(i) for i in range(2))
            return done or any(p.poll() is not None for p in [learner, *actors])

        wait_for(done_or_died, 420, "3 pi-rl updates and an episode of a pushed version per actor")
        assert learner.poll() is None, (tmp_path / "learner.log").read_text()[-3000:]
        for i, actor in enumerate(actors):
            assert actor.poll() is None, (tmp_path / f"actor{i}.log").read_text()[-3000:]
        for actor in actors:
            actor.send_signal(signal.SIGTERM)
        codes = [actor.wait(timeout=60) for actor in actors]
        time.sleep(2)  # what the actors flushed on exit reaches the learner before it stops
    finally:
        for actor in actors:
            if actor.poll() is None:
                actor.kill()
        learner_code = stop(learner, timeout=60)

    actor_logs = [(tmp_path / f"actor{i}.log").read_text() for i in range(2)]
    learner_log = (tmp_path / "learner.log").read_text()
    assert codes == [0, 0], actor_logs[0][-2000:]
    assert learner_code == 0, learner_log[-2000:]

    queued = sum(_counter(log, "decisions_queued") for log in actor_logs)
    delivered = sum(_counter(log, "decisions_delivered") for log in actor_logs)
    updates, received, consumed, dropped, pending, rejected = _final_counters(learner_log)
    assert updates >= 3
    # After a clean stop everything queued was handed to gRPC and arrived, uncorrupted.
    assert received == delivered == queued and rejected == 0
    assert received == consumed + dropped + pending
    for log in actor_logs:
        # Pushed weights reached every actor: a late-starting actor's first (blocking) load can
        # already be a pushed version, so one load is all that is guaranteed.
        assert _counter(log, "weights_loaded") >= 1
        versions = [int(v) for v in re.findall(r"version=(\d+)", log)]
        assert max(versions) >= 1  # policy versions advanced on the actor side


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_actors_stop_by_themselves_when_the_learner_finishes_training(tmp_path: Path) -> None:
    """At max_updates the learner sends its last weights and then the end-of-training notice; each
    actor that took part prints one line and exits 0, with nothing sending it a signal.

    One actor alone can fill both rollouts in a few episodes before a slower-starting second
    actor first reaches the learner: that actor finds no learner and exits 2 with the transport's
    error. Which of the two cases happens depends on start-up order, so the test asserts the
    guaranteed part: whoever ran an episode stopped cleanly, whoever never connected said so.
    """
    data = _pick_cube_config(tmp_path / "out", actor_connect_attempts=4)  # a late actor gives up in ~8 s
    data["algorithm"]["max_updates"] = 2
    config = write_json(tmp_path / "train_config.json", data)
    learner_log = tmp_path / "learner.log"
    learner = start_learner(config, learner_log)

    def serving() -> bool:
        return "serving on" in learner_log.read_text() or learner.poll() is not None

    try:  # the actors start once the learner serves, so usually both take part
        wait_for(serving, 240, "the learner to serve")
    except BaseException:
        stop(learner)
        raise
    actors = [start_actor(config, i, tmp_path / f"actor{i}.log") for i in range(2)]
    codes = wait_all([learner, *actors], timeout=420)
    logs = [(tmp_path / name).read_text() for name in ("learner.log", "actor0.log", "actor1.log")]
    context = "\n\n".join(log[-2000:] for log in logs)
    assert codes[0] == 0, context
    assert 2 in checkpoint_steps(tmp_path / "out")
    took_part = 0
    for code, actor_log in zip(codes[1:], logs[1:], strict=True):
        assert "Traceback" not in actor_log, context
        ran_episodes = re.search(r"\[ON-POLICY ACTOR\] actor \d episode 1:", actor_log) is not None
        took_part += ran_episodes
        if code == 0:  # connected before the end: told that training is over
            assert "lerobot-pirl-actor: the learner finished training after 2 updates; actor" in actor_log
            assert "no learner answered" not in actor_log
            assert _counter(actor_log, "weights_loaded") >= ran_episodes  # it sampled with pushed weights
        else:  # reached the learner only after it had finished: the clear error, exit 2
            assert not ran_episodes, context
            assert code == 2 and "lerobot-pirl-actor: error: no learner answered" in actor_log, context
    assert took_part >= 1, context  # the learner's two rollouts came from somewhere


def _updates(log: Path) -> int:
    found = re.findall(r"\[ON-POLICY LEARNER\] update (\d+):", log.read_text()) if log.exists() else []
    return int(found[-1]) if found else 0


def _last_queued(text: str) -> int:
    found = re.findall(r"decisions_queued_total=(\d+)", text)
    return int(found[-1]) if found else 0


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_actor_killed_mid_episode_restarts_and_the_learner_keeps_serving(tmp_path: Path) -> None:
    data = _pick_cube_config(tmp_path / "out")
    data["save_freq"] = 1000
    config = write_json(tmp_path / "train_config.json", data)
    learner_log = tmp_path / "learner.log"
    learner = start_learner(config, learner_log)
    survivor = start_actor(config, 0, tmp_path / "actor0.log")
    victim = start_actor(config, 1, tmp_path / "actor1_first.log")
    restarted = None
    try:
        wait_for(lambda: _updates(learner_log) >= 2 or learner.poll() is not None, 300, "2 updates")
        victim.send_signal(signal.SIGKILL)  # mid-episode: episodes are only sent when they end
        victim.wait(timeout=30)
        killed_at = _updates(learner_log)
        wait_for(lambda: _updates(learner_log) >= killed_at + 2, 120, "updates from the surviving actor")
        restarted = start_actor(config, 1, tmp_path / "actor1_second.log")
        wait_for(
            lambda: _last_queued((tmp_path / "actor1_second.log").read_text()) > 0, 120, "the restarted actor"
        )
        for actor in (survivor, restarted):
            actor.send_signal(signal.SIGTERM)
        codes = [actor.wait(timeout=60) for actor in (survivor, restarted)]
        time.sleep(2)
    finally:
        for actor in (survivor, victim, restarted):
            if actor is not None and actor.poll() is None:
                actor.kill()
        learner_code = stop(learner, timeout=60)

    assert codes == [0, 0] and learner_code == 0
    # The actors stopped by SIGTERM flushed their queues: everything they queued was delivered.
    clean_logs = [(tmp_path / name).read_text() for name in ("actor0.log", "actor1_second.log")]
    flushed = sum(_counter(log, "decisions_delivered") for log in clean_logs)
    assert flushed == sum(_counter(log, "decisions_queued") for log in clean_logs)
    # The killed actor's queued episodes may not all have left the process before SIGKILL (even
    # one handed to gRPC can die in its buffers). What is guaranteed: its episodes arrive in order
    # and whole, so the learner holds a prefix of them — 0 or one of its logged running totals.
    victim_log = (tmp_path / "actor1_first.log").read_text()
    victim_totals = [0, *map(int, re.findall(r"decisions_queued_total=(\d+)", victim_log))]
    _, received, consumed, dropped, pending, rejected = _final_counters(learner_log.read_text())
    assert rejected == 0
    assert received - flushed in victim_totals, (received, flushed, victim_totals)
    assert received == consumed + dropped + pending
    versions = [int(v) for v in re.findall(r"version=(\d+)", (tmp_path / "actor1_second.log").read_text())]
    assert min(versions) >= 2  # the restarted actor got current weights, not version 0


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_an_actor_beyond_max_actors_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    data = _pick_cube_config(tmp_path / "out", max_actors=1)
    config = write_json(tmp_path / "train_config.json", data)
    learner = start_learner(config, tmp_path / "learner.log")
    admitted = start_actor(config, 0, tmp_path / "actor0.log")
    extra = None
    try:
        wait_for(
            lambda: _last_queued((tmp_path / "actor0.log").read_text()) > 0 or admitted.poll() is not None,
            300,
            "the admitted actor's first episode",
        )
        extra = start_actor(config, 1, tmp_path / "actor1.log")
        code = extra.wait(timeout=180)  # refused at the handshake: it exits, it does not wait
        assert admitted.poll() is None, (tmp_path / "actor0.log").read_text()[-2000:]
        admitted.send_signal(signal.SIGTERM)
        assert admitted.wait(timeout=60) == 0
    finally:
        for actor in (admitted, extra):
            if actor is not None and actor.poll() is None:
                actor.kill()
        stop(learner, timeout=60)
    refused_log = (tmp_path / "actor1.log").read_text()
    assert code == 2, refused_log[-2000:]
    assert "lerobot-pirl-actor: error: the learner at 127.0.0.1:" in refused_log
    assert "already serves algorithm.max_actors=1 actors; raise max_actors" in refused_log
    # The refusal is the process's last word: one line, not a traceback.
    assert refused_log.strip().splitlines()[-1].startswith("lerobot-pirl-actor: error: the learner at")


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_tls_and_token_train_and_an_actor_with_the_wrong_token_is_refused(tmp_path: Path) -> None:
    """Learner and actor processes on TLS with a shared token (a certificate made by
    ``lerobot-pirl tls-keygen``): updates run; an actor with another token exits with a clear
    error and nothing of it is ingested; the token is in no log and in no saved config."""
    token = "a-token-only-this-test-knows"
    keygen = subprocess.run(
        [sys.executable, "-m", "lerobot_pirl.commands", "tls-keygen", "--out", str(tmp_path / "tls")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert keygen.returncode == 0, keygen.stderr
    data = _pick_cube_config(
        tmp_path / "out",
        tls_cert_path=str(tmp_path / "tls" / "learner.crt"),
        tls_key_path=str(tmp_path / "tls" / "learner.key"),
        auth_token_env="PIRL_TOKEN",
    )
    config = write_json(tmp_path / "train_config.json", data)
    learner = start_learner(config, tmp_path / "learner.log", env={"PIRL_TOKEN": token})
    trusted = start_actor(config, 0, tmp_path / "actor0.log", env={"PIRL_TOKEN": token})
    intruder = None
    try:
        wait_for(
            lambda: _updates(tmp_path / "learner.log") >= 1 or learner.poll() is not None, 300, "1 update"
        )
        intruder = start_actor(config, 1, tmp_path / "actor1.log", env={"PIRL_TOKEN": "guessed"})
        intruder_code = intruder.wait(timeout=180)
        trusted.send_signal(signal.SIGTERM)
        trusted_code = trusted.wait(timeout=60)
        time.sleep(2)
    finally:
        for actor in (trusted, intruder):
            if actor is not None and actor.poll() is None:
                actor.kill()
        learner_code = stop(learner, timeout=60)
    logs = {name: (tmp_path / name).read_text() for name in ("learner.log", "actor0.log", "actor1.log")}
    assert (learner_code, trusted_code) == (0, 0), logs["learner.log"][-2000:]
    assert _updates(tmp_path / "learner.log") >= 1
    assert intruder_code == 2, logs["actor1.log"][-2000:]
    assert "refused this actor: missing or wrong token" in logs["actor1.log"]
    _, received, _, _, _, rejected = _final_counters(logs["learner.log"])
    assert rejected == 0 and received == _counter(logs["actor0.log"], "decisions_delivered")
    saved = [p.read_text() for p in (tmp_path / "out").rglob("*.json")]
    assert all(token not in text for text in [*logs.values(), *saved])


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_actors_reconnect_to_a_restarted_learner_and_training_continues(tmp_path: Path) -> None:
    """SIGKILL the learner under two live actors and restart it with resume=true: the actors
    reconnect on their own (bounded retries with backoff), get the resumed weights and train on;
    every episode they queued is delivered or counted as lost, never dropped silently."""
    output_dir = tmp_path / "out"
    data = _pick_cube_config(output_dir)
    data["save_freq"] = 1
    config = write_json(tmp_path / "train_config.json", data)
    first_log, second_log = tmp_path / "learner1.log", tmp_path / "learner2.log"
    learner = start_learner(config, first_log)
    actors = [start_actor(config, i, tmp_path / f"actor{i}.log") for i in range(2)]
    try:

        def both_acting_and_checkpoint_2() -> bool:
            """One actor can fill the first rollouts alone while the other still starts up; only an
            actor that has run an episode is connected, so only then must it notice the loss."""
            queued = all(_last_queued((tmp_path / f"actor{i}.log").read_text()) > 0 for i in range(2))
            return (2 in checkpoint_steps(output_dir) and queued) or learner.poll() is not None

        wait_for(both_acting_and_checkpoint_2, 300, "checkpoint 2 and an episode from each actor")
        assert learner.poll() is None, first_log.read_text()[-3000:]
        learner.send_signal(signal.SIGKILL)
        learner.wait(timeout=30)
        resumed_at = int((output_dir / "checkpoints" / "last").resolve().name)
        wait_for(
            lambda: all(
                "the learner went away" in (tmp_path / f"actor{i}.log").read_text() for i in range(2)
            ),
            60,
            "both actors noticing the lost learner",
        )
        learner = start_learner(config, second_log, "--resume=true")

        def acting_with_resumed_weights(i: int) -> bool:
            log = (tmp_path / f"actor{i}.log").read_text()
            after = log.split("reconnected:")[1] if "reconnected:" in log else ""
            return any(int(v) >= resumed_at + 1 for v in re.findall(r"version=(\d+)", after))

        wait_for(
            lambda: (
                (_updates(second_log) >= resumed_at + 2 and all(map(acting_with_resumed_weights, range(2))))
                or learner.poll() is not None
            ),
            300,
            "both actors back, acting with the resumed learner's weights, 2 updates after the restart",
        )
        for actor in actors:
            actor.send_signal(signal.SIGTERM)
        codes = [actor.wait(timeout=60) for actor in actors]
        time.sleep(2)
    finally:
        for actor in actors:
            if actor.poll() is None:
                actor.kill()
        learner_code = stop(learner, timeout=60)
    logs = [(tmp_path / f"actor{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0] and learner_code == 0, second_log.read_text()[-2000:]
    assert _updates(second_log) >= resumed_at + 2
    for log in logs:
        assert _counter(log, "reconnects") == 1 and "reconnected:" in log
        queued, delivered = _counter(log, "decisions_queued"), _counter(log, "decisions_delivered")
        assert queued == delivered + _counter(log, "decisions_lost")  # conserved, after a clean stop
        after = log.split("reconnected:")[1]
        versions = [int(v) for v in re.findall(r"version=(\d+)", after)]
        assert versions and max(versions) >= resumed_at + 1  # weights pushed by the resumed learner
    _, received, consumed, dropped, pending, rejected = _final_counters(second_log.read_text())
    assert rejected == 0 and received == consumed + dropped + pending and received > 0
