"""The actor's waits end: its loop (the real ``ActorClient.run``) against a scripted
learner standing in for its Transport, on a fake clock. Each wait (join, credit, sync
release, released weights, a full send queue) ends after as many *fake* seconds as the
settings say, so a test asserts the bound itself without a wall-clock window.

The learner's waits are in tests/test_stuck.py and tests/test_pipeline.py; the table in
docs/reliability.md maps every wait to its test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

import pytest

import actor.client as client_module
import actor.link as link_module
from actor.client import HELLO_EVERY_S, POLL_MS, ActorClient
from actor.config import ActorConfig
from actor.exits import EXIT_AUTH, EXIT_OK, EXIT_PROTOCOL
from actor.transport import DEALER
from core import coordination
from core.models import ActorCritic, ModelConfig, weights_to_arrays
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
from tests.fakes import FakeClock, RecordingLog

HANG_GUARD_S = 60.0  # fake (or real) seconds: a wait that ends at all ends long before this

# --- a scripted learner in place of the Transport ------------------------------------------

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


# --- the join ------------------------------------------------------------------------------


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


@pytest.mark.parametrize("port", [-1, 0, 65536])
def test_a_welcome_with_an_impossible_weights_port_ends_the_join_with_a_clear_exit(
    monkeypatch, port
):
    # ZeroMQ would raise on the connect (a traceback, not an exit code) or wait forever.
    def answer(msg, learner):
        if isinstance(msg, Hello):
            _, good = welcome(SYNC)
            bad = Welcome(good.learner_id, good.run, port, good.temperature, good.seed)
            return [(DEALER, bad), weights(SYNC, 0)]
        return [SHUTDOWN]

    rc, log, _ = run_actor(monkeypatch, answer)
    assert rc == EXIT_PROTOCOL
    assert str(port) in exit_event(log)["reason"] and "joined" not in log.names()


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


# --- the credit and sync waits -----------------------------------------------------------


def alive_learner(
    spec: RunSpec,
    on_experience: Callable[[Experience], list | None],
    weights_on_request: int | None = None,
) -> Answer:
    """Welcomes, answers every heartbeat, and hands rollouts to ``on_experience``;
    answers a WeightsRequest with the weights of version ``weights_on_request``."""

    def answer(msg, learner):
        if isinstance(msg, Hello):
            return [welcome(spec), weights(spec, 0)]
        if isinstance(msg, Heartbeat):
            return [pong(0)]
        if isinstance(msg, Experience):
            return on_experience(msg)
        if isinstance(msg, WeightsRequest) and weights_on_request is not None:
            return [weights(spec, weights_on_request)]
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


def test_an_async_actor_that_missed_the_broadcasts_asks_for_the_weights_and_catches_up(
    monkeypatch,
):
    # The learner is far ahead (its Acks name version 10) but no Weights reach the
    # actor's SUB (a slow subscriber's queue drops the newest). Unasked, every rollout
    # would stay at version 0, too old to train on, and with no update no new weights
    # would ever be published: the run would stall. The actor asks over its DEALER.
    def on_experience(msg):
        if msg.policy_version == 10:
            return [SHUTDOWN]
        return [(DEALER, Ack(learner_id=LEARNER_ID, seq=msg.seq, version=10, trained=False))]

    rc, log, learner = run_actor(monkeypatch, alive_learner(ASYNC, on_experience, 10))
    assert rc == EXIT_OK and exit_event(log)["reason"] == "learner_shutdown"
    (asked,) = log.events("weights_requested")
    assert asked["have"] == 0 and asked["behind"] == 10
    versions = [m.policy_version for _, m in learner.sent_of(Experience)]
    assert versions[0] == 0 and versions[-1] == 10 and len(learner.sent_of(WeightsRequest)) == 1


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

    rc, log, learner = run_actor(monkeypatch, alive_learner(SYNC, on_experience, 1))
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
