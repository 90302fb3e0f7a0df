"""How checked submissions become updates: the batcher a coordination mode asks for.

    batcher = make_batcher(mode, min_actors=..., max_lag=mode.lag_bound(...), ...)
    batcher.offer(submission)                      # a checked rollout or gradient
    release = batcher.take(live_ids, version, now) # None, or what to train on now
    batcher.forget(actor_id)                       # the actor left, was lost or banned
    batcher.held(actor_id)                         # seqs of its submissions waiting here

- ``SyncBarrier`` (``mode.barrier``; sync): one submission per live actor, each at most
  ``max_lag`` versions old (sync: 0, the current version), then one update on all of
  them. It never waits forever; every state in which it could is bounded
  (tests/test_batching.py has one test each):
    * an actor's rollout was rejected: the learner acks it untrained, so the actor sends
      another for the same version (it never waits for weights that cannot come);
    * an actor is quarantined, said bye or went silent: it is no longer live, and its
      submission is forgotten;
    * fewer actors than --min-actors ever send (one died at start-up): the first update
      waits at most ``min_actors_wait_s`` after the first submission;
    * a live actor never sends (a stuck env, a hostile peer that only heartbeats): once a
      submission is waiting, the others get ``barrier_timeout_s``, then the update goes
      ahead without them (their late rollouts are dropped as stale and acked);
    * an update is skipped (no valid transition, a non-finite loss): the acks carry the
      unchanged version, and actors collect again with the weights they have.
- ``AsyncQueue`` (a queue; async): whatever queued while the learner was busy, merged
  into one update, at most ``max_batch`` (bounding the update's memory; the rest waits
  for the next). It keeps at most ``max_in_flight + 1`` from any one actor (actors keep
  to their credit; the oldest of one that does not is dropped as stale), and as many
  from all departed actors together, so it is bounded by the live actor count. With
  ``gather`` > 0 an update also waits until rollouts from that share of the live
  actors have queued (never more than ``max_batch``, never
  longer than ``max_wait_s`` after the oldest arrived): a learner faster than its data
  would otherwise make one update, one version, per arriving rollout, so each rollout
  would be about as many versions old as there are actors. Gathered, the versions per
  round of rollouts stay about 1 / gather whatever the actor count, and no actor waits
  for a slower one (only a share of the live actors is needed).
- ``AsyncQueue(max_batch=1)`` (``mode.queue_limit`` 1; gradients): each gradient applied
  as it arrives.

No sockets, no torch: the server passes ids and times in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.coordination import Coordination


@dataclass
class Submission:
    """A checked rollout (or gradient) waiting for an update, with what the ack needs."""

    actor_id: str
    route: bytes
    seq: int
    version: int  # the policy version it was collected with
    payload: Any  # a protocol.rollout.Rollout, or a Gradient message
    steps: int = 0  # its valid transitions (what is dropped if it goes stale)


@dataclass
class Release:
    items: list[Submission]
    # Live actors the update goes ahead without, and why ("" when none is missing).
    missing: list[str] = field(default_factory=list)
    reason: str = ""


class SyncBarrier:
    def __init__(
        self,
        min_actors: int,
        min_actors_wait_s: float,
        barrier_timeout_s: float,
        max_lag: int = 0,
    ) -> None:
        self.min_actors = min_actors
        self.min_actors_wait_s = min_actors_wait_s
        self.barrier_timeout_s = barrier_timeout_s
        self.max_lag = max_lag  # the mode's lag rule: versions a submission may be behind
        self.pending: dict[str, Submission] = {}
        # Submissions ``take`` dropped because they are for a version too old (they
        # arrived while the update that made them so was running): the caller acks them
        # untrained, so their senders collect again at once.
        self.dropped: list[Submission] = []
        self.arrived: dict[str, float] = {}  # when each pending submission arrived
        self.started_at: float | None = None  # the run's first submission
        self.released = False  # the first release has happened (min_actors no longer applies)

    def offer(self, sub: Submission, now: float) -> None:
        old = self.pending.get(sub.actor_id)
        if old is not None and old.version > sub.version:
            return  # never replace a newer rollout with an older one
        self.pending[sub.actor_id] = sub
        # The barrier's clock starts with an actor's first rollout for this version; a
        # re-sent one (after a rejection) must not restart it.
        self.arrived.setdefault(sub.actor_id, now)
        if self.started_at is None:
            self.started_at = now

    def forget(self, actor_id: str) -> None:
        self.pending.pop(actor_id, None)
        self.arrived.pop(actor_id, None)

    def held(self, actor_id: str) -> list[int]:
        """Seqs of ``actor_id``'s submissions waiting here."""
        sub = self.pending.get(actor_id)
        return [] if sub is None else [sub.seq]

    def take_dropped(self) -> list[Submission]:
        """What ``take`` dropped since the last call (the caller acks it untrained)."""
        dropped, self.dropped = self.dropped, []
        return dropped

    def full(self) -> bool:
        return False

    def take(self, live: set[str], version: int, now: float) -> Release | None:
        # Only rollouts within the lag rule count; older ones are stale (the server drops
        # them before they get here, this is the barrier's own guard).
        stale = [k for k, s in self.pending.items() if not 0 <= version - s.version <= self.max_lag]
        for k in stale:
            self.dropped.append(self.pending[k])
            self.forget(k)
        if not self.pending:
            return None
        missing = sorted(live - self.pending.keys())
        reason = ""
        first = not self.released and version == 0
        if first and len(self.pending) < self.min_actors:
            # The first update waits for rollouts from --min-actors actors (repeatable
            # runs, however the actors' start-up races), but not forever.
            assert self.started_at is not None
            if now - self.started_at < self.min_actors_wait_s:
                return None
            reason = "min_actors_wait"
        elif missing:
            if now - min(self.arrived.values()) < self.barrier_timeout_s:
                return None
            reason = "barrier_timeout"
        # Sorted by actor id: the update does not depend on arrival order.
        items = [self.pending[k] for k in sorted(self.pending)]
        self.pending.clear()
        self.arrived.clear()
        self.released = True
        return Release(items, missing if reason else [], reason)


