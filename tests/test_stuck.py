"""No stuck states: every wait in the learner and the actor ends, by progress, by a
timeout with a logged reason, or by a clear exit. Here are the waits no other file shows
ending; the table in the README's reliability section maps every wait to its test,
here or elsewhere (tests/test_batching.py, test_sync_never_freezes.py, test_credit.py,
test_faults.py, test_pipeline.py, ...).

Three kinds of test:

- The actor's loop (the real ``ActorClient.run``) against a scripted learner standing
  in for its Transport, on a fake clock: each wait (join, credit, sync release, released
  weights, a full send queue) ends after as many *fake* seconds as the settings say, so
  the test asserts the bound itself without a wall-clock window.
- The learner's training thread (learner/pipeline.py) with a fake updater.
- The learner's wiring with real actor processes on 127.0.0.1. The learner runs in this
  process, built and run by the functions ``python -m learner`` calls
  (``learner.build.build``, ``learner.__main__.run``), which spares a torch import per
  test on a 2-core machine; its actors are real ``python -m actor`` processes that it
  starts itself (learner/local.py), or a raw DEALER (tests/hostile.py). Every wait has a
  hang guard; every process is stopped in ``finally``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

import actor.client as client_module
import actor.link as link_module
from actor.client import HELLO_EVERY_S, POLL_MS, ActorClient
from actor.config import ActorConfig
from actor.exits import EXIT_AUTH, EXIT_OK, EXIT_PROTOCOL
from actor.transport import DEALER
from core import coordination
from core.models import ActorCritic, ModelConfig, weights_to_arrays
from core.procs import stop_processes
from learner.__main__ import run as run_learner
from learner.batching import Release, Submission
from learner.build import Parts, build
from learner.flags import parse
from learner.outcome import Outcome
from learner.pipeline import TrainingThread
from learner.updates import Done
from protocol.codec import decode, encode
from protocol.messages import (
    Ack,
    Error,
    Experience,
    Heartbeat,
    Hello,
    Message,
    Pong,
    Shutdown,
    Weights,
    WeightsRequest,
    Welcome,
)
from protocol.spec import RunSpec
from scripts.procs import python_path
from tests import hostile
from tests.conftest import experience_arrays
from tests.hostile import join, raw_dealer, recv_message

# The hostile peer's ZeroMQ context, a fixture; bound here so that pytest finds it.
zctx = hostile.zctx

HANG_GUARD_S = 60.0  # generous: a wait that ends at all ends long before this


# --- a CartPole whose rewards every check refuses ----------------------------------------


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


# --- what a test reads back -----------------------------------------------------------


class RecordingLog:
    """Stands in for the structlog logger: every event at the default level (info and
    up) with its fields, in order. Safe to read while another thread logs (appends are
    atomic)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict]] = []

    def _record(self, event: str, **fields) -> None:
        self.records.append((event, fields))

    info = warning = error = exception = _record

    def debug(self, event: str, **fields) -> None:
        pass

    def events(self, name: str | None = None) -> list[dict]:
        return [{"event": e, **f} for e, f in list(self.records) if name in (None, e)]

    def names(self) -> list[str]:
        return [e for e, _ in list(self.records)]

    def index(self, name: str, where: Callable[[dict], bool] = lambda e: True) -> int:
        """Position of the first ``name`` event for which ``where`` holds (or -1)."""
        for i, e in enumerate(self.events()):
            if e["event"] == name and where(e):
                return i
        return -1


# --- the actor against a scripted learner, on a fake clock ------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t


Answer = Callable[[Message, "ScriptedLearner"], list[tuple[str, Message]] | None]


class ScriptedLearner:
    """Stands in for actor/transport.Transport. Each message the actor gets out is
    recorded with the fake time and handed to ``answer``, whose replies arrive at the
    actor's next receive. A receive with nothing to deliver is a poll that timed out:
    the clock moves on by the whole timeout. ``refuse(msg)`` true: the send fails as at
    the DEALER's high-water mark."""

    def __init__(
        self,
        clock: FakeClock,
        answer: Answer,
        refuse: Callable[[Message], bool] = lambda msg: False,
    ) -> None:
        self.clock, self.answer, self.refuse = clock, answer, refuse
        self.sent: list[tuple[float, Message]] = []
        self.inbox: list[tuple[str, Message]] = []

    def sent_of(self, kind: type[Message]) -> list[tuple[float, Message]]:
        return [(t, m) for t, m in self.sent if isinstance(m, kind)]

    # The Transport interface the client uses.
    def try_send(self, msg: Message) -> bool:
        return self.try_send_frames(encode(msg))

    def try_send_frames(self, frames: list) -> bool:
        msg = decode(frames)
        if self.refuse(msg):
            return False
        self.sent.append((self.clock.t, msg))
        self.inbox += self.answer(msg, self) or []
        return True

    def receive(self, timeout_ms: int) -> list[tuple[str, Message]]:
        self.clock.t += (timeout_ms if not self.inbox else 1) / 1000
        out, self.inbox = self.inbox, []
        return out

    def subscribe(self, pub_port: int) -> str:
        return f"tcp://127.0.0.1:{pub_port}"

    def unsubscribe(self) -> None:
        pass

    def handshake_failure(self) -> str | None:
        return None

    def close(self) -> None:
        pass


