"""The sync barrier never freezes a real a2c run: one test per state in which it used
to wait forever (learner/batching.py's docstring lists them; tests/test_batching.py
drives the pure barrier through the same states with explicit times).

Each test starts a learner (``--algo a2c``, random ports, endpoint read from its own
``learner_listening`` line) and one well-behaved actor process; where a misbehaving
actor is needed it is a raw DEALER in the test process (tests/hostile.py), driven by a
bounded loop here. Every wait is bounded and every process is stopped in ``finally``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
import zmq

from protocol.codec import encode
from protocol.messages import Ack, Experience, Heartbeat, Message, Pong, Weights, Welcome
from protocol.spec import RunSpec
from scripts.procs import HANG_S, Proc, endpoint_of, start_actor, start_learner
from tests import hostile
from tests.conftest import experience_arrays
from tests.hostile import join, raw_dealer, recv_message, recv_until, updates_now, wait_updates

# The attacker's ZeroMQ context, a fixture; bound here so that pytest finds it.
zctx = hostile.zctx

# Every wait is bounded by HANG_S: the assertions are on the order and content of
# events (barrier_released and its reason, acks and the versions they name).

# An unreachable target keeps a learner up for the test; --max-seconds bounds one this
# file failed to stop. --barrier-timeout-s and --min-actors-wait-s keep their defaults
# (10 s, 30 s) unless a test is about them, so a barrier that only releases on a timeout
# cannot pass for one that releases at once: it would log barrier_released.
A2C = [
    "--algo",
    "a2c",
    "--actors",
    "0",
    "--target-return",
    "1e9",
    "--max-seconds",
    str(HANG_S * 5),
    "--envs",
    "4",
    "--rollout-len",
    "8",
    "--heartbeat-s",
    "0.2",
    "--actor-timeout-s",
    "2",
    "--log-interval-s",
    "0.2",
]


class RawActor:
    """A hand-driven sync actor on a raw DEALER: heartbeats every ``HEARTBEAT_S`` and
    sends what the test tells it to; remembers the Acks it got."""

    HEARTBEAT_S = 0.2

    def __init__(self, sock: zmq.Socket, actor_id: str, welcome: Welcome) -> None:
        self.sock, self.actor_id = sock, actor_id
        self.spec = RunSpec.from_dict(welcome.run)
        self.learner_id = welcome.learner_id
        self.seq = 0
        self.last_heartbeat = 0.0
        self.acks: list[Ack] = []
        self.pongs = 0

    def send_rollout(self, version: int, *, nan_obs: bool = False) -> int:
        self.seq += 1
        arrays = experience_arrays(self.spec, self.spec.num_envs, seed=self.seq)
        if nan_obs:
            arrays["obs"][0, 0, 0] = np.nan  # [T+1, N, obs]: one bad number is enough
        self.sock.send_multipart(
            encode(
                Experience(
                    arrays=arrays,
                    actor_id=self.actor_id,
                    incarnation="inc-1",
                    seq=self.seq,
                    learner_id=self.learner_id,
                    policy_version=version,
                )
            )
        )
        return self.seq

    def pump(self, timeout_s: float = 0.05) -> list[Message]:
        """Heartbeat if due, then what arrived within ``timeout_s`` (all of it)."""
        now = time.monotonic()
        if now - self.last_heartbeat >= self.HEARTBEAT_S:
            self.sock.send_multipart(
                encode(
                    Heartbeat(
                        actor_id=self.actor_id, incarnation="inc-1", seq=self.seq, policy_version=0
                    )
                )
            )
            self.last_heartbeat = now
        out = []
        msg = recv_message(self.sock, timeout_s)
        while msg is not None:
            out.append(msg)
            if isinstance(msg, Ack):
                self.acks.append(msg)
            elif isinstance(msg, Pong):
                self.pongs += 1
            msg = recv_message(self.sock, 0)
        return out

    def await_ack(self, seq: int, timeout_s: float) -> Ack:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump()
            for ack in self.acks:
                if ack.seq == seq:
                    return ack
        raise AssertionError(f"{self.actor_id}: no Ack of seq {seq} within {timeout_s}s")


def drive(
    learner: Proc, step: Callable[[], None], until: Callable[[], bool], timeout_s: float, what: str
) -> None:
    """Call ``step`` (which waits at most ~50 ms) until ``until()`` holds; bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        step()
        if until():
            return
        if learner.popen.poll() is not None:
            raise AssertionError(
                f"learner exited {learner.popen.returncode} before {what}\n"
                + learner.stderr_path.read_text()[-3000:]
            )
    raise AssertionError(
        f"no {what} within {timeout_s}s (updates: {updates_now(learner)}, "
        f"barrier_released: {learner.events('barrier_released')[-3:]})"
    )


