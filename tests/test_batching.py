"""The pure batchers of learner/batching.py, driven with explicit times (no sleeps).

The sync barrier has one test per state in which it could wait forever (the module
docstring lists them): a rejected rollout, a quarantined or lost actor, fewer actors
than --min-actors, a live actor that never sends. Then staleness, the release order,
and the async and gradient queues.
"""

from __future__ import annotations

from core import coordination
from learner.batching import AsyncQueue, Release, Submission, SyncBarrier, make_batcher

MIN_WAIT = 30.0
BARRIER = 10.0
T0 = 100.0


def sub(actor_id: str, version: int, seq: int = 1) -> Submission:
    # The payload names the submission, so a release can be checked item by item.
    return Submission(actor_id, actor_id.encode(), seq, version, payload=f"{actor_id}/{seq}")


def barrier(min_actors: int = 1) -> SyncBarrier:
    return SyncBarrier(min_actors, min_actors_wait_s=MIN_WAIT, barrier_timeout_s=BARRIER)


def payloads(release: Release) -> list[str]:
    return [s.payload for s in release.items]


# --- the sync barrier: every state in which it could wait forever ---------------------


def test_a_rejected_rollout_is_re_offered_and_the_barrier_releases_once_all_have_one():
    b = barrier()
    live = {"a", "b"}
    b.offer(sub("a", 3), T0)
    # b's first rollout for version 3 was rejected by the checks: it never reached the
    # barrier, the learner acked it untrained, and b collects another for version 3.
    assert b.take(live, 3, T0 + 1) is None
    b.offer(sub("b", 3, seq=2), T0 + 2)
    release = b.take(live, 3, T0 + 2)
    assert release is not None
    assert payloads(release) == ["a/1", "b/2"]
    assert release.missing == [] and release.reason == ""
    assert b.take(live, 3, T0 + 3) is None, "a release empties the barrier"


def test_a_re_offer_for_the_same_version_replaces_the_actors_earlier_one():
    b = barrier()
    b.offer(sub("a", 3, seq=1), T0)
    b.offer(sub("a", 3, seq=2), T0 + 1)
    release = b.take({"a"}, 3, T0 + 1)
    assert release is not None and payloads(release) == ["a/2"]


def test_a_lost_actor_that_never_sent_no_longer_holds_the_barrier():
    b = barrier()
    b.offer(sub("a", 5), T0)
    b.offer(sub("b", 5), T0)
    assert b.take({"a", "b", "c"}, 5, T0) is None  # waiting for c
    # c went silent (or said bye): declared lost, forgotten, no longer live.
    b.forget("c")
    release = b.take({"a", "b"}, 5, T0 + 1)
    assert release is not None, "released at once, not after the barrier timeout"
    assert [s.actor_id for s in release.items] == ["a", "b"]
    assert release.missing == [] and release.reason == ""


def test_a_quarantined_actors_submission_is_forgotten_and_never_released():
    b = barrier()
    b.offer(sub("c", 5), T0)  # c sent, then was quarantined for bad messages
    b.offer(sub("b", 5), T0)
    b.forget("c")
    assert b.take({"a", "b"}, 5, T0) is None  # still waiting for a
    b.offer(sub("a", 5), T0 + 1)
    release = b.take({"a", "b"}, 5, T0 + 1)
    assert release is not None
    assert [s.actor_id for s in release.items] == ["a", "b"]
    assert release.missing == [] and release.reason == ""


def test_forgetting_the_only_waiting_actor_restarts_the_barrier_clock():
    b = barrier()
    b.offer(sub("a", 2), T0)
    b.forget("a")
    b.offer(sub("b", 2), T0 + BARRIER)  # the clock starts here, not at T0
    assert b.take({"b", "c"}, 2, T0 + BARRIER + 1) is None
    release = b.take({"b", "c"}, 2, T0 + 2 * BARRIER)
    assert release is not None and release.reason == "barrier_timeout"