LEARNER_ID = "L1"
LEARNER_TIMEOUT = 2.0  # the actor's --learner-timeout, in fake seconds


def spec_for(coordination: str) -> RunSpec:
    return RunSpec(
        env_id="CartPole-v1",
        algo="a2c" if coordination == "sync" else "a3c",
        coordination=coordination,
        num_envs=2,
        rollout_len=4,
        obs_shape=(4,),
        action_kind="discrete",
        action_n=2,
        heartbeat_s=0.5,
        max_in_flight=1,
    )


SYNC, ASYNC = spec_for("sync"), spec_for("async")


def welcome(spec: RunSpec) -> tuple[str, Welcome]:
    return DEALER, Welcome(
        learner_id=LEARNER_ID, run=spec.to_dict(), pub_port=5556, temperature=1.0, seed=1
    )


def weights(spec: RunSpec, version: int) -> tuple[str, Weights]:
    arrays = weights_to_arrays(ActorCritic(ModelConfig.from_spec(spec)))
    return DEALER, Weights(learner_id=LEARNER_ID, version=version, arrays=arrays)


def pong(version: int, held: list[int] | None = None) -> tuple[str, Pong]:
    return DEALER, Pong(learner_id=LEARNER_ID, version=version, held=held or [])


SHUTDOWN = (DEALER, Shutdown(learner_id=LEARNER_ID, reason="test over"))


def run_actor(
    monkeypatch, answer: Answer, refuse: Callable[[Message], bool] | None = None
) -> tuple[int, RecordingLog, ScriptedLearner]:
    """The real ActorClient.run against ``answer``; its exit code, log and learner.
    Hang guard: a stop request after HANG_GUARD_S of fake time (or of real time)."""
    clock = FakeClock()
    learner = ScriptedLearner(clock, answer, refuse or (lambda msg: False))
    for module in (client_module, link_module):  # the loop and the line to the learner
        monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(link_module, "Transport", lambda endpoint, log, curve=None: learner)
    log = RecordingLog()
    cfg = ActorConfig(learner="tcp://127.0.0.1:9", actor_id="a1", learner_timeout=LEARNER_TIMEOUT)
    start, real_deadline = clock.t, time.monotonic() + HANG_GUARD_S

    def stop_requested() -> bool:
        return clock.t - start > HANG_GUARD_S or time.monotonic() > real_deadline

    code = ActorClient(cfg, log, stop_requested).run()
    return code, log, learner


def exit_event(log: RecordingLog) -> dict:
    (event,) = log.events("actor_exit")
    return event


# The actor's join ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exit_code"), [("bad_hello", EXIT_PROTOCOL), ("auth_identity", EXIT_AUTH)]
)
def test_join_ends_with_a_clear_exit_when_the_learner_refuses(monkeypatch, code, exit_code):
    def answer(msg, learner):
        if isinstance(msg, Hello):
            return [(DEALER, Error(code=code, detail="refused by the test", fatal=True))]
        return None

    rc, log, _ = run_actor(monkeypatch, answer)
    assert rc == exit_code
    assert log.names() == ["joining", "learner_error", "actor_exit"]
    assert log.events("learner_error")[0]["code"] == code
    assert exit_event(log)["reason"] == code


