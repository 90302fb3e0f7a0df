"""Who the learner is talking to (learner/registry.py): joins, restarts, liveness,
quarantine; and admission's decisions on a Hello (learner/admission.py)."""

from __future__ import annotations

import numpy as np

from learner.admission import Admitted, HelloRefused, admit_hello, join_events
from learner.episodes import EpisodeChain, check_claims
from learner.registry import JOIN_GRACE_S, ActorRecord, ActorRegistry
from protocol.messages import Hello


def record(actor_id: str, route: bytes | None = None, incarnation: str = "i") -> ActorRecord:
    return ActorRecord(
        actor_id=actor_id, incarnation=incarnation, routing_id=route or actor_id.encode(),
        hostname="h", pid=1, num_envs=1, temperature=1.0, seed=1, last_seen=0.0,
    )  # fmt: skip


def test_a_joined_actor_gets_a_grace_period_to_build_its_envs():
    """Between Welcome and its first heartbeat an actor builds envs and network (seconds
    for Atari on a loaded machine): it is not lost after the usual timeout, only after
    JOIN_GRACE_S; once heard from, the usual timeout applies."""
    registry = ActorRegistry(timeout_s=3.0, max_bad=20)
    quiet, heard = record("quiet"), record("heard")
    heard.heard = True
    registry.join(quiet)
    registry.join(heard)
    assert [r.actor_id for r in registry.expire(3.5)] == ["heard"]
    assert registry.expire(JOIN_GRACE_S - 1) == []
    assert [r.actor_id for r in registry.expire(JOIN_GRACE_S + 1)] == ["quiet"]


def test_a_lost_actor_that_comes_back_carries_on_its_sequence_numbers():
    registry = ActorRegistry(timeout_s=1.0, max_bad=20)
    rec, _ = registry.join(record("a", b"r1"))
    rec.last_seq, rec.heard = 41, True
    assert registry.expire(5.0) == [rec] and registry.live() == []
    back, old = registry.join(record("a", b"r2"))  # the same incarnation, a new connection
    assert old is rec and back.last_seq == 41
    restarted, _ = registry.join(record("a", b"r3", incarnation="i2"))  # a new process
    assert restarted.last_seq == 0 and registry.get(b"r2") is None


def test_quarantine_at_the_threshold_outlives_the_record_and_bans_the_key():
    registry = ActorRegistry(timeout_s=1.0, max_bad=3)
    rec, _ = registry.join(record("a"))
    rec.key_name = "a"
    assert [registry.bad_message(b"a") for _ in range(3)] == [False, False, True]
    assert registry.live() == [] and registry.is_quarantined(b"a") and "a" in registry.banned_keys
    assert registry.bad_message(b"a") is False  # told once
    # A stranger (never joined) is banned at the threshold too, and strangers are bounded.
    small = ActorRegistry(timeout_s=1.0, max_bad=2, max_strangers=4)
    assert [small.bad_message(b"x"), small.bad_message(b"x")] == [False, True]
    for i in range(10):
        small.bad_message(f"s{i}".encode())
    assert len(small.strangers) <= 4


def hello(actor_id: str = "a", num_envs: int = 0, incarnation: str = "i") -> Hello:
    return Hello(
        actor_id=actor_id, incarnation=incarnation, hostname="h", pid=1, num_envs=num_envs,
        temperature=0.0,
    )  # fmt: skip


def steps(t: int, end_at: int | None) -> tuple[np.ndarray, ...]:
    """One env's rewards (1 a step), terminated, truncated and valid for ``t`` steps,
    the episode ending at step ``end_at`` (None: still running)."""
    terminated = np.zeros((t, 1), bool)
    if end_at is not None:
        terminated[end_at] = True
    return np.ones((t, 1), np.float32), terminated, np.zeros((t, 1), bool), np.ones((t, 1), bool)


def admit(registry, msg, route=b"r", key=None, authenticated=False, max_envs=64):
    return admit_hello(
        registry, msg, route, key, 0.0, authenticated=authenticated, run_seed=1,
        default_envs=8, temperatures=(1.0, 0.5), max_envs=max_envs,
    )  # fmt: skip


def test_admission_deals_temperatures_in_join_order_and_answers_a_repeated_hello_again():
    registry = ActorRegistry(timeout_s=1.0, max_bad=20)
    first = admit(registry, hello("a"), b"ra")
    second = admit(registry, hello("b"), b"rb")
    assert isinstance(first, Admitted) and isinstance(second, Admitted)
    assert (first.record.temperature, second.record.temperature) == (1.0, 0.5)
    assert first.record.num_envs == 8 and first.record.seed != second.record.seed
    again = admit(registry, hello("a"), b"ra")
    assert isinstance(again, Admitted) and not again.new and join_events(again, 2) == []


def test_a_repeated_hello_starts_the_episodes_over_as_the_actor_builds_fresh_envs():
    # An actor that took the learner for lost re-joins on the same connection with the
    # same incarnation; the learner, whose loop stalled but never lost it, still holds
    # its record. The actor builds fresh envs on the Welcome, so an episode the learner
    # was following mid-way must not be carried into them: an honest 3-step episode
    # would be refused as a false claim (the chain would derive 8 steps).
    registry = ActorRegistry(timeout_s=1.0, max_bad=20)
    rec = admit(registry, hello("a", num_envs=1), b"ra").record
    rec.chain = EpisodeChain(1)
    rec.chain.observe(*steps(5, end_at=None))  # 5 steps of an episode still running
    again = admit(registry, hello("a", num_envs=1), b"ra")
    assert isinstance(again, Admitted) and not again.new and again.record is rec
    chain = rec.chain or EpisodeChain(1)  # what intake makes of a record without one
    episodes = chain.observe(*steps(3, end_at=2))  # a fresh env's first episode, 3 steps
    check_claims(episodes, np.array([3.0]), np.array([3]))
    assert list(episodes.lengths) == [3]


def test_a_hello_under_another_id_on_a_connection_displaces_its_record():
    registry = ActorRegistry(timeout_s=1.0, max_bad=20)
    admit(registry, hello("x1", incarnation="i1"), b"r")
    second = admit(registry, hello("x2", incarnation="i2"), b"r")
    assert isinstance(second, Admitted) and second.new and second.replaced is None
    assert second.displaced is not None and second.displaced.actor_id == "x1"
    assert [r.actor_id for r in registry.live()] == ["x2"]
    restart = admit(registry, hello("x2", incarnation="i3"), b"r")
    assert (
        restart.replaced is not None and restart.displaced is None
    )  # a restart, not a displacement


def test_admission_refuses_with_a_reason_the_actor_is_told():
    registry = ActorRegistry(timeout_s=1.0, max_bad=20)
    too_many = admit(registry, hello(num_envs=100), max_envs=64)
    assert isinstance(too_many, HelloRefused) and too_many.code == "rollout_too_large"
    assert "--envs 64" in too_many.detail
    impostor = admit(registry, hello("b"), key="a", authenticated=True)
    assert isinstance(impostor, HelloRefused) and impostor.reason == "identity_mismatch"
    registry.banned_keys.add("a")
    banned = admit(registry, hello("a"), key="a", authenticated=True)
    assert isinstance(banned, HelloRefused) and banned.code == "quarantined"
