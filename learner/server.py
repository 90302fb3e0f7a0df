"""The learner process's event loop: sockets around pure parts.

    bind ROUTER (actor traffic) and PUB (weights)
    loop until a stopping rule says so (housekeeping.py):
        poll the ROUTER (<= POLL_MS), handle a bounded number of messages:
            Hello              -> admission.admit_hello; Welcome + current Weights
            Experience/Gradient-> intake.take: one decision; offered to the batcher,
                                  or acked untrained (refused, stale)
            Heartbeat -> Pong; WeightsRequest -> Weights; Bye -> forget the actor
        hand what the batcher releases to the training thread (pipeline.py, running
        updates.py); finish what it trained: acks, weights published
        every so often: declare silent actors lost; progress, checkpoints (housekeeping.py)
    on the way out: Shutdown to every actor, close the sockets

This module keeps the sockets, the poll loop and who is connected; every decision is a
pure part's: who may join (admission.py), what becomes of a rollout (intake.py), how
rollouts become updates (the coordination mode's batcher, batching.py), the update
(trainer.py with the algorithm's), when to report, checkpoint and stop
(housekeeping.py). A message that fails decoding or checking is dropped with a logged
reason and counted; it never raises out of the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import zmq

from learner.admission import MAX_ENVS_PER_ACTOR, Admitted, admit_hello, join_events
from learner.auth import ZapHandler, user_id
from learner.batching import Batcher
from learner.config import LearnerConfig
from learner.housekeeping import HOUSEKEEPING_S, Housekeeping
from learner.intake import Intake
from learner.outbox import Outbox
from learner.outcome import Outcome
from learner.pipeline import TrainingThread
from learner.registry import ActorRecord, ActorRegistry
from learner.reward_scale import RewardScale
from learner.trainer import Trainer
from learner.updates import Updater
from protocol import sockets
from protocol.codec import DecodeError, decode
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

POLL_MS = 20
DRAIN = 64  # messages handled per poll before housekeeping runs again


class LearnerServer:
    def __init__(
        self,
        cfg: LearnerConfig,
        trainer: Trainer,
        intake: Intake,
        batcher: Batcher,
        house: Housekeeping,
        log,
        *,
        curve: sockets.CurveKeys | None = None,
        authorized: dict[bytes, str] | None = None,
        trained_s: float = 0.0,
        local_actors_alive: Callable[[], bool] | None = None,
        checkpoint: Callable[[], None] | None = None,
        reward_scale: RewardScale | None = None,
    ) -> None:
        self.cfg, self.trainer, self.intake, self.batcher, self.house = (
            cfg,
            trainer,
            intake,
            batcher,
            house,
        )
        self.spec, self.stats, self.log = intake.spec, intake.stats, log
        self.learner_id = intake.learner_id
        self.local_actors_alive = local_actors_alive
        self.checkpoint = checkpoint
        self.registry = ActorRegistry(cfg.actor_timeout_s, cfg.max_bad_messages)
        self.max_envs = min(MAX_ENVS_PER_ACTOR, max_envs(self.spec, cfg.max_frame_bytes))
        self.ctx = sockets.new_context()
        # The ZAP handler must exist before the CURVE sockets accept a connection.
        self.zap = ZapHandler(self.ctx, authorized or {}, log) if curve is not None else None
        self.router, self.port = sockets.bind_router(
            self.ctx, cfg.host, cfg.port, max_frame_bytes=cfg.max_frame_bytes, curve=curve
        )
        self.pub, self.pub_port = sockets.bind_pub(
            self.ctx, cfg.host, cfg.effective_pub_port, curve=curve
        )
        self.trained_before = trained_s  # training seconds of earlier incarnations (resume)
        self.t0: float | None = None  # first actor welcomed: training starts
        # The newest weights (version, arrays copied off the network): what the outbox
        # publishes and what evaluation and --confirm-episodes play.
        self.latest = (trainer.version, trainer.weights())
        self.outbox = Outbox(
            self.router, self.pub, self.learner_id, *self.latest, delay=cfg.weights_delay
        )
        self.updater = Updater(
            trainer,
            self.stats,
            log,
            ack=self.outbox.ack,
            publish=self._publish,
            dropped=intake.drop_late,
            reward_scale=reward_scale,
            debug_delay_s=cfg.debug_update_delay_s,
            budget=cfg.max_env_steps,
        )
        self.training = TrainingThread(self.updater, depth=intake.mode.pipeline_depth)
        self._busy_mark = (time.monotonic(), 0.0)  # for the idle fraction in progress
        self._draining = False
        self.closed = False
        self._poller = zmq.Poller()
        self._poller.register(self.router, zmq.POLLIN)
        self._poller.register(self.training.wake_fd, zmq.POLLIN)
        if self.zap is not None:
            self._poller.register(self.zap.sock, zmq.POLLIN)
        self._rejected_logged: dict[str, int] = {}

    # --- the loop -------------------------------------------------------------------

    @property
    def wall_s(self) -> float:
        return self.trained_before + (0.0 if self.t0 is None else time.monotonic() - self.t0)

    def run(self) -> Outcome:
        self.log.info(
            "learner_listening",
            endpoint=sockets.tcp(self.cfg.host, self.port),
            pub=sockets.tcp(self.cfg.host, self.pub_port),
            learner_id=self.learner_id,
            algo=self.spec.algo,
            coordination=self.spec.coordination,
            env=self.spec.env_id,
            version=self.trainer.version,
        )
        next_sweep = time.monotonic()
        while True:
            self._receive(POLL_MS)
            self.train_released()
            now = time.monotonic()
            if now >= next_sweep:
                for rec in self.registry.expire(now):
                    self._lost(rec)
                self.house.tick(now, self.wall_s, self._progress_fields, self._actor_steps)
                next_sweep = now + HOUSEKEEPING_S
            if self.checkpoint and self.house.checkpoint_due(self.wall_s):
                self.drain()  # the checkpoint reads the network: no update may be running
                self.checkpoint()
                self.house.checkpointed(self.wall_s)
            outcome = self._should_stop()
            if outcome is not None:
                self.training.cancel_queued()  # untrained: the actors are being stopped
                self.drain()
                return outcome

    def _progress_fields(self) -> dict:
        now = time.monotonic()
        return {
            "actors": len(self.registry.live()),
            "version": self.trainer.version,
            "train_busy": self._busy_fraction(now),
        }

    def _actor_steps(self) -> dict[str, int]:
        return {r.actor_id: r.env_steps for r in self.registry.live()}

    def _receive(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for traffic, then handle what arrived."""
        events = dict(self._poller.poll(timeout_ms))
        if self.zap is not None and self.zap.sock in events:
            self.zap.handle()
        if self.router in events:
            for _ in range(DRAIN):
                try:
                    frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._handle_safely(frames)

    def _publish(self, version: int, weights: dict) -> None:
        self.latest = (version, weights)
        self.outbox.publish_weights(version, weights)

    def _busy_fraction(self, now: float) -> float:
        """The share of the last progress interval the training thread spent in updates
        (1 - the learner's idle fraction)."""
        t, busy = self._busy_mark
        total = self.training.busy_s(now)
        self._busy_mark = (now, total)
        return round(min(1.0, (total - busy) / max(now - t, 1e-9)), 3)

    def _should_stop(self) -> Outcome | None:
        outcome = self.house.stop(self.wall_s, started=self.t0 is not None)
        if outcome is None and self.local_actors_alive is not None:
            if not self.local_actors_alive() and not self.registry.live():
                return Outcome(False, "actors_exited")
        return outcome

    # --- messages -------------------------------------------------------------------

    def _handle_safely(self, frames: list) -> None:
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
            self._reject(route, exc.reason, exc.detail)
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
            self._reject(
                route, "identity_mismatch", f"{rec.actor_id} sent as {msg.actor_id[:64]!r}"
            )
            return
        rec.last_seen = time.monotonic()
        rec.heard = True
        if isinstance(msg, (Experience, Gradient)):
            self._batch(rec, msg)
        elif isinstance(msg, Heartbeat):
            if msg.seq < rec.last_seq:  # its counter went backwards: a lie or a bug
                self._reject(route, "false_claim", f"heartbeat seq {msg.seq} < {rec.last_seq}")
                return
            self.outbox.reply(route, Pong(learner_id=self.learner_id, version=self.trainer.version))
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
            self._reject(route, "unexpected_type", msg.TYPE)

    def _hello(self, route: bytes, msg: Hello, header_frame) -> None:
        key_name = user_id(header_frame) if self.zap else None
        decision = admit_hello(
            self.registry,
            msg,
            route,
            key_name,
            time.monotonic(),
            authenticated=self.zap is not None,
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
                self._reject(route, decision.reason, decision.detail)
            return
        rec = decision.record
        for event, fields in join_events(decision, len(self.registry.live())):
            self.log.info(event, **fields)
        if decision.replaced is not None:
            self.batcher.forget(decision.replaced.actor_id)
        if self.t0 is None:
            self.t0 = time.monotonic()
        self.outbox.reply(
            route,
            Welcome(
                learner_id=self.learner_id,
                run=self.spec.to_dict(),
                pub_port=self.pub_port,
                temperature=rec.temperature,
                seed=rec.seed,
            ),
        )
        self.outbox.send_weights(route)

    def _batch(self, rec: ActorRecord, msg: Experience | Gradient) -> None:
        """A rollout or a gradient: the intake decides (intake.py); this carries it out."""
        d = self.intake.take(rec, msg, self.trainer.version)
        if d.kind == "refused":
            self._reject(rec.routing_id, d.reason, d.detail)
        if d.ack_untrained:
            self.outbox.ack(rec.routing_id, msg.seq, self.trainer.version, trained=False)
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
            self.house.after_intake(self.wall_s)
        if d.submission is not None:
            self.batcher.offer(d.submission, time.monotonic())
        # Released by the loop right after this batch of messages (train_released), not
        # here: a failed update must not be caught as one message's handler error.

    # --- updates --------------------------------------------------------------------

    def train_released(self) -> None:
        """Finish the updates that are done, then hand the training thread what the
        batcher releases now, as far as it has room (nothing new while draining)."""
        for done in self.training.finished():
            self.updater.finish(done)
        while self.training.has_room and not self._draining:
            release = self.updater.take(self.batcher, {r.actor_id for r in self.registry.live()})
            if release is None:
                return
            self.training.submit(release, self.updater.prepare(release))

    def drain(self) -> None:
        """Wait for the updates in flight and finish them (acks, weights out). Actors
        are answered meanwhile (an update on a CPU can take seconds, longer than their
        patience); what they send waits in the batcher."""
        self._draining = True
        try:
            self.training.drain(self.updater.finish, while_waiting=lambda: self._receive(50))
        finally:
            self._draining = False

    # --- bad input and lost actors ---------------------------------------------------

    def _reject(self, route: bytes, reason: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        rec = self.registry.get(route)
        who = rec.actor_id if rec else route.hex()[:16]
        n = self._rejected_logged.get(reason, 0) + 1
        self._rejected_logged[reason] = n
        if n <= 20 or n % 1000 == 0:  # a flood of bad input must not flood the log
            self.log.warning(
                "message_rejected", reason=reason, detail=detail[:200], actor=who, count=n
            )
        if self.registry.bad_message(route):
            self.log.warning("actor_quarantined", actor=who, bad_messages=self.cfg.max_bad_messages)
            # Told once, fatally: from now on nothing from this connection is read, and
            # an actor left guessing would wait for acks and re-join for ever.
            self.outbox.reply(
                route,
                Error(
                    code="quarantined",
                    detail=f"{self.cfg.max_bad_messages} bad messages (last: {reason})",
                    fatal=True,
                ),
            )
            if rec is not None:
                self.batcher.forget(rec.actor_id)

    def _lost(self, rec: ActorRecord) -> None:
        self.batcher.forget(rec.actor_id)
        self.log.warning(
            "actor_lost",
            actor_id=rec.actor_id,
            incarnation=rec.incarnation,
            last_seq=rec.last_seq,
            silent_s=round(time.monotonic() - rec.last_seen, 2),
            actors=len(self.registry.live()),
        )

    def shutdown(self, reason: str, *, tell_actors: bool = True) -> None:
        """Tell every actor to stop (unless the run goes on under another learner), then
        close the sockets."""
        self.training.close()
        self.closed = True
        if self.training.alive:
            self.log.error("training_thread_stuck", detail="an update did not finish in 30 s")
        self.outbox.shutdown(list(self.registry.by_route), reason, tell=tell_actors)
        if self.zap is not None:
            self.zap.close()
        self.ctx.term()