def test_fewer_than_min_actors_ever_join_releases_after_min_actors_wait_and_not_before():
    b = barrier(min_actors=3)
    live = {"a", "b"}  # a third actor died at start-up
    b.offer(sub("a", 0), T0)
    b.offer(sub("b", 0), T0 + 1)
    # Every live actor has sent, but the first update waits for --min-actors.
    for now in (T0, T0 + BARRIER, T0 + MIN_WAIT - 1e-3):
        assert b.take(live, 0, now) is None, now
    release = b.take(live, 0, T0 + MIN_WAIT)
    assert release is not None
    assert release.reason == "min_actors_wait"
    assert payloads(release) == ["a/1", "b/1"]
    assert release.missing == []


def test_min_actors_rules_only_the_first_update():
    b = barrier(min_actors=3)
    b.offer(sub("a", 1), T0)
    b.offer(sub("b", 1), T0)
    release = b.take({"a", "b"}, 1, T0)
    assert release is not None and release.reason == ""


def test_min_actors_reached_releases_the_first_update_at_once():
    b = barrier(min_actors=2)
    b.offer(sub("a", 0), T0)
    assert b.take({"a", "b"}, 0, T0) is None
    b.offer(sub("b", 0), T0 + 1)
    release = b.take({"a", "b"}, 0, T0 + 1)
    assert release is not None and release.reason == "" and len(release.items) == 2


def test_a_live_actor_that_never_sends_is_left_behind_after_barrier_timeout_and_not_before():
    b = barrier()
    live = {"a", "b", "silent"}
    b.offer(sub("b", 4), T0)
    b.offer(sub("a", 4), T0 + 3)  # the timeout counts from the first waiting submission
    for now in (T0, T0 + 3, T0 + BARRIER - 1e-3):
        assert b.take(live, 4, now) is None, now
    release = b.take(live, 4, T0 + BARRIER)
    assert release is not None
    assert release.reason == "barrier_timeout"
    assert release.missing == ["silent"]
    assert [s.actor_id for s in release.items] == ["a", "b"]


def test_the_late_rollout_of_an_actor_left_behind_is_stale_and_never_released():
    b = barrier()
    live = {"a", "slow"}
    b.offer(sub("a", 4), T0)
    assert b.take(live, 4, T0 + BARRIER) is not None  # went ahead without "slow"
    b.offer(sub("slow", 4), T0 + BARRIER + 1)  # collected with version 4; now it is 5
    assert b.take(live, 5, T0 + BARRIER + 1) is None
    assert b.take(live, 5, T0 + 10 * BARRIER) is None, "dropped, not kept for a later release"


def test_stale_submissions_are_not_released_with_the_current_version():
    b = barrier()
    live = {"a", "b"}
    b.offer(sub("a", 7), T0)
    b.offer(sub("b", 6), T0)  # stale: collected with an older version
    assert b.take(live, 7, T0) is None, "b's stale rollout does not count toward the barrier"
    b.offer(sub("b", 7, seq=2), T0 + 1)
    release = b.take(live, 7, T0 + 1)
    assert release is not None
    assert payloads(release) == ["a/1", "b/2"]
    assert all(s.version == 7 for s in release.items)


def test_an_older_rollout_never_replaces_a_newer_one():
    b = barrier()
    b.offer(sub("a", 7, seq=2), T0)
    b.offer(sub("a", 6, seq=1), T0 + 1)  # reordered on the way
    release = b.take({"a"}, 7, T0 + 1)
    assert release is not None and payloads(release) == ["a/2"]


def test_a_dropped_stale_submission_does_not_start_the_barrier_clock():
    b = barrier()
    live = {"a", "b"}
    b.offer(sub("b", 6), T0)  # stale by the time it is looked at
    b.offer(sub("a", 7), T0 + 2 * BARRIER)  # the only submission for version 7
    # a's rollout has waited 1 s: b (live, and yet to send for 7) gets barrier_timeout_s.
    assert b.take(live, 7, T0 + 2 * BARRIER + 1) is None


