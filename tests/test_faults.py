"""Faults with real processes on 127.0.0.1: killed, frozen and restarted actors,
failing environments, checkpoints and learner restarts, unreachable learners, an actor
and a learner that cannot work together. Every wait is bounded; every process is
stopped in ``finally``. A learner slower than its actors: tests/test_backpressure.py."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import zmq

from protocol.codec import decode, encode
from protocol.messages import Experience, Hello, Weights, Welcome
from protocol.spec import RunSpec
from scripts.procs import HANG_S, endpoint_of, free_port_pair, start_actor, start_learner, stop_all
from scripts.runlog import event_time
from tests.conftest import experience_arrays
from tests.hostile import SMALL, join_with_weights, raw_dealer

pytestmark = pytest.mark.slow

# A learner the test keeps up (unreachable target) stops by itself after this long, in
# case a test failed to stop it; it is never what ends a test.
LEARNER_MAX_S = str(HANG_S * 5)
ACTOR_TIMEOUT_S = float(SMALL[SMALL.index("--actor-timeout-s") + 1])

FAST = [*SMALL, "--target-return", "1e9"]
ACTOR_FAST = ["--learner-timeout", "1.5"]


def ts(event: dict) -> float:
    return event_time(event)


def test_sigkilled_actor_is_declared_lost_for_its_silence_and_training_goes_on(tmp_path):
    learner = start_learner(
        tmp_path, "--algo", "a3c", "--actors", "0", "--max-seconds", LEARNER_MAX_S, *FAST
    )
    a0 = a1 = None
    try:
        endpoint = endpoint_of(learner)
        # a0 alone first: every update is its rollout, so it has sent some when killed
        # (with both started at once, a1 alone could make the first updates).
        a0 = start_actor(tmp_path, endpoint, "a0", *ACTOR_FAST)
        learner.wait_for("progress", HANG_S, where=lambda e: e["updates"] >= 5)
        a1 = start_actor(tmp_path, endpoint, "a1", *ACTOR_FAST)
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["actors"] == 2 and e["updates"] >= 10
        )
        joined = {e["actor_id"]: e for e in learner.events("actor_joined")}
        killed_at = time.time()
        a0.signal(signal.SIGKILL)
        assert a0.wait_exit(HANG_S) == -signal.SIGKILL
        # The learner declares the killed actor lost, after the kill, naming the
        # incarnation it knew and its last rollout, for the reason the rule gives:
        # silent longer than --actor-timeout-s. (The bound on the wait is a hang guard.)
        lost = learner.wait_for(
            "actor_lost", HANG_S, where=lambda e: e["actor_id"] == "a0" and ts(e) >= killed_at
        )
        assert lost["incarnation"] == joined["a0"]["incarnation"]
        assert lost["last_seq"] > 0
        assert lost["silent_s"] >= ACTOR_TIMEOUT_S
        # Training goes on with the survivor alone.
        before = learner.events("progress")[-1]["updates"]
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["updates"] >= before + 20 and e["actors"] == 1
        )
        assert not learner.events("handler_error")
    finally:
        stop_all(a0, a1, learner)


def test_frozen_actor_is_lost_then_rejoins_after_sigcont(tmp_path):
    learner = start_learner(
        tmp_path, "--algo", "a2c", "--actors", "0", "--max-seconds", LEARNER_MAX_S, *FAST
    )
    a0 = a1 = None
    try:
        endpoint = endpoint_of(learner)
        a0, a1 = (start_actor(tmp_path, endpoint, f"a{i}", *ACTOR_FAST) for i in range(2))
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["actors"] == 2 and e["updates"] >= 10
        )
        a0.signal(signal.SIGSTOP)
        learner.wait_for("actor_lost", HANG_S, where=lambda e: e["actor_id"] == "a0")
        # a2c goes on with the survivor while a0 is frozen.
        before = learner.events("progress")[-1]["updates"]
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["updates"] >= before + 10 and e["actors"] == 1
        )
        a0.signal(signal.SIGCONT)
        rejoined = learner.wait_for(
            "actor_joined",
            HANG_S,
            where=lambda e: e["actor_id"] == "a0" and ts(e) > ts(learner.events("actor_lost")[0]),
        )
        first_join = next(e for e in learner.events("actor_joined") if e["actor_id"] == "a0")
        assert rejoined["incarnation"] == first_join["incarnation"], (
            "same process, same incarnation"
        )
        # The actor says why it re-joined: the learner forgot it, or it heard nothing for too long.
        reasons = {
            e["event"] for e in a0.events() if e["event"] in ("learner_lost", "learner_error")
        }
        assert reasons, "the actor logs why it re-joined"
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["actors"] == 2 and ts(e) > ts(rejoined)
        )
    finally:
        stop_all(a0, a1, learner)


def test_restart_with_same_id_is_a_new_incarnation(tmp_path):
    learner = start_learner(
        tmp_path,
        *("--algo", "a3c", "--actors", "0", "--max-seconds", LEARNER_MAX_S, *FAST),
        *("--actor-timeout-s", "30"),
    )
    first = second = None
    try:
        endpoint = endpoint_of(learner)
        first = start_actor(tmp_path, endpoint, "same")
        joined = learner.wait_for("actor_joined", HANG_S)
        first.signal(signal.SIGKILL)
        first.wait_exit(HANG_S)
        second = start_actor(tmp_path / "again", endpoint, "same")
        restarted = learner.wait_for("actor_restarted", HANG_S)
        assert restarted["actor_id"] == "same"
        assert restarted["old_incarnation"] == joined["incarnation"] != restarted["incarnation"]
        assert "old_last_seq" in restarted
    finally:
        stop_all(first, second, learner)


def test_sequence_gaps_within_an_incarnation_are_counted_and_logged(tmp_path):
    learner = start_learner(
        tmp_path, "--algo", "a3c", "--actors", "0", "--max-seconds", LEARNER_MAX_S, *FAST
    )
    ctx = zmq.Context()
    ctx.linger = 0
    try:
        sock = raw_dealer(ctx, endpoint_of(learner))
        welcome, weights = join_with_weights(sock, "raw", HANG_S)
        spec = RunSpec.from_dict(welcome.run)
        for seq in (1, 4):
            sock.send_multipart(
                encode(
                    Experience(
                        arrays=experience_arrays(spec, spec.num_envs, seed=seq),
                        actor_id="raw",
                        incarnation="inc-1",
                        seq=seq,
                        learner_id=welcome.learner_id,
                        policy_version=weights.version,
                    )
                )
            )
        gap = learner.wait_for("seq_gap", HANG_S)
        assert gap["actor_id"] == "raw" and gap["missing"] == 2 and gap["seq"] == 4
        # Both rollouts are taken (the learner may merge them into one update).
        steps = 2 * int(experience_arrays(spec, spec.num_envs)["valid"].sum())
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["env_steps"] == steps and e["updates"] >= 1
        )
    finally:
        ctx.destroy(linger=0)
        learner.stop()


def test_env_that_raises_costs_episodes_not_the_actor(tmp_path, monkeypatch):
    monkeypatch.setenv("FAULTY_P_STEP", "0.003")
    learner = start_learner(
        tmp_path,
        "--env",
        "tests.faulty_env:FaultyCartPole-v0",
        "--algo",
        "a3c",
        "--actors",
        "1",
        "--max-env-steps",
        "20000",
        "--target-return",
        "1000",
        *FAST,
    )
    try:
        assert learner.wait_exit(HANG_S * 3) == 0
        actor_log = [
            json.loads(x) for x in (tmp_path / "actor-local-0.jsonl").read_text().splitlines()
        ]
        errors = [e for e in actor_log if e["event"] == "env_error"]
        assert errors and "injected step failure" in errors[0]["error"]
        assert json.loads((tmp_path / "summary.json").read_text())["env_steps"] >= 20000
    finally:
        learner.stop()


def test_env_that_always_raises_makes_the_actor_exit_4(tmp_path, monkeypatch):
    monkeypatch.setenv("FAULTY_P_STEP", "1.0")
    learner = start_learner(
        tmp_path,
        "--env",
        "tests.faulty_env:FaultyCartPole-v0",
        "--actors",
        "0",
        "--max-seconds",
        "60",
        *FAST,
    )
    actor = None
    try:
        actor = start_actor(tmp_path, endpoint_of(learner), "doomed", "--max-env-failures", "3")
        assert actor.wait_exit(HANG_S) == 4
        assert actor.events("env_failed") and actor.events("actor_exit")[-1]["code"] == 4
        assert learner.popen.poll() is None, "the learner keeps running"
    finally:
        stop_all(actor, learner)


def test_checkpoint_on_sigterm_and_resume_with_fallback_past_a_corrupt_one(tmp_path):
    args = [
        "--algo",
        "a3c",
        "--actors",
        "1",
        "--checkpoint-every-s",
        "0.5",
        "--target-return",
        "1000",
        *FAST,
    ]
    first = start_learner(tmp_path, *args, "--max-seconds", LEARNER_MAX_S)
    try:
        first.wait_for("checkpoint_saved", HANG_S)
        first.wait_for("progress", HANG_S, where=lambda e: e["updates"] >= 30)
        first.signal(signal.SIGTERM)
        assert first.wait_exit(HANG_S) == 0
    finally:
        first.stop()
    final = first.events("checkpoint_saved")[-1]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert final["env_steps"] == summary["env_steps"] and final["version"] == summary["updates"]
    ckpts = sorted((tmp_path / "checkpoints").glob("ckpt-*.pt"))
    assert 2 <= len(ckpts) <= 3, "periodic checkpoints, the last K kept"

    second = start_learner(
        tmp_path, *args, "--resume", "true", "--max-env-steps", str(summary["env_steps"] + 2000)
    )
    try:
        assert second.wait_exit(HANG_S * 3) == 0
    finally:
        second.stop()
    resumed = second.events("resumed")
    assert (
        resumed
        and resumed[0]["env_steps"] == summary["env_steps"]
        and resumed[0]["version"] == final["version"]
    )

    # Corrupt the newest checkpoint: the next resume falls back to the previous one.
    newest = sorted((tmp_path / "checkpoints").glob("ckpt-*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    third = start_learner(tmp_path, *args, "--resume", "true", "--max-seconds", "1")
    try:
        third.wait_for("resumed", HANG_S)
        assert third.wait_exit(HANG_S) == 0
    finally:
        third.stop()
    assert third.events("checkpoint_unreadable")[0]["path"] == str(newest)
    assert third.events("resumed")[0]["path"] != str(newest)


def test_learner_killed_and_resumed_actors_reconnect_by_themselves(tmp_path):
    port = free_port_pair()
    args = [
        "--algo",
        "a3c",
        "--actors",
        "0",
        "--port",
        str(port),
        "--checkpoint-every-s",
        "0.5",
        "--target-return",
        "1000",
        *FAST,
    ]
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    run_a.mkdir()
    first = second = None
    actors = []
    try:
        first = start_learner(run_a, *args, "--max-seconds", LEARNER_MAX_S)
        endpoint = endpoint_of(first)
        actors = [start_actor(tmp_path, endpoint, f"r{i}", *ACTOR_FAST) for i in range(2)]
        for i in range(2):
            first.wait_for("actor_joined", HANG_S, where=lambda e, i=i: e["actor_id"] == f"r{i}")
        first.wait_for("checkpoint_saved", HANG_S, where=lambda e: e["env_steps"] > 0)
        first.signal(signal.SIGKILL)
        first.wait_exit(HANG_S)
        saved = first.events("checkpoint_saved")[-1]
        # Same run directory, same port: the restarted learner resumes.
        run_b.mkdir()
        os.replace(run_a / "checkpoints", run_b / "checkpoints")
        second = start_learner(run_b, *args, "--resume", "true", "--max-seconds", LEARNER_MAX_S)
        resumed = second.wait_for("resumed", HANG_S)
        assert resumed["env_steps"] == saved["env_steps"]
        for a in actors:
            a.wait_for("learner_lost", HANG_S)
        joined = [
            second.wait_for("actor_joined", HANG_S, where=lambda e, i=i: e["actor_id"] == f"r{i}")
            for i in range(2)
        ]
        assert len(joined) == 2
        # Training continues from the checkpointed step and version.
        second.wait_for(
            "progress",
            HANG_S,
            where=lambda e: (
                e["env_steps"] > saved["env_steps"] and e["version"] > saved["version"] + 10
            ),
        )
        assert all(a.popen.poll() is None for a in actors), "actors never exited"
        second.signal(signal.SIGTERM)
        assert second.wait_exit(HANG_S) == 0
        assert all(a.wait_exit(HANG_S) == 0 for a in actors)
    finally:
        stop_all(*actors, first, second)


def test_unreachable_learner_is_reported_and_sigint_ends_the_actor_cleanly(tmp_path):
    port = free_port_pair()
    endpoint = f"tcp://127.0.0.1:{port}"
    actor = start_actor(tmp_path, endpoint, "lonely", "--learner-timeout", "1")
    try:
        unreachable = actor.wait_for("learner_unreachable", HANG_S)
        # Reported once the actor has waited out its --learner-timeout, naming the address.
        assert unreachable["learner"] == endpoint and unreachable["waited_s"] >= 1.0
        actor.signal(signal.SIGINT)
        # SIGINT while still joining: a clean exit (code 0, reason "signal"), after the
        # report, having never joined. (The bound is a hang guard.)
        assert actor.wait_exit(HANG_S) == 0
        names = [e["event"] for e in actor.events()]
        assert names.index("learner_unreachable") < names.index("actor_exit")
        assert "joined" not in names
        (exit_event,) = actor.events("actor_exit")
        assert exit_event["code"] == 0 and exit_event["reason"] == "signal"
        assert exit_event["rollouts_sent"] == 0
    finally:
        actor.stop()


@pytest.mark.parametrize(
    ("change", "code", "reason"),
    [
        # Weights that do not fit the network the actor built from the spec.
        ({}, 2, "weights_mismatch"),
        # A spec naming an algorithm this actor's code does not have (gradients need it).
        ({"algo": "from-the-future", "coordination": "gradients"}, 4, "run_spec_unusable"),
    ],
)
def test_actor_exits_cleanly_on_a_learner_it_cannot_work_with(tmp_path, change, code, reason):
    """A learner of another code version: the actor says why and exits, rather than
    heartbeating forever with weights it cannot load."""
    port = free_port_pair()
    ctx = zmq.Context()
    ctx.linger = 0
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"tcp://127.0.0.1:{port}")
    actor = start_actor(tmp_path, f"tcp://127.0.0.1:{port}", "versioned")
    try:
        assert router.poll(int(HANG_S * 1000)), "no hello"
        route, *frames = router.recv_multipart()
        assert isinstance(decode(frames), Hello)
        spec = RunSpec(
            env_id="CartPole-v1",
            algo="a2c",
            coordination="sync",
            num_envs=2,
            rollout_len=4,
            obs_shape=(4,),
            action_kind="discrete",
            action_n=2,
        )
        spec_dict = {**spec.to_dict(), **change}
        welcome = Welcome(learner_id="L", run=spec_dict, pub_port=port + 1, temperature=1.0, seed=1)
        router.send_multipart([route, *encode(welcome)])
        weights = Weights(learner_id="L", version=0, arrays={"w": np.zeros(3, "<f4")})
        router.send_multipart([route, *encode(weights)])
        assert actor.wait_exit(HANG_S) == code
        (exit_event,) = actor.events("actor_exit")
        assert exit_event["reason"] == reason
    finally:
        actor.stop()
        router.close()
        ctx.term()