def test_join_says_once_that_the_learner_is_unreachable_and_joins_when_it_comes(monkeypatch):
    # (A learner that never comes: test_faults.py::
    # test_unreachable_learner_is_reported_and_sigint_ends_the_actor_cleanly.)
    first: list[float] = []

    def answer(msg, learner):
        if isinstance(msg, Hello):
            first[:] = first or [learner.clock.t]
            if learner.clock.t - first[0] < 3 * LEARNER_TIMEOUT:
                return None  # not up yet
            return [welcome(SYNC), weights(SYNC, 0)]
        if isinstance(msg, Experience):
            return [SHUTDOWN]
        return None

    rc, log, learner = run_actor(monkeypatch, answer)
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    assert log.names()[:4] == ["joining", "learner_unreachable", "joined", "weights_received"]
    assert log.names().count("learner_unreachable") == 1
    hellos = [t for t, _ in learner.sent_of(Hello)]
    assert len(hellos) >= 6 and all(b - a >= HELLO_EVERY_S for a, b in pairwise(hellos))
    assert len(learner.sent_of(Experience)) == 1  # it went on to work


def test_join_asks_again_when_the_weights_after_welcome_are_lost(monkeypatch):
    hellos = []

    def answer(msg, learner):
        if isinstance(msg, Hello):
            hellos.append(msg)
            # The first Welcome's Weights never arrive (dropped at the ROUTER).
            return [welcome(SYNC)] if len(hellos) == 1 else [welcome(SYNC), weights(SYNC, 0)]
        if isinstance(msg, Experience):
            return [SHUTDOWN]
        return None

    rc, log, learner = run_actor(monkeypatch, answer)
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    assert log.names()[:4] == ["joining", "joined", "joined", "weights_received"]
    (t1, _), (t2, _) = learner.sent_of(Hello)
    assert t2 - t1 >= HELLO_EVERY_S
    assert "learner_unreachable" not in log.names()


# The actor's credit and sync waits --------------------------------------------------------


def alive_learner(spec: RunSpec, on_experience: Callable[[Experience], list | None]) -> Answer:
    """Welcomes, answers every heartbeat, and hands rollouts to ``on_experience``."""

    def answer(msg, learner):
        if isinstance(msg, Hello):
            return [welcome(spec), weights(spec, 0)]
        if isinstance(msg, Heartbeat):
            return [pong(0)]
        if isinstance(msg, Experience):
            return on_experience(msg)
        return None

    return answer


def test_credit_wait_ends_by_ack_missing_when_the_ack_never_comes(monkeypatch):
    # async, --max-in-flight 1: rollout 2 waits for rollout 1's Ack, which never comes.
    answer = alive_learner(ASYNC, lambda msg: [SHUTDOWN] if msg.seq == 2 else None)
    rc, log, learner = run_actor(monkeypatch, answer)
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    names = log.names()
    assert names.index("backpressure") < names.index("ack_missing") < names.index("actor_exit")
    assert log.events("backpressure")[0]["waiting_for"] == "ack"
    assert [e["seq"] for e in log.events("ack_missing")] == [1]
    (t1, _), (t2, _) = learner.sent_of(Experience)
    assert LEARNER_TIMEOUT <= t2 - t1 <= LEARNER_TIMEOUT + 2 * POLL_MS / 1000
    assert "learner_lost" not in names


def holding_learner(hold_s: float, after: Callable[[ScriptedLearner], list]) -> Answer:
    """async: rollout 1 is named held in every Pong for ``hold_s`` after it was sent;
    then ``after(learner)`` answers the heartbeats. Rollout 2 ends the run."""

    def answer(msg, learner):
        if isinstance(msg, Hello):
            return [welcome(ASYNC), weights(ASYNC, 0)]
        if isinstance(msg, Experience):
            return [SHUTDOWN] if msg.seq == 2 else None
        if isinstance(msg, Heartbeat):
            sent = learner.sent_of(Experience)
            if not sent:
                return [pong(0)]
            if learner.clock.t - sent[0][0] < hold_s:
                return [pong(0, held=[1])]
            return after(learner)
        return None

    return answer


def test_credit_wait_outlasts_a_long_update_while_the_learner_says_it_holds_the_rollout(
    monkeypatch,
):
    # async, --max-in-flight 1: rollout 1 is in an update that takes 4 x the actor's
    # patience (a CPU learner on Atari). Each Pong says the learner holds it, so its Ack
    # is late, not lost: the actor sends nothing more until the Ack (before schema 8 the
    # credit expired after one --learner-timeout and the actor sent past it).
    update_s = 4 * LEARNER_TIMEOUT
    state = {"acked_at": None}

    def ack(learner):
        state["acked_at"] = learner.clock.t
        return [(DEALER, Ack(learner_id=LEARNER_ID, seq=1, version=1, trained=True)), pong(1)]

    rc, log, learner = run_actor(monkeypatch, holding_learner(update_s, ack))
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    assert "ack_missing" not in log.names() and "learner_lost" not in log.names()
    (t1, _), (t2, _) = learner.sent_of(Experience)
    assert t2 - t1 >= update_s and t2 >= state["acked_at"]