def test_a_skipped_first_update_still_gives_live_actors_the_barrier_timeout():
    b = barrier(min_actors=3)
    live = {"a", "b"}
    b.offer(sub("a", 0), T0)
    b.offer(sub("b", 0), T0)
    assert b.take(live, 0, T0 + MIN_WAIT) is not None
    # The update was skipped (no valid transition): the version is still 0, and the
    # actors collect again. a's rollout arrives first; b is live and still collecting.
    b.offer(sub("a", 0, seq=2), T0 + MIN_WAIT + 1)
    assert b.take(live, 0, T0 + MIN_WAIT + 1) is None


def test_release_is_sorted_by_actor_id_not_arrival_order():
    b = barrier()
    ids = ["delta", "alpha", "charlie", "bravo"]
    for i, actor in enumerate(ids):
        b.offer(sub(actor, 2), T0 + i)
    release = b.take(set(ids), 2, T0 + len(ids))
    assert release is not None
    assert [s.actor_id for s in release.items] == sorted(ids)


def test_an_empty_barrier_releases_nothing_however_long_it_waits():
    b = barrier(min_actors=2)
    assert b.take({"a", "b"}, 0, T0) is None
    assert b.take({"a", "b"}, 0, T0 + 100 * MIN_WAIT) is None
    assert b.take(set(), 3, T0 + 100 * MIN_WAIT) is None


# --- the async and gradient queues -----------------------------------------------------


def test_async_queue_merges_at_most_max_batch_in_arrival_order():
    q = AsyncQueue(max_batch=2)
    assert q.take(set(), 0, T0) is None
    order = [("b", 1), ("a", 1), ("b", 2), ("c", 1), ("a", 2)]
    for i, (actor, seq) in enumerate(order):
        assert not q.full() or i >= 2
        q.offer(sub(actor, version=i % 2, seq=seq), T0 + i)
    assert q.full()
    released = []
    while (r := q.take({"a", "b", "c"}, 9, T0 + 10)) is not None:
        assert 1 <= len(r.items) <= 2
        assert r.missing == [] and r.reason == ""
        released.append(payloads(r))
    assert released == [["b/1", "a/1"], ["b/2", "c/1"], ["a/2"]]
    assert not q.full()


def test_async_queue_keeps_what_a_departed_actor_sent():
    q = AsyncQueue(max_batch=8)
    q.offer(sub("a", 1), T0)
    q.offer(sub("b", 1), T0)
    q.forget("a")
    release = q.take({"b"}, 1, T0)
    assert release is not None and payloads(release) == ["a/1", "b/1"]


def test_async_gather_waits_for_a_share_of_the_live_actors():
    """14 live actors, gather 0.5: an update waits for 7 rollouts, whichever actors
    they come from (a slow actor holds nobody up), then takes them all."""
    q = AsyncQueue(max_batch=16, gather=0.5, max_wait_s=BARRIER)
    live = {f"a{i}" for i in range(14)}
    for i in range(6):
        q.offer(sub(f"a{i}", 0), T0 + i * 0.01)
        assert q.take(live, 0, T0 + 0.1) is None
    q.offer(sub("a6", 0), T0 + 0.1)
    release = q.take(live, 0, T0 + 0.1)
    assert release is not None and len(release.items) == 7
    assert q.take(live, 1, T0 + 0.2) is None  # nothing left


def test_async_gather_never_waits_past_max_wait_nor_for_more_than_max_batch():
    q = AsyncQueue(max_batch=3, gather=1.0, max_wait_s=BARRIER)
    live = {f"a{i}" for i in range(10)}
    q.offer(sub("a0", 0), T0)
    assert q.take(live, 0, T0 + BARRIER - 0.01) is None
    release = q.take(live, 0, T0 + BARRIER)  # the oldest has waited long enough
    assert release is not None and payloads(release) == ["a0/1"]
    for i in range(3):  # 10 live actors want 10, but an update holds at most 3
        q.offer(sub(f"a{i}", 1, seq=2), T0 + 20)
    release = q.take(live, 1, T0 + 20)
    assert release is not None and len(release.items) == 3
    assert AsyncQueue(max_batch=8, gather=0.5).wanted(1) == 1  # one actor: no waiting
    assert AsyncQueue(max_batch=8, gather=0.0).wanted(50) == 1  # off: as before


