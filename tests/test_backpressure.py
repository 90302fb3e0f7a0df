"""A learner slower than its actors, with real processes on 127.0.0.1: its memory and
queues stay bounded however fast actors send (an actor's credit, the learner's bound
per actor for one that ignores it), an actor waits out an update longer than its
patience instead of sending past its credit, and a subscriber that stops reading
weights stalls nothing. Every wait is bounded; every process is stopped in ``finally``.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import zmq

from protocol.codec import decode, encode
from protocol.messages import Ack, Experience
from protocol.spec import RunSpec
from scripts.procs import HANG_S, endpoint_of, start_actor, start_learner, stop_all
from tests.conftest import experience_arrays
from tests.hostile import SMALL, join_with_weights, raw_dealer

pytestmark = pytest.mark.slow

LEARNER_MAX_S = str(HANG_S * 5)  # a learner the test keeps up stops by itself after this
FAST = [*SMALL, "--target-return", "1e9"]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_slow_learner_under_a_flood_keeps_memory_bounded(tmp_path):
    seconds = float(os.environ.get("FLOOD_SECONDS", "8"))
    learner = start_learner(
        tmp_path,
        "--algo",
        "a3c",
        "--actors",
        "2",
        "--envs",
        "64",
        "--rollout-len",
        "16",
        "--max-seconds",
        LEARNER_MAX_S,
        "--target-return",
        "1000",
        "--log-interval-s",
        "0.5",
        module=("tests.slow_learner", "0.05"),  # every update 0.05 s longer
    )
    try:
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["actors"] == 2 and e["updates"] >= 20
        )
        samples = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append(_rss_mb(learner.popen.pid))
            time.sleep(0.25)
        growth = max(samples) - samples[0]
        print(
            f"learner RSS over {seconds:.0f}s flood: start {samples[0]:.1f} MB, max {max(samples):.1f} MB"
        )
        assert growth < 40, f"learner RSS grew {growth:.1f} MB"
    finally:
        learner.stop()


def test_an_update_longer_than_the_actors_patience_holds_the_actor_to_its_credit(tmp_path):
    # Each update takes 2.5 s, longer than the actor's --learner-timeout of 1 s (a CPU
    # learner on Atari). The learner's pongs name the rollout it holds, so the actor
    # waits for the late Ack instead of taking it for lost and sending past its credit
    # (before schema 8 it sent a rollout a second, and the learner's queue grew).
    learner = start_learner(
        tmp_path,
        *("--algo", "a3c", "--actors", "0", "--envs", "8", "--rollout-len", "16"),
        *("--max-seconds", LEARNER_MAX_S, "--target-return", "1000", "--log-interval-s", "0.5"),
        module=("tests.slow_learner", "2.5"),
    )
    actor = None
    try:
        actor = start_actor(tmp_path, endpoint_of(learner), "a0", "--learner-timeout", "1")
        last = learner.wait_for("progress", HANG_S, where=lambda e: e["updates"] >= 4)
        # One rollout per update, and at most the one in the update plus the one the
        # actor may have in flight beyond what was trained.
        per_rollout = 8 * 16
        assert last["env_steps"] <= (last["updates"] + 2) * per_rollout, last
        names = [e["event"] for e in actor.events()]
        assert "ack_missing" not in names and "learner_lost" not in names
        # The slow learner is seen as backpressure: waits for credit past 0.5 s (an
        # ordinary CartPole update acks in milliseconds).
        assert any(e.get("waiting_for") == "ack" for e in actor.events("backpressure"))
    finally:
        if actor is not None:
            actor.stop()
        learner.stop()


def test_an_actor_that_ignores_its_credit_cannot_grow_the_learners_queue(tmp_path):
    # A raw client sends 12 rollouts at once to a learner whose updates take 1 s, with
    # --max-in-flight 1: the learner keeps at most 2 queued from it, drops the oldest
    # as stale and acks them untrained, and goes on training.
    learner = start_learner(
        tmp_path,
        *("--algo", "a3c", "--actors", "0", "--max-seconds", LEARNER_MAX_S, *FAST),
        module=("tests.slow_learner", "1.0"),
    )
    ctx = zmq.Context()
    ctx.linger = 0
    try:
        sock = raw_dealer(ctx, endpoint_of(learner))
        welcome, weights = join_with_weights(sock, "raw", HANG_S)
        spec = RunSpec.from_dict(welcome.run)
        for seq in range(1, 13):
            arrays = experience_arrays(spec, spec.num_envs, seed=seq)
            if seq > 1:  # env 0's episode began at step 3 of the rollout before
                t = spec.rollout_len
                arrays["ep_returns"] = np.array([t - 1.0])
                arrays["ep_lengths"] = np.array([t - 1])
            experience = Experience(
                arrays=arrays,
                actor_id="raw",
                incarnation="inc-1",
                seq=seq,
                learner_id=welcome.learner_id,
                policy_version=weights.version,
            )
            sock.send_multipart(encode(experience))
        steps = int(experience_arrays(spec, spec.num_envs)["valid"].sum())
        acks: dict[int, bool] = {}
        deadline = time.monotonic() + HANG_S
        while len(acks) < 12 and time.monotonic() < deadline:
            if sock.poll(200):
                msg = decode(sock.recv_multipart())
                if isinstance(msg, Ack):
                    acks[msg.seq] = msg.trained
        assert sorted(acks) == list(range(1, 13))  # every rollout answered, none lost
        # The newest two were kept and trained; into the pipeline (one training, one
        # prepared) went none of the first if the learner read the whole burst before
        # its next update, two if it did not, and more only if an update finished while
        # the burst was arriving (a loaded machine: then a queued one, not necessarily
        # the next seq, moves up). Every other one was dropped, acked untrained and
        # counted with its steps: a queue that held all 12 would train them all.
        trained = sorted(k for k, was_trained in acks.items() if was_trained)
        dropped = sorted(k for k, was_trained in acks.items() if not was_trained)
        assert trained[-2:] == [11, 12] and dropped, acks
        assert sorted(trained + dropped) == list(range(1, 13)) and max(dropped) <= 10, acks
        learner.wait_for(
            "progress",
            HANG_S,
            where=lambda e: (
                e["env_steps"] == 12 * steps
                and e["updates"] >= 1
                and e["dropped_stale"] == len(dropped)
                and e["dropped_steps"] == len(dropped) * steps
            ),
        )
    finally:
        ctx.destroy(linger=0)
        learner.stop()


def test_frozen_subscriber_does_not_stall_training_and_catches_up_in_order(tmp_path):
    learner = start_learner(
        tmp_path,
        *("--algo", "a3c", "--actors", "0", "--max-seconds", LEARNER_MAX_S, *FAST),
        # The frozen actor stays registered however long the freeze takes on a busy machine.
        *("--actor-timeout-s", LEARNER_MAX_S),
    )
    a0 = a1 = None
    try:
        endpoint = endpoint_of(learner)
        # debug: a0 logs every weights_loaded, the versions it actually acts with. Nor
        # does a0 give up on the learner, however long the freeze lasts.
        a0 = start_actor(
            tmp_path, endpoint, "f0", "--log-level", "debug", "--learner-timeout", LEARNER_MAX_S
        )
        a1 = start_actor(tmp_path, endpoint, "f1")
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["actors"] == 2 and e["updates"] >= 10
        )
        # It follows the broadcasts before the freeze: a first load, then a newer one.
        first = a0.wait_for("weights_loaded", HANG_S)
        a0.wait_for("weights_loaded", HANG_S, where=lambda e: e["version"] > first["version"])
        a0.signal(signal.SIGSTOP)  # stays registered and stops reading weights
        before = learner.events("progress")[-1]["updates"]
        # Hundreds of weight broadcasts go to the frozen subscriber while training goes on.
        woke_at = learner.wait_for("progress", HANG_S, where=lambda e: e["updates"] >= before + 300)
        held = len(a0.events("weights_loaded"))  # a frozen process writes nothing more
        a0.signal(signal.SIGCONT)
        # Woken, it loads weights at least as new as the learner's when it woke, not
        # just the backlog the PUB queued for it.
        a0.wait_for("weights_loaded", HANG_S, where=lambda e: e["version"] >= woke_at["version"])
        versions = [e["version"] for e in a0.events("weights_loaded")]
        assert len(versions) >= 3 and len(versions) > held
        # An actor never loads weights older than (or as old as) those it holds.
        assert versions == sorted(set(versions)), versions
        assert len(a0.events("joined")) == 1, "caught up without re-joining"
    finally:
        if a0:
            a0.signal(signal.SIGCONT)
        stop_all(a0, a1, learner)
