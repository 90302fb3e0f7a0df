"""The training thread (learner/pipeline.py): updates beside the loop, handed back in
order, failures raised on the loop's thread, nothing waited for forever. Synchronised
with events, never with sleeps: a test's fake update says when it started and runs on
only when the test lets it."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from learner.batching import Release, Submission
from learner.build import Parts
from learner.pipeline import TrainingFailed, TrainingThread
from learner.updates import Done
from tests.fakes import RecordingLog

WAIT_S = 10.0  # the most any step here waits (on a loaded machine)


class GatedUpdater:
    """``compute`` records what it was given, says it started, then waits for the gate
    (open by default); releases numbered in ``fail`` raise."""

    def __init__(self, *, gated: bool = False, fail: tuple[int, ...] = ()) -> None:
        self.computed: list = []
        self.started = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.fail = fail

    def compute(self, release: Release, prepared) -> Done:
        self.started.set()
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        if release.items[0].seq in self.fail:
            raise RuntimeError(f"boom {release.items[0].seq}")
        self.computed.append(prepared)
        return Done(release, [], None)


def release(seq: int) -> Release:
    return Release([Submission("a", b"r", seq, 0, None)])


def test_updates_run_in_order_and_their_time_is_counted_busy():
    updater = GatedUpdater(gated=True)
    training = TrainingThread(updater, depth=2)
    try:
        t0 = time.monotonic()
        training.submit(release(1), "first")
        training.submit(release(2), "second")
        assert not training.has_room
        assert updater.started.wait(WAIT_S)
        time.sleep(0.05)  # measured, not synchronised on: busy time accrues while it waits
        updater.gate.set()
        finished: list[Done] = []
        training.drain(finished.append, timeout_s=WAIT_S)
        assert [d.release.items[0].seq for d in finished] == [1, 2]
        assert updater.computed == ["first", "second"] and training.has_room
        assert 0.05 <= training.busy_s(time.monotonic()) <= time.monotonic() - t0
    finally:
        training.close()


def test_it_names_the_rollouts_it_holds_until_their_update_is_finished():
    # What a Pong reports (schema 8): an actor's rollouts in an update not yet finished.
    updater = GatedUpdater(gated=True)
    training = TrainingThread(updater, depth=2)
    try:
        training.submit(
            Release([Submission("a", b"r", 1, 0, None), Submission("b", b"s", 4, 0, None)]), "x"
        )
        training.submit(release(2), "queued")
        assert updater.started.wait(WAIT_S)
        assert (training.held("a"), training.held("b"), training.held("c")) == ([1, 2], [4], [])
        taken = training.cancel_queued()  # the queued one is no longer held
        assert [r.items[0].seq for r in taken] == [2] and training.held("a") == [1]
        updater.gate.set()
        training.drain(lambda done: None, timeout_s=WAIT_S)
        assert training.held("a") == [] and training.held("b") == []
    finally:
        training.close()


def test_queued_updates_can_be_taken_back_when_the_run_stops():
    updater = GatedUpdater(gated=True)
    training = TrainingThread(updater, depth=2)
    try:
        training.submit(release(1), "running")
        assert updater.started.wait(WAIT_S)  # the first has started
        training.submit(release(2), "queued")
        taken = training.cancel_queued()
        assert [r.items[0].seq for r in taken] == [2]
        updater.gate.set()
        finished: list[Done] = []
        training.drain(finished.append, timeout_s=WAIT_S)
        assert [d.release.items[0].seq for d in finished] == [1] and updater.computed == ["running"]
    finally:
        training.close()


def test_an_update_that_raises_is_raised_on_the_loop_thread():
    training = TrainingThread(GatedUpdater(fail=(1,)), depth=1)
    try:
        training.submit(release(1), None)
        with pytest.raises(TrainingFailed, match="boom 1"):
            training.drain(lambda done: None, timeout_s=WAIT_S)
    finally:
        training.close()


def test_drain_never_waits_forever():
    updater = GatedUpdater(gated=True)
    training = TrainingThread(updater, depth=1)
    try:
        training.submit(release(1), None)
        with pytest.raises(TrainingFailed, match="still running"):
            training.drain(lambda done: None, timeout_s=0.2)
    finally:
        updater.gate.set()
        training.close()


def test_results_that_finished_before_a_failure_are_handed_back_first():
    training = TrainingThread(GatedUpdater(fail=(2,)), depth=2)
    try:
        training.submit(release(1), None)
        training.submit(release(2), None)
        first = training.finished(timeout=WAIT_S)  # blocks for the first result only
        while not first:
            first = training.finished(timeout=WAIT_S)
        assert [d.release.items[0].seq for d in first] == [1]
        with pytest.raises(TrainingFailed, match="boom 2"):
            # The failure comes with the next call that has no good result to hand back.
            for _ in range(3):
                training.finished(timeout=WAIT_S)
    finally:
        training.close()


def test_close_drops_updates_not_yet_started():
    updater = GatedUpdater(gated=True)
    training = TrainingThread(updater, depth=2)
    training.submit(release(1), "running")
    assert updater.started.wait(WAIT_S)
    training.submit(release(2), "queued")
    cancel = training.cancel_queued

    def cancel_then_let_it_finish():
        taken = cancel()  # close takes back what has not started ...
        updater.gate.set()  # ... before the running update can end
        return taken

    training.cancel_queued = cancel_then_let_it_finish
    training.close()
    assert updater.computed == ["running"] and not training.alive


def test_a_drain_answers_actors_until_the_update_in_flight_is_done():
    # What a checkpoint and the end of a run do: LearnerServer.drain passes the loop's
    # receive as while_waiting, so actors are answered during a long update.
    updater = GatedUpdater(gated=True)
    training = TrainingThread(updater, depth=1)
    answered = []

    def answer_actors() -> None:  # stands in for one bounded poll of the ROUTER
        answered.append(time.monotonic())
        if len(answered) == 5:
            updater.gate.set()  # the update finishes while the loop is answering
        updater.gate.wait(0.01)

    try:
        training.submit(release(1), None)
        finished: list[Done] = []
        training.drain(finished.append, timeout_s=WAIT_S, while_waiting=answer_actors)
        assert len(finished) == 1 and training.in_flight == 0
        assert len(answered) >= 5
    finally:
        updater.gate.set()
        training.close()
    # A drain whose update never finishes raises after its timeout:
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
    updater = GatedUpdater(gated=True)
    training = TrainingThread(updater, depth=1)
    thread = training._thread
    try:
        training.submit(release(1), None)
        assert updater.started.wait(WAIT_S)
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
        updater.gate.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()


def test_shutdown_after_a_crash_counts_the_update_that_was_running():
    # The loop stopped (a crash) while an update ran: close() lets it finish, and its
    # result must reach the updater, or the final checkpoint saves a network one update
    # ahead of the counters saved with it.
    from learner.server import LearnerServer

    updater = GatedUpdater(gated=True)
    training = TrainingThread(updater, depth=1)
    finished: list[Done] = []
    server = SimpleNamespace(
        training=training, closed=False, log=RecordingLog(),
        updater=SimpleNamespace(finish=finished.append),
        outbox=SimpleNamespace(shutdown=lambda routes, reason, tell: None),
        registry=SimpleNamespace(by_route={}), zap=None, ctx=SimpleNamespace(term=lambda: None),
    )  # fmt: skip
    training.submit(release(7), None)
    assert updater.started.wait(WAIT_S)
    updater.gate.set()  # it finishes before or while close() waits: either way unfinished
    LearnerServer.shutdown(server, "crashed", tell_actors=False)
    assert [d.release.items[0].seq for d in finished] == [7]
    assert server.closed and server.log.names() == []