def test_gradients_are_applied_one_at_a_time():
    q = make_batcher(
        coordination.get("gradients"),
        min_actors=2,
        min_actors_wait_s=MIN_WAIT,
        barrier_timeout_s=BARRIER,
        max_batches_per_update=8,
    )
    for i, actor in enumerate(["b", "a", "c"]):
        q.offer(sub(actor, 0), T0 + i)
    assert q.full()
    released = []
    while (r := q.take({"a", "b", "c"}, 0, T0 + 5)) is not None:
        released.append(payloads(r))
    assert released == [["b/1"], ["a/1"], ["c/1"]]


def test_make_batcher_picks_the_batcher_of_each_coordination_mode():
    kw = dict(min_actors=3, min_actors_wait_s=MIN_WAIT, barrier_timeout_s=BARRIER)
    sync = make_batcher(coordination.get("sync"), **kw, max_batches_per_update=8)
    assert isinstance(sync, SyncBarrier) and sync.max_lag == 0
    assert (sync.min_actors, sync.min_actors_wait_s, sync.barrier_timeout_s) == (3, 30.0, 10.0)
    queue = make_batcher(coordination.get("async"), **kw, max_batches_per_update=5, gather=0.5)
    assert isinstance(queue, AsyncQueue) and (queue.max_batch, queue.gather) == (5, 0.5)
    gradients = make_batcher(coordination.get("gradients"), **kw, max_batches_per_update=5)
    assert isinstance(gradients, AsyncQueue) and gradients.max_batch == 1


def test_a_barrier_keeps_what_its_lag_rule_allows_and_drops_the_rest():
    # A barrier whose mode allows one version of lag (tests/toy_coordination.py): at
    # version 2 rollouts of versions 1 and 2 count, one of version 0 is dropped (acked
    # untrained, so its sender sends another) and the barrier waits for that one.
    b = SyncBarrier(1, min_actors_wait_s=MIN_WAIT, barrier_timeout_s=BARRIER, max_lag=1)
    live = {"a", "b", "c"}
    b.offer(sub("a", 1), T0)
    b.offer(sub("b", 0), T0)
    b.offer(sub("c", 2), T0)
    assert b.take(live, 2, T0) is None
    assert [s.actor_id for s in b.take_dropped()] == ["b"]
    b.offer(sub("b", 1, seq=2), T0 + 1)
    release = b.take(live, 2, T0 + 1)
    assert release is not None and payloads(release) == ["a/1", "b/2", "c/1"]
    assert release.reason == ""


# --- found in review: a re-sent rollout and a late joiner --------------------------------


def test_a_re_sent_rollout_does_not_restart_the_barrier_clock():
    # An actor that re-sends for the same version (its first was rejected) every few
    # seconds must not keep a silent live actor's timeout from ever running out.
    b = barrier()
    live = {"a", "idle"}
    for k in range(3):
        b.offer(sub("a", 0, seq=k + 1), T0 + 4 * k)
        assert b.take(live, 0, T0 + 4 * k) is None
    release = b.take(live, 0, T0 + BARRIER)
    assert release is not None and release.reason == "barrier_timeout"
    assert release.missing == ["idle"] and payloads(release) == ["a/3"]


def test_the_first_update_waits_for_min_actors_rollouts_not_for_joins():
    # A late joiner that has not sent yet is still waited for (up to min_actors_wait_s):
    # the first update never goes ahead with fewer than --min-actors rollouts early.
    b = barrier(min_actors=2)
    b.offer(sub("a", 0), T0)
    assert b.take({"a", "b"}, 0, T0 + BARRIER + 1) is None, "b joined late but is awaited"
    b.offer(sub("b", 0), T0 + BARRIER + 2)
    release = b.take({"a", "b"}, 0, T0 + BARRIER + 2)
    assert release is not None and release.reason == "" and payloads(release) == ["a/1", "b/1"]


