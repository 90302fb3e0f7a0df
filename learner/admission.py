"""Who may join, and which batches the learner accepts: pure decisions, no sockets.

    decision = admit_hello(registry, hello, route, key_name, now, ...)
        -> HelloRefused(code, detail, reason)  or  Admitted(record, replaced, new)
    verdict = judge_batch(record, msg, learner_id, version, max_lag)
        -> Verdict(kind="reject" | "foreign" | "stale" | "accept", ...)

The server carries out the decision (sends Welcome or Error, counts, logs). With
CurveZMQ the authenticated key's name is the identity, and a Hello claiming another is
refused; a banned key stays banned. A batch is judged on the identity of its sender,
its incarnation, its learner, its sequence number (replays refused, gaps reported) and
its policy version (from the future: refused; too old: dropped as stale and acked, so
the actor's credit comes back).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from learner.registry import ActorRecord, ActorRegistry
from protocol.messages import Experience, Gradient, Hello

MAX_ENVS_PER_ACTOR = 4096
MAX_TEMPERATURE = 100.0


@dataclass(frozen=True)
class HelloRefused:
    code: str  # Error.code sent to the actor (the refusal is fatal for it)
    detail: str
    reason: str  # the learner's rejection reason (counted and logged), "" if none


@dataclass(frozen=True)
class Admitted:
    record: ActorRecord
    replaced: ActorRecord | None  # the record of the same actor id this one replaces
    new: bool  # False: a repeated Hello of a known incarnation
    # The record this connection held under another actor id, now gone: its queued
    # rollouts are a departed actor's (batching.py bounds them).
    displaced: ActorRecord | None = None


def actor_seed(run_seed: int, actor_id: str) -> int:
    """From the actor id, not the join order: a run is repeatable however the actors'
    start-up races."""
    return run_seed * 10_007 + zlib.crc32(actor_id.encode()) % 100_003


def admit_hello(
    registry: ActorRegistry,
    msg: Hello,
    route: bytes,
    key_name: str | None,
    now: float,
    *,
    authenticated: bool,
    run_seed: int,
    default_envs: int,
    temperatures: tuple[float, ...],
    max_envs: int = MAX_ENVS_PER_ACTOR,
) -> HelloRefused | Admitted:
    """``max_envs``: the most envs whose rollout fits under the frame limit
    (protocol.rollout.max_envs); an actor asking for more is refused up front, not cut
    off by ZeroMQ at its first rollout."""
    if key_name is not None and key_name in registry.banned_keys:
        return HelloRefused("quarantined", "this key sent too many bad messages", "quarantined")
    if authenticated and key_name != msg.actor_id:
        return HelloRefused(
            "auth_identity",
            f"key is {key_name!r}, not {msg.actor_id[:64]!r}",
            "identity_mismatch",
        )
    if not 0 <= msg.num_envs <= MAX_ENVS_PER_ACTOR or not 0 <= msg.temperature <= MAX_TEMPERATURE:
        return HelloRefused(
            "bad_hello",
            f"num_envs must be in [0, {MAX_ENVS_PER_ACTOR}], temperature in [0, {MAX_TEMPERATURE:g}]",
            "bad_hello",
        )
    if (msg.num_envs or default_envs) > max_envs:
        return HelloRefused(
            "rollout_too_large",
            f"--envs {msg.num_envs or default_envs}: a rollout would exceed the learner's frame "
            f"limit; use --envs {max(max_envs, 1)} or fewer",
            "rollout_too_large",
        )
    existing = registry.get(route)
    if existing is not None and existing.incarnation == msg.incarnation:
        # A repeated Hello: answer again. The actor builds fresh envs on every Welcome
        # (a re-join after it took the learner for lost, on the same connection), so
        # the episodes the learner was following start over, as after a loss.
        existing.chain = None
        return Admitted(existing, None, False)
    index = registry.joins  # join order: temperatures are dealt in turn
    rec, old = registry.join(
        ActorRecord(
            actor_id=msg.actor_id,
            incarnation=msg.incarnation,
            routing_id=route,
            hostname=msg.hostname[:256],
            pid=msg.pid,
            num_envs=msg.num_envs or default_envs,
            temperature=msg.temperature or temperatures[index % len(temperatures)],
            seed=actor_seed(run_seed, msg.actor_id),
            last_seen=now,
            key_name=key_name,
        )
    )
    displaced = existing if existing is not None and existing is not old else None
    return Admitted(rec, old, True, displaced)


def join_events(decision: Admitted, live: int) -> list[tuple[str, dict]]:
    """The log events of an admission: a restart or reconnect of a known actor id, then
    the join itself (none for a repeated Hello)."""
    if not decision.new:
        return []
    rec, old, events = decision.record, decision.replaced, []
    if old is not None:
        events.append(
            (
                "actor_restarted" if old.incarnation != rec.incarnation else "actor_reconnected",
                {
                    "actor_id": rec.actor_id,
                    "incarnation": rec.incarnation,
                    "old_incarnation": old.incarnation,
                    "old_last_seq": old.last_seq,
                    "old_seq_gaps": old.seq_gaps,
                },
            )
        )
    joined = {
        "actor_id": rec.actor_id,
        "incarnation": rec.incarnation,
        "host": rec.hostname,
        "pid": rec.pid,
        "envs": rec.num_envs,
        "temperature": rec.temperature,
        "seed": rec.seed,
        "actors": live,
    }
    return [*events, ("actor_joined", joined)]


@dataclass(frozen=True)
class Verdict:
    kind: str  # "reject" | "foreign" | "stale" | "accept"
    reason: str = ""  # for "reject"
    detail: str = ""
    lag: int = 0
    gap: int = 0  # sequence numbers skipped before this one (lost batches)


def judge_batch(
    rec: ActorRecord,
    msg: Experience | Gradient,
    learner_id: str,
    version: int,
    max_lag: int,
) -> Verdict:
    if msg.incarnation != rec.incarnation:
        return Verdict("reject", "wrong_incarnation", rec.actor_id)
    if msg.learner_id != learner_id:  # collected for an earlier learner
        return Verdict("foreign")
    if msg.seq <= rec.last_seq:
        return Verdict("reject", "replayed_seq", f"{rec.actor_id} seq {msg.seq}")
    gap = msg.seq - rec.last_seq - 1
    rec.last_seq = msg.seq
    rec.seq_gaps += gap
    lag = version - msg.policy_version
    if lag < 0:
        return Verdict("reject", "future_version", f"{msg.policy_version} > {version}", gap=gap)
    if lag > max_lag:
        return Verdict("stale", lag=lag, gap=gap)
    return Verdict("accept", lag=lag, gap=gap)
