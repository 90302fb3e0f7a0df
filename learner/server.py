"""The learner process's event loop: sockets around the pure Trainer.

    bind ROUTER (actor traffic) and PUB (weights)
    loop until solved, out of budget, or asked to stop:
        poll the ROUTER (<= POLL_MS), handle a bounded number of messages:
            Hello           -> register, reply Welcome + current Weights
            Experience      -> check; a2c: hold until every live actor has sent one
                               for this version, then update; a3c: update now
            Gradient        -> check; apply now (a3c-grad)
            Heartbeat       -> Pong;  WeightsRequest -> Weights;  Bye -> forget
        after an update: publish Weights(version) on the PUB (never blocks)
        every so often: declare silent actors lost, log progress, checkpoint
    on the way out: Shutdown to every actor, final checkpoint, summary.json

A message that fails decoding or checking is dropped with a logged reason and
counted; it never raises out of the loop.
"""

from __future__ import annotations

import time
import uuid
import zlib
from dataclasses import dataclass

import zmq

from learner.auth import ZapHandler, user_id
from learner.config import LearnerConfig
from learner.outbox import Outbox
from learner.registry import ActorRecord, ActorRegistry
from learner.stats import RunStats
from learner.trainer import Trainer, UpdateStats
from protocol import checks, sockets
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
from protocol.spec import RunSpec

POLL_MS = 20
DRAIN = 64  # messages handled per poll before housekeeping runs again
MAX_ENVS_PER_ACTOR = 4096


@dataclass
class Outcome:
    solved: bool
    reason: str


