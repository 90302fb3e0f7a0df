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

This module keeps the sockets, the poll loop and the training pipeline; what each
message gets is reception.py's, and every decision is a pure part's: who may join
(admission.py), what becomes of a rollout (intake.py), how rollouts become updates (the
coordination mode's batcher, batching.py), the update (trainer.py with the
algorithm's), when to report, checkpoint and stop (housekeeping.py). A message that fails decoding or checking is dropped with a logged
reason and counted; it never raises out of the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import zmq

from learner.auth import ZapHandler
from learner.batching import Batcher
from learner.config import LearnerConfig
from learner.housekeeping import HOUSEKEEPING_S, Housekeeping
from learner.intake import Intake
from learner.outbox import Outbox
from learner.outcome import Outcome
from learner.pipeline import TrainingThread
from learner.reception import Reception
from learner.registry import ActorRegistry
from learner.reward_scale import RewardScale
from learner.trainer import Trainer
from learner.updates import Updater
from protocol import sockets

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
        self.cfg, self.trainer, self.batcher, self.house, self.log = (
            cfg,
            trainer,
            batcher,
            house,
            log,
        )
        self.spec, self.stats, self.learner_id = intake.spec, intake.stats, intake.learner_id
        self.local_actors_alive = local_actors_alive
        self.checkpoint = checkpoint
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
        # The newest weights (version, arrays copied off the network): what the outbox
        # publishes and what evaluation and --confirm-episodes play.
        self.latest = (trainer.version, trainer.weights())
        self.outbox = Outbox(
            self.router, self.pub, self.learner_id, *self.latest, delay=cfg.weights_delay
        )
        self.reception = Reception(
            cfg,
            intake,
            batcher,
            house,
            self.outbox,
            log,
            pub_port=self.pub_port,
            authenticated=self.zap is not None,
            version=lambda: trainer.version,
            wall_s=lambda: self.wall_s,
            held=lambda actor_id: self.training.held(actor_id),
        )
        self.updater = Updater(
            trainer,
            self.stats,
            log,
            ack=self.outbox.ack,
            publish=self._publish,
            dropped=intake.drop_late,
            reward_scale=reward_scale,
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

    @property
    def registry(self) -> ActorRegistry:
        return self.reception.registry

    @property
    def wall_s(self) -> float:
        """Seconds of training: from the first actor's Welcome, plus earlier incarnations'."""
        t0 = self.reception.first_welcome
        return self.trained_before + (0.0 if t0 is None else time.monotonic() - t0)

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
                self.reception.expire(now)
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
                self.reception.handle(frames)

    def _progress_fields(self) -> dict:
        return {
            "actors": len(self.registry.live()),
            "version": self.trainer.version,
            "train_busy": self._busy_fraction(time.monotonic()),
        }

    def _actor_steps(self) -> dict[str, int]:
        return {r.actor_id: r.env_steps for r in self.registry.live()}

    def _busy_fraction(self, now: float) -> float:
        """The share of the last progress interval the training thread spent in updates
        (1 - the learner's idle fraction)."""
        t, busy = self._busy_mark
        total = self.training.busy_s(now)
        self._busy_mark = (now, total)
        return round(min(1.0, (total - busy) / max(now - t, 1e-9)), 3)

    def _should_stop(self) -> Outcome | None:
        outcome = self.house.stop(self.wall_s, started=self.reception.first_welcome is not None)
        if outcome is None and self.local_actors_alive is not None:
            if not self.local_actors_alive() and not self.registry.live():
                return Outcome(False, "actors_exited")
        return outcome

    # --- updates --------------------------------------------------------------------

    def _publish(self, version: int, weights: dict) -> None:
        self.latest = (version, weights)
        self.outbox.publish_weights(version, weights)

    def train_released(self) -> None:
        """Finish the updates that are done, then hand the training thread what the
        batcher releases now, as far as it has room (nothing new while draining)."""
        for done in self.training.finished():
            self.updater.finish(done)
        while self.training.has_room and not self._draining:
            release = self.updater.take(self.batcher, self.reception.live_ids())
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

    def shutdown(self, reason: str, *, tell_actors: bool = True) -> None:
        """Tell every actor to stop (unless the run goes on under another learner), then
        close the sockets."""
        self.training.close()
        self.closed = True
        if self.training.alive:
            self.log.error("training_thread_stuck", detail="an update did not finish in 30 s")
        else:
            # An update that was running when the loop stopped (a crash mid-run) has
            # changed the network: counted and acked here, so the final checkpoint's
            # counters agree with the version it saves.
            try:
                for done in self.training.finished():
                    self.updater.finish(done)
            except Exception as exc:  # noqa: BLE001 - the shutdown goes on regardless
                self.log.error("update_unfinished", error=repr(exc)[:500])
        self.outbox.shutdown(list(self.registry.by_route), reason, tell=tell_actors)
        if self.zap is not None:
            self.zap.close()
        self.ctx.term()