def test_a_rollout_the_learner_stops_naming_as_held_expires_as_before(monkeypatch):
    # Held for a while, then neither named nor acked (lost): the credit comes back one
    # --learner-timeout after the last Pong that named it.
    held_for = 2 * LEARNER_TIMEOUT
    rc, log, learner = run_actor(monkeypatch, holding_learner(held_for, lambda _: [pong(0)]))
    assert rc == EXIT_OK
    assert [e["seq"] for e in log.events("ack_missing")] == [1]
    (t1, _), (t2, _) = learner.sent_of(Experience)
    last_named = max(t for t, m in learner.sent_of(Heartbeat) if t - t1 < held_for)
    assert LEARNER_TIMEOUT <= t2 - last_named <= LEARNER_TIMEOUT + 1.0


def test_sync_release_wait_ends_by_ack_missing_when_the_ack_never_comes(monkeypatch):
    answer = alive_learner(SYNC, lambda msg: [SHUTDOWN] if msg.seq == 2 else None)
    rc, log, learner = run_actor(monkeypatch, answer)
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    assert [e["seq"] for e in log.events("ack_missing")] == [1]
    (t1, _), (t2, second) = learner.sent_of(Experience)
    # Longer than the credit wait: the rollout may sit out --barrier-timeout-s.
    patience = coordination.get("sync").ack_patience * LEARNER_TIMEOUT
    assert patience <= t2 - t1 <= patience + 2 * POLL_MS / 1000
    assert second.policy_version == 0  # it went on with the weights it had
    assert "learner_lost" not in log.names()


def test_sync_release_wait_ends_by_learner_lost_when_the_learner_goes_silent(monkeypatch):
    rollouts = []

    def answer(msg, learner):
        if isinstance(msg, Hello):
            return [welcome(SYNC), weights(SYNC, 0)] if not rollouts else [SHUTDOWN]
        if isinstance(msg, Heartbeat) and not rollouts:
            return [pong(0)]
        if isinstance(msg, Experience):
            rollouts.append(msg)  # and silence from now on
        return None

    rc, log, _ = run_actor(monkeypatch, answer)
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    names = log.names()
    assert names.count("joining") == 2
    assert names.index("learner_lost") < len(names) - 1 - names[::-1].index("joining")
    (lost,) = log.events("learner_lost")
    assert LEARNER_TIMEOUT <= lost["silent_s"] <= LEARNER_TIMEOUT + 0.2  # rounded to 0.1 s
    assert "ack_missing" not in names  # learner_lost came first: 1 timeout, not 4


def test_sync_wait_for_the_released_weights_asks_for_them_when_the_broadcast_is_missed(
    monkeypatch,
):
    def on_experience(msg):
        if msg.seq == 1:
            # Released to version 1; its broadcast on the PUB never reaches this actor.
            return [(DEALER, Ack(learner_id=LEARNER_ID, seq=1, version=1, trained=True))]
        return [SHUTDOWN]

    answer = alive_learner(SYNC, on_experience)

    def with_requests(msg, learner):
        if isinstance(msg, WeightsRequest):
            return [weights(SYNC, 1)]
        return answer(msg, learner)

    rc, log, learner = run_actor(monkeypatch, with_requests)
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    (t1, _), (t2, second) = learner.sent_of(Experience)
    ((t_req, request),) = learner.sent_of(WeightsRequest)
    assert request.have_version == 0 and t1 < t_req < t2
    assert t_req - t1 >= 4 * SYNC.heartbeat_s  # a missed broadcast is waited for a little
    assert second.policy_version == 1  # collected with the released weights
    assert not {"ack_missing", "learner_lost"} & set(log.names())


def test_a_send_that_never_goes_out_ends_by_learner_lost_and_a_rejoin(monkeypatch):
    # The learner is gone: from the first rollout on, nothing but a Hello goes out (at
    # the high-water mark), and nothing comes back.
    blocked: list[bool] = []

    def refuse(msg):
        if isinstance(msg, Experience):
            blocked[:] = [True]
        return bool(blocked) and not isinstance(msg, Hello)

    def answer(msg, learner):
        if isinstance(msg, Hello):
            return [welcome(ASYNC), weights(ASYNC, 0)] if not blocked else [SHUTDOWN]
        if isinstance(msg, Heartbeat):
            return [pong(0)]
        return None

    rc, log, learner = run_actor(monkeypatch, answer, refuse)
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    names = log.names()
    assert names.index("backpressure") < names.index("learner_lost")
    assert log.events("backpressure")[0]["waiting_for"] == "send"
    assert names.count("joining") == 2 and learner.sent_of(Experience) == []