class LearnerServer:
    def __init__(
        self,
        cfg: LearnerConfig,
        spec: RunSpec,
        trainer: Trainer,
        stats: RunStats,
        log,
        target: float | None,
        stop_requested,
        checkpoint=None,
        curve: sockets.CurveKeys | None = None,
        authorized: dict[bytes, str] | None = None,
        trained_s: float = 0.0,
        local_actors_alive=None,
    ) -> None:
        self.cfg, self.spec, self.trainer, self.stats, self.log = cfg, spec, trainer, stats, log
        self.target = target
        self.stop_requested = stop_requested
        self.local_actors_alive = local_actors_alive  # () -> bool, for --actors N > 0
        self.checkpoint = checkpoint  # () -> None, saves a checkpoint
        self.learner_id = uuid.uuid4().hex[:12]
        self.registry = ActorRegistry(cfg.actor_timeout_s, cfg.max_bad_messages)
        self.shapes = {n: tuple(p.shape) for n, p in trainer.model.named_parameters()}
        # a2c: this version's rollout per actor id, with the routing id to acknowledge
        self.pending: dict[str, tuple[bytes, Experience]] = {}
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
        self.outbox = Outbox(
            self.router, self.pub, self.learner_id, lambda: trainer.version, trainer.weights
        )
        self._rejected_logged: dict[str, int] = {}
        self.milestones = sorted(cfg.milestones)  # not yet reached
        # a3c: checked rollouts (with their routing ids) awaiting the next update
        self.ready: list[tuple[bytes, Experience]] = []

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
            env=self.spec.env_id,
            version=self.trainer.version,
        )
        next_progress = next_housekeeping = time.monotonic()
        last_checkpoint = self.wall_s
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        if self.zap is not None:
            poller.register(self.zap.sock, zmq.POLLIN)
        while True:
            events = dict(poller.poll(POLL_MS))
            if self.zap is not None and self.zap.sock in events:
                self.zap.handle()
            if self.router in events:
                for _ in range(DRAIN):
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle_safely(frames)
                self.train_ready()
            now = time.monotonic()
            if now >= next_housekeeping:
                for rec in self.registry.expire(now):
                    self._lost(rec)
                next_housekeeping = now + 0.1
            if now >= next_progress:
                self.log.info(
                    "progress",
                    **self.stats.progress(now, self.wall_s),
                    actors=len(self.registry.live()),
                    version=self.trainer.version,
                )
                next_progress = now + self.cfg.log_interval_s
            if (
                self.checkpoint
                and self.cfg.checkpoint_every_s
                and self.wall_s - last_checkpoint >= self.cfg.checkpoint_every_s
            ):
                self.checkpoint()
                last_checkpoint = self.wall_s
            outcome = self._should_stop()
            if outcome is not None:
                return outcome

    def _should_stop(self) -> Outcome | None:
        if self.stats.solved(self.target):
            return Outcome(True, "solved")
        if self.stop_requested():
            return Outcome(False, "signal")
        if (
            self.local_actors_alive is not None
            and not self.local_actors_alive()
            and not self.registry.live()
        ):
            return Outcome(False, "actors_exited")
        if self.cfg.max_env_steps and self.stats.env_steps >= self.cfg.max_env_steps:
            return Outcome(False, "max_env_steps")
        if self.cfg.max_seconds and self.t0 is not None and self.wall_s >= self.cfg.max_seconds:
            return Outcome(False, "max_seconds")
        return None

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
                route,
                "identity_mismatch",
                f"{rec.actor_id} sent as {msg.actor_id[:64]!r}",
            )
            return
        rec.last_seen = time.monotonic()
        if isinstance(msg, Experience):
            self._experience(rec, msg)
        elif isinstance(msg, Gradient):
            self._gradient(rec, msg)
        elif isinstance(msg, Heartbeat):
            self.outbox.reply(route, Pong(learner_id=self.learner_id, version=self.trainer.version))
        elif isinstance(msg, WeightsRequest):
            self.outbox.send_weights(route)
        elif isinstance(msg, Bye):
            self.registry.remove(rec)
            self.pending.pop(rec.actor_id, None)
            self.log.info(
                "actor_left",
                actor_id=rec.actor_id,
                incarnation=rec.incarnation,
                reason=msg.reason[:200],
            )
            self._maybe_sync_update()
        else:
            self._reject(route, "unexpected_type", msg.TYPE)

    def _hello(self, route: bytes, msg: Hello, header_frame) -> None:
        key_name = user_id(header_frame) if self.zap else None
        if key_name is not None and key_name in self.registry.banned_keys:
            self.outbox.reply(
                route,
                Error(code="quarantined", detail="this key sent too many bad messages", fatal=True),
            )
            self.stats.rejected["quarantined"] += 1
            return
        if self.zap and key_name != msg.actor_id:
            self.outbox.reply(
                route,
                Error(
                    code="auth_identity",
                    detail=f"key is {key_name!r}, not {msg.actor_id[:64]!r}",
                    fatal=True,
                ),
            )
            self._reject(
                route, "identity_mismatch", f"key {key_name} claimed {msg.actor_id[:64]!r}"
            )
            return
        if not 0 <= msg.num_envs <= MAX_ENVS_PER_ACTOR or not 0 <= msg.temperature <= 100:
            self.outbox.reply(
                route,
                Error(
                    code="bad_hello",
                    detail=f"num_envs must be in [0, {MAX_ENVS_PER_ACTOR}], temperature in [0, 100]",
                    fatal=True,
                ),
            )
            self._reject(route, "bad_hello", "")
            return
        existing = self.registry.get(route)
        if existing is not None and existing.incarnation == msg.incarnation:
            rec = existing  # a repeated Hello: answer again
        else:
            now = time.monotonic()
            index = self.registry.joins
            temps = self.cfg.temperatures
            rec, old = self.registry.join(
                ActorRecord(
                    actor_id=msg.actor_id,
                    incarnation=msg.incarnation,
                    routing_id=route,
                    hostname=msg.hostname[:256],
                    pid=msg.pid,
                    num_envs=msg.num_envs or self.spec.num_envs,
                    temperature=msg.temperature or temps[index % len(temps)],
                    # From the actor id, not the join order: a run is repeatable
                    # however the actors' start-up races.
                    seed=self.cfg.seed * 10_007 + zlib.crc32(msg.actor_id.encode()) % 100_003,
                    index=index,
                    joined_at=now,
                    last_seen=now,
                    key_name=key_name,
                )
            )
            if old is not None:
                self.pending.pop(old.actor_id, None)
                event = (
                    "actor_restarted" if old.incarnation != msg.incarnation else "actor_reconnected"
                )
                self.log.info(
                    event,
                    actor_id=rec.actor_id,
                    incarnation=rec.incarnation,
                    old_incarnation=old.incarnation,
                    old_last_seq=old.last_seq,
                    old_seq_gaps=old.seq_gaps,
                )
            self.log.info(
                "actor_joined",
                actor_id=rec.actor_id,
                incarnation=rec.incarnation,
                host=rec.hostname,
                pid=rec.pid,
                envs=rec.num_envs,
                temperature=rec.temperature,
                seed=rec.seed,
                actors=len(self.registry.live()),
            )
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

    def _accept_rollout(
        self, rec: ActorRecord, msg: Experience | Gradient, steps: int
    ) -> int | None:
        """Checks common to experience and gradients. Counts the env steps and episodes
        the rollout collected (trained on or not); returns the policy lag, or None when
        the batch is dropped."""
        if msg.incarnation != rec.incarnation:
            self._reject(rec.routing_id, "wrong_incarnation", rec.actor_id)
            return None
        if msg.learner_id != self.learner_id:  # collected for an earlier learner
            self.stats.dropped_stale += 1
            return None
        gap = self.registry.check_seq(rec, msg.seq)
        if gap < 0:
            self._reject(rec.routing_id, "replayed_seq", f"{rec.actor_id} seq {msg.seq}")
            return None
        if gap > 0:
            self.log.warning(
                "seq_gap",
                actor_id=rec.actor_id,
                incarnation=rec.incarnation,
                missing=gap,
                seq=msg.seq,
            )
        lag = self.trainer.version - msg.policy_version
        if lag < 0:
            self._reject(
                rec.routing_id, "future_version", f"{msg.policy_version} > {self.trainer.version}"
            )
            return None
        self.stats.env_steps += steps
        self.stats.add_episodes(msg.arrays["ep_returns"])
        self._check_milestones()
        if lag > (0 if self.spec.sync else self.spec.max_policy_lag):
            self.stats.dropped_stale += 1
            self.stats.dropped_steps += steps
            self.log.debug("batch_stale", actor_id=rec.actor_id, lag=lag)
            self.outbox.ack(rec.routing_id, msg.seq, self.trainer.version, trained=False)
            return None
        rec.batches += 1
        self.stats.add_lag(lag)
        return lag

    def _experience(self, rec: ActorRecord, msg: Experience) -> None:
        if self.spec.sends_gradients:
            self._reject(rec.routing_id, "unexpected_type", "this run takes gradients")
            return
        try:
            steps = checks.check_experience(msg, self.spec, rec.num_envs)
        except checks.InvalidMessage as exc:
            self._reject(rec.routing_id, exc.reason, exc.detail)
            self.outbox.ack(rec.routing_id, msg.seq, self.trainer.version, trained=False)
            return
        if self._accept_rollout(rec, msg, steps) is None:
            return
        if self.spec.sync:
            self.pending[rec.actor_id] = (rec.routing_id, msg)
            self._maybe_sync_update()
        else:
            # a3c: trained on as soon as the learner is free (see train_ready).
            self.ready.append((rec.routing_id, msg))
            if len(self.ready) >= self.cfg.max_batches_per_update:
                self.train_ready()

    def _gradient(self, rec: ActorRecord, msg: Gradient) -> None:
        if not self.spec.sends_gradients:
            self._reject(rec.routing_id, "unexpected_type", "this run takes experience")
            return
        try:
            checks.check_gradient(msg, self.shapes)
        except checks.InvalidMessage as exc:
            self._reject(rec.routing_id, exc.reason, exc.detail)
            self.outbox.ack(rec.routing_id, msg.seq, self.trainer.version, trained=False)
            return
        if self._accept_rollout(rec, msg, msg.env_steps) is None:
            return
        result = self.trainer.apply_gradient(
            msg.arrays,
            transitions=msg.env_steps,
            policy_loss=msg.policy_loss,
            value_loss=msg.value_loss,
            entropy=msg.entropy,
        )
        self._after_update(result, [(rec.routing_id, msg)])

    def _maybe_sync_update(self) -> None:
        live = self.registry.live()
        # The first update waits for --min-actors (default: the local actors), so how
        # fast the actor processes start does not change what the first update sees.
        if self.trainer.version == 0 and len(live) < self.cfg.first_update_actors:
            return
        if self.pending and live and all(r.actor_id in self.pending for r in live):
            # Sorted by actor id: the update does not depend on arrival order.
            batches = [self.pending[k] for k in sorted(self.pending)]
            self.pending.clear()
            self._after_update(self.trainer.train_on([m.arrays for _, m in batches]), batches)

    def train_ready(self) -> None:
        """a3c: one update on every rollout that arrived while the learner was busy.
        When the learner keeps up that is one rollout per update; when it falls behind,
        merging what has queued keeps the policy lag low instead of dropping batches.
        At most --max-batches-per-update are merged, which bounds the memory an update
        takes; what is not yet read stays in ZeroMQ's bounded queues (backpressure)."""
        if self.ready:
            batches, self.ready = self.ready, []
            self._after_update(self.trainer.train_on([m.arrays for _, m in batches]), batches)

    def _after_update(
        self, result: UpdateStats, batches: list[tuple[bytes, Experience | Gradient]]
    ) -> None:
        if self.cfg.debug_update_delay_s:
            time.sleep(self.cfg.debug_update_delay_s)
        self.stats.batches += len(batches)
        for route, msg in batches:
            self.outbox.ack(route, msg.seq, self.trainer.version, trained=result.applied)
        self.stats.trained_steps += result.transitions
        if not result.applied:
            self.stats.skipped_updates += 1
            self.log.warning("update_skipped", reason="non_finite", version=self.trainer.version)
            return
        self.stats.add_update(
            result.grad_norm, result.policy_loss, result.value_loss, result.entropy
        )
        self.outbox.publish_weights()

    def _check_milestones(self) -> None:
        while self.milestones and self.stats.solved(self.milestones[0]):
            self.log.info(
                "return_reached",
                threshold=self.milestones.pop(0),
                env_steps=self.stats.env_steps,
                episodes=self.stats.episodes,
                updates=self.stats.updates,
                wall_s=round(self.wall_s, 3),
            )

    # --- sending --------------------------------------------------------------------

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
            if rec is not None:
                self.pending.pop(rec.actor_id, None)
                self._maybe_sync_update()

    def _lost(self, rec: ActorRecord) -> None:
        self.pending.pop(rec.actor_id, None)
        self.log.warning(
            "actor_lost",
            actor_id=rec.actor_id,
            incarnation=rec.incarnation,
            last_seq=rec.last_seq,
            silent_s=round(time.monotonic() - rec.last_seen, 2),
            actors=len(self.registry.live()),
        )
        self._maybe_sync_update()

    def shutdown(self, reason: str) -> None:
        """Tell every actor to stop, then close the sockets."""
        self.outbox.shutdown(list(self.registry.by_route), reason)
        if self.zap is not None:
            self.zap.close()
        self.ctx.term()
