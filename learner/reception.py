"""Reception: who is connected, and what each message from them gets. The server's
loop hands it every frame that arrives on the ROUTER socket; it answers through the
outbox and never blocks.

    reception.handle(frames)         # any frames at all: never raises
        decode (a bad header: rejected with its reason; a schema mismatch: told, fatally)
        Hello              -> admission.admit_hello: Welcome + current weights, or Error
        Experience/Gradient-> intake.take: offered to the batcher, or acked untrained
        Heartbeat -> Pong (with the seqs of its rollouts still held); WeightsRequest -> Weights; Bye -> the actor is forgotten
    reception.expire(now)            # silent actors declared lost
    reception.live_ids()             # whom a barrier waits for

Every refusal goes through ``reject``: counted by reason, logged (the first 20 of each
reason, then every 1000th: a flood of bad input does not flood the log), and charged to
the sender, which is quarantined at --max-bad-messages and told so once. The decisions
are pure parts' (admission.py, intake.py, registry.py); this module carries them out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from learner.admission import MAX_ENVS_PER_ACTOR, Admitted, admit_hello, join_events
from learner.auth import user_id
from learner.batching import Batcher
from learner.config import LearnerConfig
from learner.housekeeping import Housekeeping
from learner.intake import Intake
from learner.outbox import Outbox
from learner.registry import ActorRecord, ActorRegistry
from protocol.codec import DEFAULT_LIMITS, DecodeError, decode
from protocol.messages import (
    Bye,
    Error,
    Experience,
    Gradient,
    Heartbeat,
    Hello,
    Pong,
    WeightsRequest,
    Welcome,
)
from protocol.rollout import max_envs

LOGGED_PER_REASON = 20


class Reception:
    def __init__(
        self,
        cfg: LearnerConfig,
        intake: Intake,
        batcher: Batcher,
        house: Housekeeping,
        outbox: Outbox,
        log,
        *,
        pub_port: int,
        authenticated: bool,
        version: Callable[[], int],
        wall_s: Callable[[], float],
        held: Callable[[str], list[int]] | None = None,
    ) -> None:
        self.cfg, self.intake, self.batcher, self.house, self.outbox = (
            cfg,
            intake,
            batcher,
            house,
            outbox,
        )
        self.spec, self.stats, self.log = intake.spec, intake.stats, log
        self.pub_port = pub_port
        self.authenticated = authenticated  # CURVE: the key's name is the identity
        self.version = version  # the learner's current version
        self.wall_s = wall_s
        # Seqs of an actor's rollouts held beyond the batcher (in updates not finished).
        self.held_in_updates = held or (lambda actor_id: [])
        self.registry = ActorRegistry(cfg.actor_timeout_s, cfg.max_bad_messages)
        self.max_envs = min(MAX_ENVS_PER_ACTOR, max_envs(self.spec, cfg.max_frame_bytes))
        self.first_welcome: float | None = None  # training starts with the first actor
        self._logged: dict[str, int] = {}  # rejections logged so far, by reason

    def live_ids(self) -> set[str]:
        return {r.actor_id for r in self.registry.live()}

    def handle(self, frames: list) -> None:
        """A message must never take the learner down: a bug met while handling one is
        logged with its traceback, counted, and the loop goes on."""
        try:
            self._handle(frames)
        except Exception:  # noqa: BLE001 - the loop must survive any single message
            self.stats.rejected["handler_error"] += 1
            self.log.exception("handler_error")

    def _handle(self, frames: list) -> None:
        route = bytes(frames[0].buffer) if frames else b""
        if self.registry.is_quarantined(route):
            self.stats.rejected["quarantined"] += 1
            return
        try:
            msg = decode(frames[1:])
        except DecodeError as exc:
            if exc.reason == "schema_version":
                self.outbox.reply(
                    route, Error(code="schema_version", detail=exc.detail, fatal=True)
                )
            self.reject(route, exc.reason, exc.detail)
            return
        if isinstance(msg, Hello):
            self._hello(route, msg, frames[1])
            return
        rec = self.registry.get(route)
        if rec is None:
            if isinstance(msg, (Experience, Gradient, Heartbeat, WeightsRequest)):
                # Unknown here (a restarted learner, or an actor declared lost): re-join.
                self.outbox.reply(
                    route, Error(code="not_registered", detail="send hello", fatal=False)
                )
            self.stats.rejected["not_registered"] += 1
            return
        if getattr(msg, "actor_id", rec.actor_id) != rec.actor_id:
            self.reject(route, "identity_mismatch", f"{rec.actor_id} sent as {msg.actor_id[:64]!r}")
            return
        rec.last_seen = time.monotonic()
        rec.heard = True
        if isinstance(msg, (Experience, Gradient)):
            self._batch(rec, msg)
        elif isinstance(msg, Heartbeat):
            if msg.seq < rec.last_seq:  # its counter went backwards: a lie or a bug
                self.reject(route, "false_claim", f"heartbeat seq {msg.seq} < {rec.last_seq}")
                return
            # The rollouts it holds: their Acks are late (an update can outlast the
            # actor's patience on a CPU), not lost, so the actor keeps waiting for them.
            held = self.batcher.held(rec.actor_id) + self.held_in_updates(rec.actor_id)
            # An actor that honours its credit has at most --max-in-flight here; one
            # that does not is told of no more than a Pong may carry.
            held = held[-DEFAULT_LIMITS.list_len :]
            pong = Pong(learner_id=self.intake.learner_id, version=self.version(), held=held)
            self.outbox.reply(route, pong)
        elif isinstance(msg, WeightsRequest):
            self.outbox.send_weights(route)
        elif isinstance(msg, Bye):
            self.registry.remove(rec)
            self.batcher.forget(rec.actor_id)
            self.log.info(
                "actor_left",
                actor_id=rec.actor_id,
                incarnation=rec.incarnation,
                reason=msg.reason[:200],
            )
        else:
            self.reject(route, "unexpected_type", msg.TYPE)

    def _hello(self, route: bytes, msg: Hello, header_frame) -> None:
        decision = admit_hello(
            self.registry,
            msg,
            route,
            user_id(header_frame) if self.authenticated else None,
            time.monotonic(),
            authenticated=self.authenticated,
            run_seed=self.cfg.seed,
            default_envs=self.spec.num_envs,
            temperatures=self.cfg.temperatures,
            max_envs=self.max_envs,
        )
        if not isinstance(decision, Admitted):
            self.outbox.reply(route, Error(code=decision.code, detail=decision.detail, fatal=True))
            if decision.reason == "quarantined":
                self.stats.rejected["quarantined"] += 1
            else:
                self.reject(route, decision.reason, decision.detail)
            return
        rec = decision.record
        for event, fields in join_events(decision, len(self.registry.live())):
            self.log.info(event, **fields)
        for gone in (decision.replaced, decision.displaced):
            if gone is not None:
                self.batcher.forget(gone.actor_id)
        if self.first_welcome is None:
            self.first_welcome = time.monotonic()
        welcome = Welcome(
            learner_id=self.intake.learner_id,
            run=self.spec.to_dict(),
            pub_port=self.pub_port,
            temperature=rec.temperature,
            seed=rec.seed,
        )
        self.outbox.reply(route, welcome)
        self.outbox.send_weights(route)

    def _batch(self, rec: ActorRecord, msg: Experience | Gradient) -> None:
        """A rollout or a gradient: the intake decides (intake.py); this carries it out.
        What the batcher takes is trained by the server's loop after this round of
        messages, not here: a failed update is not one message's handler error."""
        version = self.version()
        d = self.intake.take(rec, msg, version)
        if d.kind == "refused":
            self.reject(rec.routing_id, d.reason, d.detail)
        if d.ack_untrained:
            self.outbox.ack(rec.routing_id, msg.seq, version, trained=False)
        if d.gap and d.kind != "refused":
            self.log.warning(
                "seq_gap",
                actor_id=rec.actor_id,
                incarnation=rec.incarnation,
                missing=d.gap,
                seq=msg.seq,
            )
        if d.kind == "stale":
            self.log.debug("batch_stale", actor_id=rec.actor_id, lag=d.lag)
        if d.episodes:
            self.house.after_intake(self.wall_s())
        if d.submission is not None:
            self.batcher.offer(d.submission, time.monotonic())
            # An actor past its credit: its oldest queued rollout is dropped as stale
            # and acked untrained now, so the queue stays bounded (batching.py).
            for sub in self.batcher.take_dropped():
                self.outbox.ack(sub.route, sub.seq, version, trained=False)
                self.intake.drop_late(sub)
                self.log.debug("batch_over_credit", actor_id=sub.actor_id, seq=sub.seq)

    def reject(self, route: bytes, reason: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        rec = self.registry.get(route)
        who = rec.actor_id if rec else route.hex()[:16]
        n = self._logged[reason] = self._logged.get(reason, 0) + 1
        if n <= LOGGED_PER_REASON or n % 1000 == 0:
            self.log.warning(
                "message_rejected", reason=reason, detail=detail[:200], actor=who, count=n
            )
        if self.registry.bad_message(route):
            self.log.warning("actor_quarantined", actor=who, bad_messages=self.cfg.max_bad_messages)
            # Told once, fatally: from now on nothing from this connection is read, and
            # an actor left guessing would wait for acks and re-join for ever.
            detail = f"{self.cfg.max_bad_messages} bad messages (last: {reason})"
            self.outbox.reply(route, Error(code="quarantined", detail=detail, fatal=True))
            if rec is not None:
                self.batcher.forget(rec.actor_id)

    def expire(self, now: float) -> None:
        """Declare the actors silent for too long lost (their rollouts are no longer
        waited for)."""
        for rec in self.registry.expire(now):
            self.batcher.forget(rec.actor_id)
            self.log.warning(
                "actor_lost",
                actor_id=rec.actor_id,
                incarnation=rec.incarnation,
                last_seq=rec.last_seq,
                silent_s=round(now - rec.last_seen, 2),
                actors=len(self.registry.live()),
            )
