"""No stuck states in the learner's wiring: with real actor processes on 127.0.0.1,
every wait of the learner ends, by progress, by a timeout with a logged reason, or by a
clear exit. The learner runs in this process, built and run by the functions ``python -m
learner`` calls (``learner.build.build``, ``learner.__main__.run``), which spares a torch
import per test on a 2-core machine; its actors are real ``python -m actor`` processes
that it starts itself (learner/local.py), or a raw DEALER (tests/hostile.py). Every wait
has a hang guard; every process is stopped in ``finally``.

The actor's waits are in tests/test_actor_waits.py (on a fake clock), the training
thread's in tests/test_pipeline.py; the table in docs/reliability.md maps every wait to
its test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from actor.exits import EXIT_PROTOCOL
from core.procs import stop_processes
from learner.__main__ import run as run_learner
from learner.build import build
from learner.flags import parse
from learner.outcome import Outcome
from protocol.codec import encode
from protocol.messages import (
    Experience,
    Heartbeat,
    Welcome,
)
from protocol.spec import RunSpec
from scripts.procs import HANG_S, python_path
from tests import hostile
from tests.conftest import experience_arrays
from tests.fakes import RecordingLog
from tests.hostile import join, raw_dealer, recv_message

# The hostile peer's ZeroMQ context, a fixture; bound here so that pytest finds it.
zctx = hostile.zctx


# --- a CartPole whose rewards every check refuses -----------------------------------------


class NanRewardCartPole(CartPoleEnv):
    """CartPole whose every reward is NaN: each rollout an actor sends fails the
    learner's checks (``not_finite``), as a buggy env would make it."""

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


# Learner and actor processes reach it as tests.test_stuck:<id> (core/envs imports the
# module part); registered once, however often this module is imported.
NAN_ENV_ID = "StuckNanRewardCartPole-v0"
if NAN_ENV_ID not in gym.registry:
    gym.register(NAN_ENV_ID, entry_point=NanRewardCartPole, max_episode_steps=500)
NAN_ENV = f"tests.test_stuck:{NAN_ENV_ID}"


# --- the learner's wiring, with real actor processes -------------------------------------

LEARNER_FLAGS = [
    "--envs",
    "4",
    "--rollout-len",
    "8",
    "--target-return",
    "1e9",
    "--device",
    "cpu",
    "--log-interval-s",
    "0.2",
    "--heartbeat-s",
    "0.2",
    "--actor-timeout-s",
    "2",
]


class InProcessLearner:
    """A learner built and run in this process by learner.build.build and
    learner.__main__.run, logging to a RecordingLog; its --actors are real processes.
    It stops when the test asks, when ``until()`` holds, or after HANG_S."""

    def __init__(
        self, run_dir: Path, monkeypatch, *flags: str, until: Callable[[], bool] | None = None
    ) -> None:
        # Local actors are `python -m actor` children: the repository must be importable
        # from wherever pytest runs.
        monkeypatch.setenv("PYTHONPATH", python_path())
        cfg, _ = parse(["--run-dir", str(run_dir), "--port", "0", *LEARNER_FLAGS, *flags])
        self.log = RecordingLog()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + HANG_S
        self.stop_requested = lambda: (
            self._stop.is_set()
            or time.monotonic() > self._deadline
            or (until is not None and until())
        )
        self.parts = build(cfg, run_dir, self.log, self.stop_requested)
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def run(self) -> Outcome:
        """Run to the end on this thread; the local actors are stopped whatever happens."""
        try:
            self.outcome, _ = run_learner(self.parts, self.log, self.stop_requested)
            if not self._stop.is_set() and time.monotonic() > self._deadline:
                raise AssertionError(
                    f"the test's hang guard ({HANG_S:.0f} s) stopped the learner, not its own"
                    f" rule (outcome {self.outcome.reason})"
                )
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.kill_actors()
        return self.outcome

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="learner-under-test", daemon=True)
        self._thread.start()

    def stop(self) -> Outcome | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(HANG_S)
            assert not self._thread.is_alive(), "the learner did not stop"
        self.kill_actors()
        if self.error is not None:
            raise AssertionError(f"the learner raised: {self.error!r}") from self.error
        return self.outcome

    def kill_actors(self) -> None:
        if self.parts.actors is not None:
            stop_processes(self.parts.actors.procs, 2.0)

    def wait_for(
        self,
        name: str,
        where: Callable[[dict], bool] = lambda e: True,
        step: Callable[[], None] | None = None,
    ) -> dict:
        """The first ``name`` event for which ``where`` holds, calling ``step`` (a
        bounded poll, e.g. a peer's heartbeat) meanwhile; AssertionError after
        HANG_S or if the learner stopped first."""
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            for e in self.log.events(name):
                if where(e):
                    return e
            if self._thread is not None and not self._thread.is_alive():
                raise AssertionError(f"the learner stopped ({self.outcome}) before {name!r}")
            if step is not None:
                step()
            else:
                self._stop.wait(0.05)
        raise AssertionError(f"no {name!r} within {HANG_S}s: {self.log.names()[-20:]}")

    def updates(self) -> int:
        progress = self.log.events("progress")
        return progress[-1]["updates"] if progress else 0


