"""Who the learner is talking to: actors, their incarnations, liveness and conduct.

An actor is known by its ZeroMQ routing id (one per connection) and by the
``actor_id`` it claims in Hello. With CurveZMQ on, ``key_name`` (from the
authenticated key) is the identity and a claim that does not match it is refused.
An actor restarted with the same id is a new incarnation: its old record is replaced.

No sockets here: the server passes routing ids and timestamps in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from learner.episodes import EpisodeChain


@dataclass
class ActorRecord:
    actor_id: str
    incarnation: str
    routing_id: bytes
    hostname: str
    pid: int
    num_envs: int
    temperature: float
    seed: int
    last_seen: float
    # Anything heard since the Hello. Until then the actor is building its envs and
    # network from the run spec (seconds for Atari on a loaded machine), so it gets
    # JOIN_GRACE_S instead of the actor timeout.
    heard: bool = False
    last_seq: int = 0
    seq_gaps: int = 0
    env_steps: int = 0  # valid transitions received (derived from the flags)
    bad_messages: int = 0
    quarantined: bool = False
    key_name: str | None = None
    # This actor's episodes in progress as the learner derives them (learner/episodes.py);
    # made at its first rollout. A new record (every Welcome) has fresh envs behind it.
    chain: EpisodeChain | None = None


JOIN_GRACE_S = 30.0


class ActorRegistry:
    def __init__(self, timeout_s: float, max_bad: int, max_strangers: int = 1024) -> None:
        self.timeout_s = timeout_s
        self.max_bad = max_bad
        self.by_route: dict[bytes, ActorRecord] = {}
        self.by_id: dict[str, ActorRecord] = {}
        self.joins = 0
        self.ids_seen: set[str] = set()  # distinct actor ids that ever joined (for the summary)
        # Bad-message counts of routing ids that never joined; bounded (oldest evicted).
        self.strangers: OrderedDict[bytes, int] = OrderedDict()
        self.max_strangers = max_strangers
        # Quarantine outlives the record (an actor's record expires when it goes quiet):
        # connections by routing id (bounded, oldest forgotten), keys by CURVE name.
        self.banned_routes: OrderedDict[bytes, str] = OrderedDict()
        self.banned_keys: set[str] = set()
        # Records of actors declared lost, by id (bounded, oldest forgotten): one that
        # comes back is a reconnect, and its sequence numbers carry on from where the
        # learner lost it (no false gap for the rollouts it had already received).
        self.departed: OrderedDict[str, ActorRecord] = OrderedDict()

    def join(self, rec: ActorRecord) -> tuple[ActorRecord, ActorRecord | None]:
        """Register ``rec``; return it and the record it replaces (same actor_id: a
        restart or a reconnect), if any."""
        old = self.by_id.pop(rec.actor_id, None)
        if old is not None:
            self.by_route.pop(old.routing_id, None)
        else:
            old = self.departed.pop(rec.actor_id, None)
        if old is not None and old.incarnation == rec.incarnation:
            rec.last_seq, rec.seq_gaps = old.last_seq, old.seq_gaps
        stale = self.by_route.pop(rec.routing_id, None)
        if stale is not None and stale is not old:
            self.by_id.pop(stale.actor_id, None)
        self.by_route[rec.routing_id] = rec
        self.by_id[rec.actor_id] = rec
        self.joins += 1
        if len(self.ids_seen) < 100_000:
            self.ids_seen.add(rec.actor_id)
        return rec, old

    def get(self, routing_id: bytes) -> ActorRecord | None:
        return self.by_route.get(routing_id)

    def remove(self, rec: ActorRecord) -> None:
        if self.by_route.get(rec.routing_id) is rec:
            del self.by_route[rec.routing_id]
        if self.by_id.get(rec.actor_id) is rec:
            del self.by_id[rec.actor_id]

    def expire(self, now: float) -> list[ActorRecord]:
        lost = [
            r
            for r in self.by_route.values()
            if now - r.last_seen
            > (self.timeout_s if r.heard else max(self.timeout_s, JOIN_GRACE_S))
        ]
        for r in lost:
            self.remove(r)
            r.chain = None  # its envs are rebuilt when it re-joins
            self.departed[r.actor_id] = r
            while len(self.departed) > self.max_strangers:
                self.departed.popitem(last=False)
        return lost

    def live(self) -> list[ActorRecord]:
        return [r for r in self.by_route.values() if not r.quarantined]

    def bad_message(self, routing_id: bytes) -> bool:
        """Count a bad message from ``routing_id``; True when this one crosses the
        quarantine threshold."""
        rec = self.by_route.get(routing_id)
        if rec is not None:
            rec.bad_messages += 1
            if not rec.quarantined and rec.bad_messages >= self.max_bad:
                rec.quarantined = True
                self._ban(routing_id, rec.actor_id)
                if rec.key_name:
                    self.banned_keys.add(rec.key_name)
                return True
            return False
        count = self.strangers.pop(routing_id, 0) + 1
        self.strangers[routing_id] = count
        while len(self.strangers) > self.max_strangers:
            self.strangers.popitem(last=False)
        if count == self.max_bad:
            self._ban(routing_id, "")
            return True
        return False

    def _ban(self, routing_id: bytes, actor_id: str) -> None:
        self.banned_routes[routing_id] = actor_id
        while len(self.banned_routes) > self.max_strangers:
            self.banned_routes.popitem(last=False)

    def is_quarantined(self, routing_id: bytes) -> bool:
        return routing_id in self.banned_routes