def join_raw(zctx: zmq.Context, endpoint: str, actor_id: str) -> tuple[RawActor, int]:
    """A raw actor that has joined, and the version of the Weights that follow Welcome."""
    sock = raw_dealer(zctx, endpoint)
    peer = RawActor(sock, actor_id, join(sock, actor_id, HANG_S))
    weights = recv_until(sock, Weights, HANG_S)
    assert isinstance(weights, Weights), f"{actor_id}: no Weights after Welcome"
    return peer, weights.version


# --- an actor's rollout was rejected ----------------------------------------------------


@pytest.mark.slow
def test_a_rejected_rollout_does_not_stall_a2c(tmp_path, zctx):
    # --min-actors 2: the first update needs the raw actor's rollout too.
    learner = start_learner(tmp_path, *A2C, "--min-actors", "2")
    actor = None
    try:
        endpoint = endpoint_of(learner)
        actor = start_actor(tmp_path, endpoint, "real")
        peer, version = join_raw(zctx, endpoint, "raw")

        bad_seq = peer.send_rollout(version, nan_obs=True)
        ack = peer.await_ack(bad_seq, HANG_S)
        assert not ack.trained and ack.version == version, ack
        learner.wait_for(
            "message_rejected",
            HANG_S,
            where=lambda e: e["actor"] == "raw" and e["reason"] == "not_finite",
        )

        # From now on a sync actor: a valid rollout for the version each Ack names.
        peer.send_rollout(ack.version)

        def step() -> None:
            for msg in peer.pump():
                if isinstance(msg, Ack) and msg.seq == peer.seq:
                    peer.send_rollout(msg.version)

        drive(learner, step, lambda: updates_now(learner) >= 6, HANG_S, "6 updates")
        trained = [a for a in peer.acks if a.trained]
        assert len(trained) >= 5, "the raw actor's valid rollouts were trained on"
        # Every update had both actors' rollouts: none went ahead on the barrier's
        # timeout (which logs barrier_released), however long the updates took.
        assert learner.events("barrier_released") == []
        assert learner.events("actor_lost") == []
    finally:
        if actor:
            actor.stop()
        learner.stop()


# --- a live actor never sends -----------------------------------------------------------


@pytest.mark.slow
def test_a_live_actor_that_never_sends_does_not_stall_a2c(tmp_path, zctx):
    learner = start_learner(tmp_path, *A2C, "--barrier-timeout-s", "1")
    actor = None
    try:
        endpoint = endpoint_of(learner)
        actor = start_actor(tmp_path, endpoint, "real")
        peer, _ = join_raw(zctx, endpoint, "idle")
        # It only heartbeats: live (answered, never lost), never a rollout.
        drive(learner, peer.pump, lambda: updates_now(learner) >= 4, HANG_S, "4 updates")

        released = learner.events("barrier_released")
        assert released, "updates went ahead without a barrier_released event"
        assert {e["reason"] for e in released} == {"barrier_timeout"}
        assert all("idle" in e["missing"] for e in released), released
        assert peer.seq == 0 and peer.pongs > 0
        assert [e for e in learner.events("actor_lost") if e["actor_id"] == "idle"] == []
    finally:
        if actor:
            actor.stop()
        learner.stop()


# --- fewer actors than --min-actors ------------------------------------------------------


@pytest.mark.slow
def test_fewer_actors_than_min_actors_train_after_min_actors_wait(tmp_path):
    learner = start_learner(tmp_path, *A2C, "--min-actors", "3", "--min-actors-wait-s", "2")
    actor = None
    try:
        actor = start_actor(tmp_path, endpoint_of(learner), "real")
        first = wait_updates(learner, 1, timeout=HANG_S)
        wait_updates(learner, 3, timeout=HANG_S)

        released = learner.events("barrier_released")
        assert [e["reason"] for e in released] == ["min_actors_wait"], released
        assert released[0]["version"] == 0 and released[0]["missing"] == []
        # wall_s counts from the first join, which comes before the first rollout: the
        # first update waited out --min-actors-wait-s, no less. (A lower bound that is
        # the rule itself: a loaded machine only makes wall_s larger.)
        assert first["wall_s"] >= 2.0, first
    finally:
        if actor:
            actor.stop()
        learner.stop()


@pytest.mark.slow
def test_a_rejected_rollout_is_not_reported_as_a_lost_one(tmp_path, zctx):
    learner = start_learner(tmp_path, *A2C)
    try:
        peer, version = join_raw(zctx, endpoint_of(learner), "raw")
        assert not peer.await_ack(peer.send_rollout(version, nan_obs=True), HANG_S).trained
        peer.await_ack(peer.send_rollout(version), HANG_S)
        assert learner.events("seq_gap") == []
    finally:
        learner.stop()