def test_a_learner_that_no_actor_ever_joins_waits_until_asked_to_stop(tmp_path, monkeypatch):
    # --actors 0 waits for external actors, and --max-seconds counts from the first
    # join: only a signal (here, the same stop request the handlers set) ends this wait.
    learner = InProcessLearner(
        tmp_path, monkeypatch, "--actors", "0", "--max-seconds", "0.01",
        until=lambda: bool(learner.log.events("progress")),
    )  # fmt: skip
    assert learner.run().reason == "signal"
    assert [e["actors"] for e in learner.log.events("progress")] == [0]
    assert learner.log.events("actor_joined") == []


def cannot_start(run_dir: Path, i: int) -> None:
    """Local actor ``i`` dies at start-up: the path of its log file is taken by a
    directory, so its logging set-up raises (IsADirectoryError, exit 1)."""
    (run_dir / f"actor-local-{i}.jsonl").mkdir(parents=True)


@pytest.mark.slow
def test_a_local_actor_dead_at_start_up_delays_the_first_a2c_update_by_min_actors_wait_only(
    tmp_path, monkeypatch
):
    cannot_start(tmp_path, 1)
    learner = InProcessLearner(
        tmp_path, monkeypatch,
        "--algo", "a2c", "--actors", "2", "--min-actors", "2", "--min-actors-wait-s", "2",
        "--max-env-steps", "1500",
    )  # fmt: skip
    assert learner.run().reason == "max_env_steps"

    log = learner.log
    (exited,) = log.events("local_actor_exited")
    assert exited["actor_id"] == "local-1" and exited["code"] != 0
    assert "IsADirectoryError" in Path(exited["stderr"]).read_text()
    assert [e["actor_id"] for e in log.events("actor_joined")] == ["local-0"]
    # The first update went ahead without local-1, once, saying why.
    (released,) = log.events("barrier_released")
    assert released["reason"] == "min_actors_wait" and released["version"] == 0
    assert released["rollouts"] == 1 and released["missing"] == []
    release = log.index("barrier_released")
    assert 0 <= log.index("actor_joined") < release
    before = [e for e in log.events()[:release] if e["event"] == "progress"]
    assert all(e["updates"] == 0 for e in before), "an update before the release"
    assert learner.parts.stats.updates >= 10  # and it trained on after it


@pytest.mark.slow
def test_when_every_local_actor_died_at_start_up_the_run_stops_with_actors_exited(
    tmp_path, monkeypatch
):
    cannot_start(tmp_path, 0)
    learner = InProcessLearner(tmp_path, monkeypatch, "--algo", "a2c", "--actors", "1")
    assert learner.run().reason == "actors_exited"
    (exited,) = learner.log.events("local_actor_exited")
    assert exited["actor_id"] == "local-0" and exited["code"] != 0
    assert learner.log.events("actor_joined") == []


class HostilePeer:
    """A raw DEALER that joined: heartbeats every 0.2 s (so it stays live), reads
    whatever comes, and sends what the test tells it to."""

    def __init__(self, sock, actor_id: str, welcome_msg: Welcome) -> None:
        self.sock, self.actor_id, self.welcome = sock, actor_id, welcome_msg
        self.spec = RunSpec.from_dict(welcome_msg.run)
        self.seq = 0  # the last sequence number sent (heartbeats carry it)
        self.last_heartbeat = 0.0

    def pump(self) -> None:
        if time.monotonic() - self.last_heartbeat >= 0.2:
            heartbeat = Heartbeat(
                actor_id=self.actor_id, incarnation="inc-1", seq=self.seq, policy_version=0
            )
            self.sock.send_multipart(encode(heartbeat))
            self.last_heartbeat = time.monotonic()
        msg = recv_message(self.sock, 0.05)
        while msg is not None:
            msg = recv_message(self.sock, 0)

    def send_malformed_rollouts(self, count: int) -> None:
        """Experience that can never be trained on, alternately: one with its last array
        frame missing (fails decoding, ``frame_count``) and one whose observations have
        the wrong shape (fails the checks, ``bad_shape``)."""
        for _ in range(count):
            self.seq += 1
            arrays = experience_arrays(self.spec, self.spec.num_envs, seed=self.seq)
            if self.seq % 2 == 0:
                arrays["obs"] = np.ascontiguousarray(arrays["obs"][..., :-1])  # [T+1, N, obs-1]
            frames = encode(
                Experience(
                    arrays=arrays,
                    actor_id=self.actor_id,
                    incarnation="inc-1",
                    seq=self.seq,
                    learner_id=self.welcome.learner_id,
                    policy_version=0,
                )
            )
            self.sock.send_multipart(frames[:-1] if self.seq % 2 else frames)
            self.pump()