# --- the learner's training thread ------------------------------------------------------


class BlockingUpdater:
    """An update that runs until the test lets it finish."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.go = threading.Event()

    def compute(self, release, prepared):
        self.started.set()
        self.go.wait(HANG_GUARD_S)
        return Done(release, [], None)


def one_release() -> Release:
    return Release([Submission("a", b"route-a", 1, 0, None)])


def test_a_drain_answers_actors_until_the_update_in_flight_is_done():
    # What a checkpoint and the end of a run do: LearnerServer.drain passes the loop's
    # receive as while_waiting, so actors are answered during a long update.
    updater = BlockingUpdater()
    training = TrainingThread(updater, depth=1)
    answered = []

    def answer_actors() -> None:  # stands in for one bounded poll of the ROUTER
        answered.append(time.monotonic())
        if len(answered) == 5:
            updater.go.set()  # the update finishes while the loop is answering
        updater.go.wait(0.01)

    try:
        training.submit(one_release(), None)
        finished: list[Done] = []
        training.drain(finished.append, timeout_s=HANG_GUARD_S, while_waiting=answer_actors)
        assert len(finished) == 1 and training.in_flight == 0
        assert len(answered) >= 5
    finally:
        updater.go.set()
        training.close()
    # A drain whose update never finishes raises after its timeout: test_pipeline.py::
    # test_drain_never_waits_forever.


class JoinRecorder:
    """The training thread, with each join's timeout recorded and cut to 0.1 s (close
    bounds its join at 30 s; the test need not sit that out to see it bounded)."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.timeouts: list[float | None] = []

    def join(self, timeout: float | None = None) -> None:
        self.timeouts.append(timeout)
        self.thread.join(0.1)

    def is_alive(self) -> bool:
        return self.thread.is_alive()


def test_close_gives_up_on_a_hung_update_and_the_final_checkpoint_is_skipped():
    updater = BlockingUpdater()
    training = TrainingThread(updater, depth=1)
    thread = training._thread
    try:
        training.submit(one_release(), None)
        assert updater.started.wait(HANG_GUARD_S)
        training._thread = JoinRecorder(thread)  # type: ignore[assignment]
        training.close()
        assert training._thread.timeouts and None not in training._thread.timeouts
        assert training.alive  # LearnerServer.shutdown logs training_thread_stuck on this
        log = RecordingLog()
        parts = Parts(
            cfg=None, spec=None, device=None, trainer=None, stats=None,
            checkpointer=None, target=None, trained_s=0.0, log=log,
            server=SimpleNamespace(training=training, closed=True),
        )  # fmt: skip
        assert parts.save_checkpoint(1.0) is None  # never over a half-updated network
        assert log.names() == ["checkpoint_skipped"]
    finally:
        updater.go.set()
        thread.join(HANG_GUARD_S)
    assert not thread.is_alive()


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
    It stops when the test asks, when ``until()`` holds, or after HANG_GUARD_S."""

    def __init__(
        self, run_dir: Path, monkeypatch, *flags: str, until: Callable[[], bool] | None = None
    ) -> None:
        # Local actors are `python -m actor` children: the repository must be importable
        # from wherever pytest runs.
        monkeypatch.setenv("PYTHONPATH", python_path())
        cfg, _ = parse(["--run-dir", str(run_dir), "--port", "0", *LEARNER_FLAGS, *flags])
        self.log = RecordingLog()
        self._stop = threading.Event()
        deadline = time.monotonic() + HANG_GUARD_S
        self.stop_requested = lambda: (
            self._stop.is_set() or time.monotonic() > deadline or (until is not None and until())
        )
        self.parts = build(cfg, run_dir, self.log, self.stop_requested)
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def run(self) -> Outcome:
        """Run to the end on this thread; the local actors are stopped whatever happens."""
        try:
            self.outcome, _ = run_learner(self.parts, self.log, self.stop_requested)
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
            self._thread.join(HANG_GUARD_S)
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
        HANG_GUARD_S or if the learner stopped first."""
        deadline = time.monotonic() + HANG_GUARD_S
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
        raise AssertionError(f"no {name!r} within {HANG_GUARD_S}s: {self.log.names()[-20:]}")

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