def test_sync_barrier_hands_back_what_it_drops_for_an_ack():
    barrier = SyncBarrier(min_actors=1, min_actors_wait_s=1.0, barrier_timeout_s=1.0)
    barrier.offer(Submission("a", b"r", 7, 0, None), 0.0)  # collected with version 0
    assert barrier.take({"a"}, 1, 0.5) is None  # the learner is at version 1 now
    assert [s.seq for s in barrier.take_dropped()] == [7]
    assert barrier.take_dropped() == []


def test_each_batcher_names_the_seqs_it_holds_for_an_actor():
    # What a Pong reports (schema 8), so an actor waits for a late Ack instead of
    # taking it for lost.
    q = AsyncQueue(max_batch=2)
    for item in (sub("a", 0, seq=1), sub("b", 0, seq=7), sub("a", 0, seq=2)):
        q.offer(item, now=0.0)
    assert (q.held("a"), q.held("b"), q.held("c")) == ([1, 2], [7], [])
    q.take({"a", "b"}, version=0, now=0.0)  # the first two go to an update
    assert (q.held("a"), q.held("b")) == ([2], [])
    b = barrier(min_actors=1)
    b.offer(sub("a", 0, seq=3), now=0.0)
    assert (b.held("a"), b.held("b")) == ([3], [])
    b.forget("a")
    assert b.held("a") == []


def test_a_queue_keeps_at_most_its_per_actor_bound_and_drops_the_oldest():
    # An actor past its credit (a bug, an old or hostile client): the learner's queue
    # stays bounded; the oldest of that actor's goes, acked untrained by the caller.
    q = AsyncQueue(max_batch=8, per_actor=2)
    for seq in (1, 2, 3, 4):
        q.offer(sub("a", 0, seq=seq), now=float(seq))
    q.offer(sub("b", 0, seq=9), now=5.0)
    assert q.held("a") == [3, 4] and q.held("b") == [9]
    dropped = q.take_dropped()
    assert [d.seq for d in dropped] == [1, 2] and all(d.payload is None for d in dropped)
    assert q.take_dropped() == []
    release = q.take({"a", "b"}, version=0, now=5.0)
    assert [s.payload for s in release.items] == ["a/3", "a/4", "b/9"]


def test_departed_actors_share_one_bound_so_joining_under_new_ids_cannot_grow_the_queue():
    # A peer that joins under one id after another (each Hello on its connection
    # displaces the last record) and fills each id's bound: what the departed ids sent
    # stays queued, but all of them together keep at most one actor's bound, the newest.
    q = AsyncQueue(max_batch=100, per_actor=2)
    for k in range(5):
        for seq in (1, 2):
            q.offer(sub(f"x{k}", 0, seq=10 * k + seq), now=float(k))
        q.forget(f"x{k}")
    q.offer(sub("live", 0, seq=99), now=6.0)
    assert len(q.queue) == 3 and q.held("x4") == [41, 42] and q.held("live") == [99]
    assert sorted(d.seq for d in q.take_dropped()) == [1, 2, 11, 12, 21, 22, 31, 32]
    # An id that comes back (a reconnect) is under its own bound again, not the shared one.
    q.offer(sub("x4", 0, seq=43), now=7.0)
    q.forget("live")
    assert q.held("x4") == [42, 43] and q.held("live") == [99]
    assert [d.seq for d in q.take_dropped()] == [41]


def test_make_batcher_bounds_an_async_queue_by_the_actors_credit():
    mode = coordination.get("async")
    q = make_batcher(
        mode,
        min_actors=1,
        min_actors_wait_s=MIN_WAIT,
        barrier_timeout_s=BARRIER,
        max_batches_per_update=8,
        max_in_flight=1,
    )
    assert isinstance(q, AsyncQueue) and q.per_actor == 2  # one more, for a lost Ack