@pytest.mark.slow
def test_an_actor_whose_every_rollout_is_malformed_is_quarantined_and_a2c_trains_on_without_it(
    tmp_path, monkeypatch, zctx
):
    learner = InProcessLearner(
        tmp_path, monkeypatch,
        "--algo", "a2c", "--actors", "1", "--barrier-timeout-s", "1", "--max-bad-messages", "6",
    )  # fmt: skip
    learner.start()
    try:
        endpoint = learner.wait_for("learner_listening")["endpoint"]
        sock = raw_dealer(zctx, endpoint)
        peer = HostilePeer(sock, "hostile", join(sock, "hostile"))
        # Live and without a valid rollout: the barrier waits for it --barrier-timeout-s.
        learner.wait_for("barrier_released", lambda e: "hostile" in e["missing"], peer.pump)
        peer.send_malformed_rollouts(6)  # --max-bad-messages
        learner.wait_for("actor_quarantined", lambda e: e["actor"] == "hostile", peer.pump)
        at = learner.updates()
        learner.wait_for("progress", lambda e: e["updates"] >= at + 5, peer.pump)
    finally:
        outcome = learner.stop()
    assert outcome is not None and outcome.reason == "signal"

    log = learner.log
    joined = log.index("actor_joined", lambda e: e["actor_id"] == "hostile")
    left_behind = log.index("barrier_released", lambda e: "hostile" in e["missing"])
    first_reject = log.index("message_rejected", lambda e: e["actor"] == "hostile")
    quarantined = log.index("actor_quarantined", lambda e: e["actor"] == "hostile")
    trained_on = log.index("progress", lambda e: e["updates"] >= at + 5)
    assert 0 <= joined < left_behind < first_reject < quarantined < trained_on
    assert log.events("barrier_released")[0]["reason"] == "barrier_timeout"
    rejected = [e for e in log.events("message_rejected") if e["actor"] == "hostile"]
    assert len(rejected) == 6 and {e["reason"] for e in rejected} == {"frame_count", "bad_shape"}
    # Once quarantined it is not waited for at all, and the good actor was never refused.
    after = log.events()[quarantined:]
    assert [e for e in after if e["event"] == "barrier_released"] == []
    assert [e for e in log.events("message_rejected") if e["actor"] == "local-0"] == []


@pytest.mark.slow
def test_a_quarantined_local_actor_is_told_and_exits_and_the_run_stops(tmp_path, monkeypatch):
    actor_log = tmp_path / "actor-local-0.jsonl"

    def left_to_guess() -> bool:
        """The actor found out only by a timeout: what it does when it was not told."""
        text = actor_log.read_text() if actor_log.exists() else ""
        return '"ack_missing"' in text or '"learner_lost"' in text

    learner = InProcessLearner(
        tmp_path, monkeypatch,
        "--env", NAN_ENV, "--algo", "a3c", "--actors", "1", "--max-bad-messages", "3",
        until=left_to_guess,
    )  # fmt: skip
    outcome = learner.run()
    # What must hold for the test to mean anything: the actor was quarantined.
    rejected = {e["reason"] for e in learner.log.events("message_rejected")}
    if rejected != {"not_finite"} or not learner.log.events("actor_quarantined"):
        pytest.fail(f"precondition: local-0 was not quarantined for NaN rewards: {rejected}")

    assert outcome.reason == "actors_exited", (
        f"the run did not stop by itself ({outcome.reason}): the quarantined actor was "
        f"left to guess: {[e for e in learner.log.names() if e != 'progress'][-6:]}"
    )
    text = actor_log.read_text()
    assert '"learner_error"' in text and '"quarantined"' in text
    exited = learner.log.events("local_actor_exited")
    assert [e["code"] for e in exited] == [EXIT_PROTOCOL]
