"""The learner's training thread: updates run beside the loop, not inside it.

    training = TrainingThread(updater, depth=2)
    training.submit(release, updater.prepare(release))   # the loop's thread
    for done in training.finished():                     # the loop's thread
        updater.finish(done)                             # acks, stats, weights out
    training.drain(updater.finish)                       # before a checkpoint, at the end

The loop (learner/server.py) keeps receiving, decoding, checking and answering actors
while the network trains: a slow update (a CNN on a CPU) no longer silences the learner
for seconds, and on a GPU the next batch is decoded, assembled in page-locked memory and
copied (on the trainer's copy stream) while the current one trains. Only the training
thread touches the network and the optimizer; it hands back a copy of the weights with
each result, so the loop never reads parameters that are being written. Sockets stay on
the loop's thread (ZeroMQ sockets are not thread-safe).

``depth`` bounds the releases in flight, the coordination mode's ``pipeline_depth``: 1
for the sync barrier (an update must finish before the next version's rollouts can
exist), 2 otherwise (one training, one prepared).
``busy_s(now)`` is the training thread's time inside updates: the learner's idle
fraction is 1 - busy_s / wall time.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable

from learner.batching import Release
from learner.updates import Done, Updater


class TrainingFailed(RuntimeError):
    """An update raised on the training thread (a bug, not bad input: inputs are
    checked before they get here); re-raised on the loop's thread."""


class TrainingThread:
    def __init__(self, updater: Updater, depth: int) -> None:
        self.updater = updater
        self.depth = depth
        self.in_flight = 0
        # The releases submitted and not yet finished (loop thread only): whose rollouts
        # the learner holds while they wait for or go through an update.
        self._releases: list[Release] = []
        # Written by the training thread only: (seconds in finished updates, when the
        # running one started or None), replaced as one tuple, so that the loop's thread
        # never reads a total that holds the running update with that update's start.
        self._busy: tuple[float, float | None] = (0.0, None)
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._failure: BaseException | None = None  # raised once the good results are out
        # A byte on this pair wakes the loop's poller when an update is done, so acks
        # and weights go out at once, not at the next poll timeout.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="learner-training", daemon=True)
        self._thread.start()

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.depth

    def submit(self, release: Release, prepared) -> None:
        self.in_flight += 1
        self._releases.append(release)
        self._jobs.put((release, prepared))

    def held(self, actor_id: str) -> list[int]:
        """Seqs of ``actor_id``'s submissions in the updates not yet finished."""
        return [s.seq for r in self._releases for s in r.items if s.actor_id == actor_id]

    def _let_go(self, release: Release) -> None:
        self._releases = [r for r in self._releases if r is not release]

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            busy, started = self._busy[0], time.monotonic()
            self._busy = (busy, started)
            try:
                done: Done | BaseException = self.updater.compute(*job)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread
                done = exc
            self._busy = (busy + time.monotonic() - started, None)
            self._done.put(done)
            try:
                self._wake_w.send(b"\0")
            except OSError:  # the pair's buffer is full: the loop is awake already
                pass

    @property
    def wake_fd(self) -> int:
        """A file descriptor that becomes readable when an update is done (for a
        zmq.Poller); ``finished`` empties it."""
        return self._wake_r.fileno()

    def busy_s(self, now: float) -> float:
        """Seconds the training thread has spent in updates so far, the running one
        included."""
        busy, started = self._busy
        return busy + (now - started if started is not None else 0.0)

    def finished(self, timeout: float | None = 0.0) -> list[Done]:
        """Results ready now (or, with a timeout, the next one within it)."""
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:  # nothing (more) to read
            pass
        out = []
        block = timeout is None or timeout > 0
        while self.in_flight:
            try:
                done = self._done.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                break
            block = False
            self.in_flight -= 1
            if isinstance(done, BaseException):
                self._failure = self._failure or done
            else:
                self._let_go(done.release)
                out.append(done)
        if self._failure is not None and not out:
            failure, self._failure = self._failure, None
            raise TrainingFailed(f"an update raised: {failure!r}") from failure
        return out  # results that finished before a failure are handed back first

    def cancel_queued(self) -> list[Release]:
        """Take back the releases not yet started (the run is stopping: finishing them
        would only delay the end); the running update is left to finish."""
        taken = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # close() was called: keep the sentinel
                self._jobs.put(None)
                break
            taken.append(job[0])
            self._let_go(job[0])
        self.in_flight -= len(taken)
        return taken

    def drain(
        self,
        finish: Callable[[Done], None],
        timeout_s: float = 600.0,
        while_waiting: Callable[[], None] | None = None,
    ) -> None:
        """Wait for every update in flight and finish each, calling ``while_waiting``
        between checks (the loop answers actors there); an update that takes longer
        than ``timeout_s`` is a hung device, and raises rather than waits forever."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TrainingFailed(f"updates still running after {timeout_s:g} s")
            for done in self.finished(timeout=0.0 if while_waiting else min(left, 1.0)):
                finish(done)
            if self.in_flight and while_waiting is not None:
                while_waiting()

    @property
    def alive(self) -> bool:
        """The thread has not stopped (an update still running after ``close``)."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop: updates not yet started are dropped, the running one may finish (30 s)."""
        self.cancel_queued()
        self._jobs.put(None)
        self._thread.join(timeout=30.0)
        self._wake_r.close()
        self._wake_w.close()
