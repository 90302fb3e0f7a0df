"""The actor process's loop: join the learner, collect, send, follow the weights.

    join:    send Hello until Welcome (the run spec) and the current Weights arrive;
             build envs, policy and collector from the spec (core/acting.py)
    loop:    [mode.waits_for_release (sync): wait for the learner's Ack of the last
              rollout, then for the weights it names: the barrier released us]
             collect a rollout with the newest weights held
             send it as the mode's message: Experience, or Gradient (mode.sends_gradients)
             at most max_in_flight unacknowledged (credit)
    always:  Weights (PUB, or sent directly) are loaded if newer; a Heartbeat every
             heartbeat_s; Shutdown -> exit 0; a fatal Error -> exit non-zero;
             no word from the learner for learner_timeout -> learner_lost, re-join

The mode is the coordination table's row the run spec names (core/coordination).
Every wait is a poll with a timeout of at most ``POLL_MS`` so a signal stops the actor
within a fraction of a second. Sends never block in ZeroMQ: at the DEALER's
high-water mark the actor logs ``backpressure`` and retries while still reading.
Sockets are actor/transport.py's; the line to the learner (locating it, liveness,
sends that never block, the goodbye) is actor/link.py's.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from actor.config import ActorConfig
from actor.credit import Credit
from actor.exits import EXIT_ENV, EXIT_NO_LEARNER, EXIT_OK, EXIT_PROTOCOL, Rejoin, Stop
from actor.link import Link
from actor.locate import moved
from actor.transport import DEALER
from core import coordination
from core.acting import Acting, build_acting
from core.collector import EnvFailure
from protocol import checks, sockets
from protocol.messages import (
    Ack,
    Bye,
    Error,
    Experience,
    Heartbeat,
    Hello,
    Pong,
    Weights,
    WeightsRequest,
    Welcome,
)
from protocol.spec import RunSpec, SpecError

POLL_MS = 50
# A wait for credit longer than this is the learner not keeping up: an ack normally comes
# within an update (milliseconds for an MLP; a CNN on a CPU may well take longer, and is
# then the bottleneck). Each wait past it counts once.
BACKPRESSURE_AFTER_S = 0.5
HELLO_EVERY_S = 1.0
# Versions an async actor may be behind the learner's reported version, with every
# message read, before it asks for the weights itself (one update may be on its way).
WEIGHTS_BEHIND = 2


class ActorClient:
    def __init__(
        self, cfg: ActorConfig, log, stop_requested, curve: sockets.CurveKeys | None = None
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.actor_id = cfg.actor_id or f"{socket.gethostname()}-{os.getpid()}"
        self.incarnation = uuid.uuid4().hex[:12]
        self.link = Link(cfg, log, stop_requested, curve)
        # What one Welcome set up; replaced on every re-join.
        self.learner_id: str | None = None
        self.acting: Acting | None = None
        self.seq = 0
        self.last_heartbeat = 0.0
        self.rollouts_sent = 0
        self.credit = Credit()  # rollouts awaiting an Ack; sync: the released version
        self.credit_waits = 0
        # The async catch-up: when it last asked for weights, with which version, and how
        # long it waits before asking again (doubled while asking brings nothing newer,
        # as under --weights-delay, whose answers are as old as the broadcast).
        self.weights_asked, self.asked_with, self.ask_every = 0.0, -1, 0.0

    # --- the loop -------------------------------------------------------------------

    def run(self) -> int:
        code, reason = EXIT_OK, "stopped"
        try:
            while True:
                self.link.check_stop()
                try:
                    self.link.locate(self.learner_id)
                    self._join()
                    self._train_loop()
                except Rejoin:
                    continue
        except Stop as stop:
            code, reason = stop.code, stop.reason
        except EnvFailure as exc:
            self.log.error("env_failed", error=str(exc))
            code, reason = EXIT_ENV, "env_failed"
        finally:
            self._close(reason)
        self.log.info("actor_exit", code=code, reason=reason, rollouts_sent=self.rollouts_sent)
        return code

    def _join(self) -> None:
        hello = Hello(
            actor_id=self.actor_id,
            incarnation=self.incarnation,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            num_envs=self.cfg.envs,
            temperature=float(self.cfg.temperature),
        )
        self.log.info("joining", learner=self.link.endpoint, incarnation=self.incarnation)
        path = Path(self.cfg.learner_file)
        start, last_sent, warned = time.monotonic(), 0.0, False
        # A join ends on the Weights that follow a Welcome of this join: each Welcome
        # builds fresh envs (the learner counts episodes from them), and Weights alone
        # could be a previous session's.
        welcomed = False
        while True:
            self.link.check_stop()
            now = time.monotonic()
            if now - last_sent >= HELLO_EVERY_S:
                # A learner that moved (or exited) is followed even after its Welcome:
                # one killed between its Welcome and its Weights sends neither again.
                if self.cfg.learner_file and moved(path, self.link.endpoint):
                    raise Rejoin()
                # Not queued while the connection is still being made (no peer yet):
                # try again at the next poll, not a whole HELLO_EVERY_S later.
                if self.link.transport.try_send(hello):
                    last_sent = now
            if not warned and now - start > self.cfg.learner_timeout:
                self.log.warning(
                    "learner_unreachable",
                    learner=self.link.endpoint,
                    waited_s=round(now - start, 1),
                )
                warned = True
            if self.cfg.join_timeout and now - start > self.cfg.join_timeout and not welcomed:
                self.log.error(
                    "learner_not_found",
                    learner=self.link.endpoint,
                    waited_s=round(now - start, 1),
                    detail="no answer to a join within --join-timeout",
                )
                raise Stop(EXIT_NO_LEARNER, "learner_not_found")
            for source, msg in self.link.transport.receive(POLL_MS):
                if source != DEALER:
                    continue
                if isinstance(msg, Error) and not msg.fatal:
                    # e.g. not_registered for what was sent before this Hello: the Hello
                    # is on its way, and the Welcome may be right behind this message.
                    self.log.info("learner_error", code=msg.code, detail=msg.detail, fatal=False)
                    continue
                self.link.common(source, msg, self.learner_id, joined=self.acting is not None)
                if isinstance(msg, Welcome):
                    self._welcome(msg)
                    welcomed = True
                elif (
                    isinstance(msg, Weights)
                    and welcomed
                    and self.acting
                    and msg.learner_id == self.learner_id
                ):
                    if not self._load_weights(msg):
                        # The learner's network is not the one this actor built from its
                        # run spec (another code version): nothing it sends could be used.
                        raise Stop(EXIT_PROTOCOL, "weights_mismatch")
                    self.log.info("weights_received", version=self.acting.policy.version)
                    return

    def _welcome(self, msg: Welcome) -> None:
        try:
            spec = RunSpec.from_dict(msg.run, coordinations=coordination.names())
        except SpecError as exc:
            raise Stop(EXIT_PROTOCOL, f"bad run spec from learner: {exc}") from None
        if not 0 < msg.pub_port < 65536:
            raise Stop(EXIT_PROTOCOL, f"bad weights port from learner: {msg.pub_port}")
        if self.acting is not None:
            self.acting.close()
            self.acting = None
        num_envs = self.cfg.envs or spec.num_envs
        seed = msg.seed + self.cfg.seed_offset
        temperature = self.cfg.temperature or msg.temperature or 1.0
        try:
            self.acting = build_acting(
                spec,
                num_envs=num_envs,
                seed=seed,
                temperature=temperature,
                max_env_failures=self.cfg.max_env_failures,
                env_groups=self.cfg.env_groups,
                on_env_error=self._on_env_error,
            )
        except ValueError as exc:  # unknown env, algorithm, encoder; a spec we can't build
            self.log.error("run_spec_unusable", error=str(exc)[:500])
            raise Stop(EXIT_ENV, "run_spec_unusable") from None
        pub = self.link.transport.subscribe(msg.pub_port)
        self.learner_id = msg.learner_id
        self.credit.reset()
        self.link.last_heard = time.monotonic()
        self.log.info(
            "joined",
            learner_id=msg.learner_id,
            env=spec.env_id,
            algo=spec.algo,
            coordination=spec.coordination,
            envs=num_envs,
            env_groups=len(self.acting.envs),
            rollout_len=spec.rollout_len,
            temperature=temperature,
            seed=seed,
            pub=pub,
        )

    def _on_env_error(self, where: str, exc: BaseException) -> None:
        self.log.warning("env_error", where=where, error=f"{type(exc).__name__}: {exc}"[:500])

    def _train_loop(self) -> None:
        a = self.acting
        assert a is not None
        while True:
            self.link.check_stop()
            self._pump(0)
            if a.mode.waits_for_release:
                self._await_release(a)
            rollout = a.collect(between_steps=self._heartbeat)
            self.seq += 1
            ids = {
                "actor_id": self.actor_id,
                "incarnation": self.incarnation,
                "seq": self.seq,
                "learner_id": self.learner_id or "",
                "policy_version": a.policy.version,
            }
            msg = (
                a.gradient_message(rollout, **ids)
                if a.mode.sends_gradients
                else Experience(arrays=rollout.wire_arrays(a.spec), **ids)
            )
            self._await_credit(a)
            self.link.send(msg, pump=lambda: self._pump(POLL_MS))
            # The version it was collected with: sending may have loaded newer weights.
            self.credit.sent(self.seq, ids["policy_version"], time.monotonic())
            self.rollouts_sent += 1

    def _await_credit(self, a: Acting) -> None:
        """At most max_in_flight rollouts unacknowledged: wait (reading the learner's
        messages) until the learner has taken one."""
        waited, noted, since = False, False, time.monotonic()
        while self.credit.in_flight >= a.spec.max_in_flight:
            self.link.check_stop()
            if not waited:
                self.credit_waits += 1
                waited = True
            if not noted and time.monotonic() - since > BACKPRESSURE_AFTER_S:
                self.link.note_backpressure("ack")
                noted = True
            self._pump(POLL_MS)

    def _await_release(self, a: Acting) -> None:
        """The mode waits for release (sync): the learner acks the last rollout when its
        barrier is released (or when it dropped or rejected it) and names the version to
        collect with next; wait for that Ack, then for those weights. A lost Ack is made
        up for by a Pong reporting a newer version than the rollout's (the barrier moved
        on); one that never comes expires (ack_missing) and the actor goes on with the
        newest weights it has."""
        while self.credit.waiting_for_release():
            self.link.check_stop()
            self._pump(POLL_MS)
        asked = time.monotonic()
        need = self.credit.release_version
        while need is not None and a.policy.version < need:
            self.link.check_stop()
            self._pump(POLL_MS)
            # A weights broadcast can be missed (slow joiner); ask directly.
            if time.monotonic() - asked > 4 * a.spec.heartbeat_s:
                self._ask_for_weights(a)
                asked = time.monotonic()

    def _ask_for_weights(self, a: Acting) -> None:
        self.link.transport.try_send(
            WeightsRequest(
                actor_id=self.actor_id, incarnation=self.incarnation, have_version=a.policy.version
            )
        )

    def _catch_up(self, a: Acting, now: float) -> None:
        """Async and gradient actors: a broadcast can be missed (a subscriber slower than
        the updates: ZeroMQ keeps the oldest queued weights and drops the newest; a SUB
        still connecting after a Welcome). With every message read, an actor more than
        WEIGHTS_BEHIND versions behind what the learner reports asks for the weights
        directly, at most every 4 heartbeats; otherwise every rollout it sends could be
        too old to train on and, with no update, no new weights would ever come."""
        behind = self.credit.named_version - a.policy.version
        if a.mode.waits_for_release or behind <= WEIGHTS_BEHIND:
            return
        if now - self.weights_asked < self.ask_every:
            return
        first = 4 * a.spec.heartbeat_s
        stuck = a.policy.version == self.asked_with
        self.ask_every = min(2 * self.ask_every, 64 * first) if stuck else first
        self._ask_for_weights(a)
        self.weights_asked, self.asked_with = now, a.policy.version
        self.log.info("weights_requested", have=a.policy.version, behind=behind)

    # --- receiving -----------------------------------------------------------------

    def _pump(self, timeout_ms: int) -> None:
        """Handle everything waiting on both sockets; wait up to ``timeout_ms`` for the
        first message. Loads the newest weights, expires acks, sends heartbeats and
        checks that the learner is alive."""
        a = self.acting
        assert a is not None
        newest: Weights | None = None
        for source, msg in self.link.transport.receive(timeout_ms):
            self.link.common(source, msg, self.learner_id, joined=self.acting is not None)
            if isinstance(msg, Weights):
                if msg.learner_id == self.learner_id:
                    if newest is None or msg.version > newest.version:
                        newest = msg
                elif source == DEALER:
                    raise Rejoin()
            elif isinstance(msg, Ack) and msg.learner_id == self.learner_id:
                self.credit.acked(msg.seq, msg.version)
            elif isinstance(msg, Pong) and msg.learner_id == self.learner_id:
                self.credit.pong(msg.version, msg.held, time.monotonic())
        if newest is not None:
            self._load_weights(newest)
        now = time.monotonic()
        self._catch_up(a, now)
        # An Ack that neither came nor was reported held by a Pong for this long was
        # lost (or the rollout dropped): the credit comes back. A rollout may
        # legitimately wait in a barrier (--barrier-timeout-s): the mode's patience.
        limit = self.cfg.learner_timeout * a.mode.ack_patience
        for k in self.credit.expire(now, limit):
            self.log.warning("ack_missing", seq=k)
        self._heartbeat()
        self.link.check_alive()

    def _heartbeat(self) -> None:
        """Send a heartbeat if one is due. Also called between env steps while a
        rollout is collected (long rollouts of a slow env would otherwise look like a
        lost actor); nothing is received then, so the weights do not change mid-rollout."""
        a = self.acting
        now = time.monotonic()
        if a is not None and now - self.last_heartbeat >= a.spec.heartbeat_s:
            self.link.transport.try_send(
                Heartbeat(
                    actor_id=self.actor_id,
                    incarnation=self.incarnation,
                    seq=self.seq,
                    policy_version=a.policy.version,
                    backpressure=self.link.backpressure,
                )
            )
            self.last_heartbeat = now

    def _load_weights(self, msg: Weights) -> bool:
        """Load checked weights; False when they do not fit this actor's network."""
        a = self.acting
        assert a is not None
        try:
            checks.check_weights(msg, a.shapes)
        except checks.InvalidMessage as exc:
            self.log.warning(
                "weights_rejected", reason=exc.reason, detail=exc.detail, version=msg.version
            )
            return False
        if a.policy.load(msg.arrays, msg.version):
            self.log.debug("weights_loaded", version=msg.version)
        return True

    def _close(self, reason: str) -> None:
        if self.acting is not None:
            self.acting.close()
        self.link.close(Bye(actor_id=self.actor_id, incarnation=self.incarnation, reason=reason))