class AsyncQueue:
    def __init__(
        self,
        max_batch: int,
        gather: float = 0.0,
        max_wait_s: float = 10.0,
        per_actor: int | None = None,
    ) -> None:
        self.max_batch = max_batch
        self.gather = gather
        self.max_wait_s = max_wait_s
        # At most this many queued per actor: one that sends past its credit (a bug, an
        # old or hostile client) has its oldest queued rollout dropped, so the queue,
        # and the learner's memory, stay bounded whatever an actor does.
        self.per_actor = per_actor
        self.queue: list[Submission] = []
        self.arrived: list[float] = []  # when each queued submission arrived
        self.dropped: list[Submission] = []
        # Actors that left (lost, bye, replaced) with rollouts still queued here. What
        # they sent is good data and stays, but all of them together keep at most
        # ``per_actor``: a peer that joins under one id after another cannot grow the
        # queue past the bound of the actors that are live.
        self.departed: set[str] = set()

    def offer(self, sub: Submission, now: float) -> None:
        self.departed.discard(sub.actor_id)  # back under its own id: its own bound again
        if self.per_actor is not None:
            self._bound(lambda s: s.actor_id == sub.actor_id, self.per_actor - 1)
        self.queue.append(sub)
        self.arrived.append(now)

    def _bound(self, whose: Callable[[Submission], bool], keep: int) -> None:
        """Drop the oldest of the submissions ``whose`` picks until ``keep`` are left."""
        picked = [i for i, s in enumerate(self.queue) if whose(s)]
        for i in reversed(picked[: max(0, len(picked) - keep)]):
            # Kept for its Ack and its count only: the rollout itself is let go now.
            self.dropped.append(dataclasses.replace(self.queue.pop(i), payload=None))
            self.arrived.pop(i)

    def wanted(self, live: int) -> int:
        """Rollouts an update waits for with ``live`` actors: ceil(gather * live), at
        least 1, at most ``max_batch``."""
        return max(1, min(self.max_batch, math.ceil(self.gather * live - 1e-9)))

    def forget(self, actor_id: str) -> None:
        """What an actor sent before it left is still good data: it stays queued, within
        the one bound all departed actors share (the oldest beyond it dropped)."""
        queued = {s.actor_id for s in self.queue}
        self.departed = (self.departed & queued) | ({actor_id} & queued)
        if self.per_actor is not None and self.departed:
            self._bound(lambda s: s.actor_id in self.departed, self.per_actor)

    def held(self, actor_id: str) -> list[int]:
        """Seqs of ``actor_id``'s submissions waiting here."""
        return [s.seq for s in self.queue if s.actor_id == actor_id]

    def full(self) -> bool:
        return len(self.queue) >= self.max_batch

    def take_dropped(self) -> list[Submission]:
        """What ``offer`` and ``forget`` dropped since the last call: an actor's oldest
        queued rollout beyond ``per_actor``, or departed actors' beyond their shared
        bound (the caller acks each untrained and counts it as stale)."""
        dropped, self.dropped = self.dropped, []
        return dropped

    def take(self, live: set[str], version: int, now: float) -> Release | None:
        if not self.queue:
            return None
        if len(self.queue) < self.wanted(len(live)) and now - self.arrived[0] < self.max_wait_s:
            return None
        items, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch :]
        self.arrived = self.arrived[len(items) :]
        return Release(items)


Batcher = SyncBarrier | AsyncQueue


def make_batcher(
    mode: Coordination,
    *,
    min_actors: int,
    min_actors_wait_s: float,
    barrier_timeout_s: float,
    max_batches_per_update: int,
    max_lag: int = 0,
    gather: float = 0.0,
    max_in_flight: int | None = None,
) -> Batcher:
    """The batcher ``mode`` asks for; ``max_lag``: its lag rule as it applies in this run
    (``mode.lag_bound(--max-policy-lag)``), which a barrier also applies at release;
    ``max_in_flight``: the actors' credit, which bounds what a queue keeps per actor
    (one more, for an Ack lost on the way)."""
    if mode.barrier:
        return SyncBarrier(min_actors, min_actors_wait_s, barrier_timeout_s, max_lag)
    per_actor = None if max_in_flight is None else max_in_flight + 1
    # A queue of one releases each submission alone, whatever ``gather`` says.
    return AsyncQueue(
        mode.queue_limit or max_batches_per_update, gather, barrier_timeout_s, per_actor
    )
