"""The actor process's loop: join the learner, collect, send, follow the weights.

    join:    send Hello until Welcome (and the current Weights) arrive
    loop:    [a2c: wait for weights newer than the last rollout's]
             collect a rollout with the newest weights held
             send it as Experience (a2c, a3c) or as Gradient (a3c-grad)
             answer nothing, but send a Heartbeat every heartbeat_s
    always:  Weights from the PUB (or sent directly) are loaded if newer;
             Shutdown -> exit 0; a fatal Error -> exit non-zero;
             no word from the learner for learner_timeout -> log learner_lost, re-join

Every wait is a poll with a timeout of at most ``POLL_MS`` so a signal stops the
actor within a fraction of a second. Sends never block: at the DEALER's high-water
mark the actor logs ``backpressure`` and retries until the learner drains.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from actor.config import ActorConfig
from actor.policy import Policy
from actor.rollout import EnvFailure, RolloutCollector
from core.envs import EnvSpecError, make_vec_env
from core.loss import LossConfig, rollout_gradients
from core.model import ModelConfig, param_shapes
from protocol import checks, sockets
from protocol.codec import DecodeError, decode, encode
from protocol.messages import (
    Ack,
    Bye,
    Error,
    Experience,
    Gradient,
    Heartbeat,
    Hello,
    Message,
    Pong,
    Shutdown,
    Weights,
    WeightsRequest,
    Welcome,
)
from protocol.spec import RunSpec, SpecError

POLL_MS = 50
HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
MAX_HANDSHAKE_FAILURES = 5
BACKPRESSURE_AFTER_S = 0.05
HELLO_EVERY_S = 1.0

EXIT_OK = 0
EXIT_PROTOCOL = 2
EXIT_AUTH = 3
EXIT_ENV = 4


class Stop(Exception):
    """Leave the loop with this exit code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Rejoin(Exception):
    """The learner is gone or restarted: go back to joining."""


@dataclass
class Session:
    """What one Welcome set up; replaced on every re-join."""

    learner_id: str
    spec: RunSpec
    policy: Policy
    collector: RolloutCollector
    shapes: dict[str, tuple[int, ...]]
    sub: zmq.Socket
    pub_endpoint: str


class ActorClient:
    def __init__(
        self, cfg: ActorConfig, log, stop_requested, curve: sockets.CurveKeys | None = None
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.stop_requested = stop_requested  # () -> bool, set by the signal handlers
        self.actor_id = cfg.actor_id or f"{socket.gethostname()}-{os.getpid()}"
        self.incarnation = uuid.uuid4().hex[:12]
        self.curve = curve
        self.host, _ = sockets.parse_endpoint(cfg.learner)
        self.ctx = sockets.new_context()
        # With CURVE, watch the handshake: an unknown key is refused once and ZeroMQ
        # never says so on the data socket; a wrong learner key retries forever.
        self.dealer, self.monitor = sockets.connect_dealer(
            self.ctx,
            sockets.tcp(*sockets.parse_endpoint(cfg.learner)),
            curve=curve,
            monitor_events=HANDSHAKE_EVENTS if curve is not None else 0,
        )
        self.handshake_failures = 0
        self.session: Session | None = None
        self.seq = 0
        self.last_heard = time.monotonic()
        self.last_heartbeat = 0.0
        self.backpressure = 0
        self.backpressure_logged_at = 0.0
        self.rollouts_sent = 0
        self.unacked: dict[int, float] = {}  # seq -> when sent, awaiting the learner's Ack
        self.credit_waits = 0
        # A2C: the policy version of the last rollout sent in this session.
        self.last_sent_version: int | None = None

    # --- the loop -------------------------------------------------------------------

    def run(self) -> int:
        code, reason = EXIT_OK, "stopped"
        try:
            while True:
                self._check_stop()
                try:
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

    def _check_stop(self) -> None:
        if self.stop_requested():
            raise Stop(EXIT_OK, "signal")
        if self.monitor is not None:
            self._check_handshake()

    def _check_handshake(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshake_failures = 0
                continue
            self.handshake_failures += 1
            if (
                kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                or self.handshake_failures >= MAX_HANDSHAKE_FAILURES
            ):
                self.log.error(
                    "auth_failed",
                    learner=self.cfg.learner,
                    detail="the learner refused this actor's key"
                    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    else "handshake keeps failing: is learner.key the learner's public key?",
                    zmq_event=int(kind),
                )
                raise Stop(EXIT_AUTH, "auth_failed")

    def _join(self) -> None:
        hello = Hello(
            actor_id=self.actor_id,
            incarnation=self.incarnation,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            num_envs=self.cfg.envs,
            temperature=float(self.cfg.temperature),
        )
        self.log.info("joining", learner=self.cfg.learner, incarnation=self.incarnation)
        start, last_sent, warned = time.monotonic(), 0.0, False
        while True:
            self._check_stop()
            now = time.monotonic()
            if now - last_sent >= HELLO_EVERY_S:
                self._send(hello, block=False)
                last_sent = now
            if not warned and now - start > self.cfg.learner_timeout:
                self.log.warning(
                    "learner_unreachable", learner=self.cfg.learner, waited_s=round(now - start, 1)
                )
                warned = True
            msg = self._recv(self.dealer, POLL_MS)
            if isinstance(msg, Welcome):
                self._welcome(msg)
            elif (
                isinstance(msg, Weights)
                and self.session
                and msg.learner_id == self.session.learner_id
            ):
                self._load_weights(msg)
                self.log.info("weights_received", version=self.session.policy.version)
                return

    def _welcome(self, msg: Welcome) -> None:
        try:
            spec = RunSpec.from_dict(msg.run)
        except SpecError as exc:
            raise Stop(EXIT_PROTOCOL, f"bad run spec from learner: {exc}") from None
        old = self.session
        if old is not None:
            old.collector.envs.close()
            old.sub.close(linger=0)
        num_envs = self.cfg.envs or spec.num_envs
        seed = msg.seed + self.cfg.seed_offset
        try:
            envs = make_vec_env(spec.env_id, num_envs, spec.env_kwargs)
        except EnvSpecError as exc:
            raise Stop(EXIT_ENV, str(exc)) from None
        if tuple(envs.single_observation_space.shape) != spec.obs_shape:
            envs.close()
            raise Stop(
                EXIT_PROTOCOL,
                f"env observation shape {envs.single_observation_space.shape} != run spec {spec.obs_shape}",
            )
        model_cfg = ModelConfig.from_spec(spec)
        temperature = self.cfg.temperature or msg.temperature or 1.0
        policy = Policy(model_cfg, temperature=temperature, seed=seed)
        discrete = spec.action_kind == "discrete"
        collector = RolloutCollector(
            envs,
            spec.rollout_len,
            action_dtype=np.int64 if discrete else np.float32,
            action_shape=() if discrete else spec.action_shape,
            seed=seed,
            max_failures=self.cfg.max_env_failures,
            on_env_error=self._on_env_error,
        )
        pub_endpoint = sockets.tcp(self.host, msg.pub_port)
        sub = sockets.connect_sub(self.ctx, pub_endpoint, curve=self.curve)
        self.last_sent_version = None
        self.unacked.clear()
        self.session = Session(
            msg.learner_id, spec, policy, collector, param_shapes(policy.model), sub, pub_endpoint
        )
        self.last_heard = time.monotonic()
        self.log.info(
            "joined",
            learner_id=msg.learner_id,
            env=spec.env_id,
            algo=spec.algo,
            envs=num_envs,
            rollout_len=spec.rollout_len,
            temperature=temperature,
            seed=seed,
            pub=pub_endpoint,
        )

    def _on_env_error(self, where: str, exc: BaseException) -> None:
        self.log.warning("env_error", where=where, error=f"{type(exc).__name__}: {exc}"[:500])

    def _train_loop(self) -> None:
        s = self.session
        assert s is not None
        while True:
            self._check_stop()
            self._pump(0)
            if s.spec.sync:
                self._await_weights_after(s)
            rollout = s.collector.collect(s.policy.act)
            self.seq += 1
            if s.spec.sends_gradients:
                msg = self._gradient_message(s, rollout)
            else:
                msg = Experience(
                    arrays=rollout,
                    actor_id=self.actor_id,
                    incarnation=self.incarnation,
                    seq=self.seq,
                    learner_id=s.learner_id,
                    policy_version=s.policy.version,
                )
            self._await_credit(s)
            self._send(msg, block=True)
            self.unacked[self.seq] = time.monotonic()
            self.rollouts_sent += 1
            self.last_sent_version = s.policy.version

    def _await_credit(self, s: Session) -> None:
        """At most max_in_flight rollouts unacknowledged: wait (reading the learner's
        messages) until the learner has taken one. An ack that never comes (the
        learner dropped it under load) expires after learner_timeout."""
        waited, since = False, time.monotonic()
        while len(self.unacked) >= s.spec.max_in_flight:
            self._check_stop()
            now = time.monotonic()
            expired = [k for k, t in self.unacked.items() if now - t > self.cfg.learner_timeout]
            for k in expired:
                del self.unacked[k]
                self.log.warning("ack_missing", seq=k)
            if not waited:
                self.credit_waits += 1
                waited = True
            if now - since > BACKPRESSURE_AFTER_S:  # a normal ack takes one update
                self._note_backpressure("ack")
            self._pump(POLL_MS)

    def _await_weights_after(self, s: Session) -> None:
        """A2C: the next rollout must use weights newer than the last one sent."""
        sent = self.last_sent_version
        if sent is None:
            return
        asked = time.monotonic()
        while s.policy.version <= sent:
            self._check_stop()
            self._pump(POLL_MS)
            # A weights broadcast can be missed (slow joiner); ask directly.
            if time.monotonic() - asked > 4 * s.spec.heartbeat_s:
                self._send(
                    WeightsRequest(
                        actor_id=self.actor_id,
                        incarnation=self.incarnation,
                        have_version=s.policy.version,
                    ),
                    block=False,
                )
                asked = time.monotonic()

    def _gradient_message(self, s: Session, rollout: dict[str, np.ndarray]) -> Gradient:
        spec = s.spec
        cfg = LossConfig(spec.gamma, spec.gae_lambda, spec.value_coef, spec.entropy_coef)
        grads, terms = rollout_gradients(s.policy.model, rollout, cfg)
        return Gradient(
            arrays={
                **grads,
                "ep_returns": rollout["ep_returns"],
                "ep_lengths": rollout["ep_lengths"],
            },
            actor_id=self.actor_id,
            incarnation=self.incarnation,
            seq=self.seq,
            learner_id=s.learner_id,
            policy_version=s.policy.version,
            env_steps=terms.transitions,
            policy_loss=terms.policy_loss.item(),
            value_loss=terms.value_loss.item(),
            entropy=terms.entropy.item(),
        )

    # --- receiving -----------------------------------------------------------------

    def _pump(self, timeout_ms: int) -> None:
        """Handle everything waiting on both sockets; wait up to ``timeout_ms`` for the
        first message. Checks learner liveness and sends heartbeats."""
        s = self.session
        assert s is not None
        poller = zmq.Poller()
        poller.register(self.dealer, zmq.POLLIN)
        poller.register(s.sub, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        newest: Weights | None = None
        for sock in (self.dealer, s.sub):
            if sock not in events:
                continue
            for _ in range(256):  # bounded drain
                msg = self._recv(sock, 0)
                if msg is None:
                    break
                if isinstance(msg, Weights):
                    if msg.learner_id == s.learner_id and (
                        newest is None or msg.version > newest.version
                    ):
                        newest = msg
                    elif msg.learner_id != s.learner_id and sock is self.dealer:
                        raise Rejoin()
                elif isinstance(msg, Ack):
                    if msg.learner_id == s.learner_id:
                        self.unacked.pop(msg.seq, None)
                elif isinstance(msg, Welcome):
                    continue  # a late answer to a repeated Hello
        if newest is not None:
            self._load_weights(newest)
        now = time.monotonic()
        if now - self.last_heartbeat >= s.spec.heartbeat_s:
            self._send(
                Heartbeat(
                    actor_id=self.actor_id,
                    incarnation=self.incarnation,
                    seq=self.seq,
                    policy_version=s.policy.version,
                    backpressure=self.backpressure,
                ),
                block=False,
            )
            self.last_heartbeat = now
        if now - self.last_heard > self.cfg.learner_timeout:
            self.log.warning(
                "learner_lost", learner=self.cfg.learner, silent_s=round(now - self.last_heard, 1)
            )
            raise Rejoin()

    def _recv(self, sock: zmq.Socket, timeout_ms: int) -> Message | None:
        """One message, or None. Handles the ones that end or redirect the loop."""
        if timeout_ms and not sock.poll(timeout_ms, zmq.POLLIN):
            return None
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        try:
            msg = decode(frames)
        except DecodeError as exc:
            self.log.warning("message_rejected", reason=exc.reason, detail=exc.detail)
            return None
        s = self.session
        from_current = s is not None and getattr(msg, "learner_id", None) == s.learner_id
        if sock is self.dealer or from_current:
            self.last_heard = time.monotonic()
        if isinstance(msg, Shutdown) and (sock is self.dealer or from_current):
            self.log.info("learner_shutdown", reason=msg.reason)
            raise Stop(EXIT_OK, "learner_shutdown")
        if isinstance(msg, Error):
            self.log.error("learner_error", code=msg.code, detail=msg.detail, fatal=msg.fatal)
            if msg.fatal:
                raise Stop(EXIT_AUTH if msg.code.startswith("auth") else EXIT_PROTOCOL, msg.code)
            if self.session is not None:
                raise Rejoin()
        if isinstance(msg, Pong) and s is not None and msg.learner_id != s.learner_id:
            self.log.info("learner_restarted", learner_id=msg.learner_id)
            raise Rejoin()
        return msg

    def _load_weights(self, msg: Weights) -> None:
        s = self.session
        assert s is not None
        try:
            checks.check_weights(msg, s.shapes)
        except checks.InvalidMessage as exc:
            self.log.warning(
                "weights_rejected", reason=exc.reason, detail=exc.detail, version=msg.version
            )
            return
        if s.policy.load(msg.arrays, msg.version):
            self.log.debug("weights_loaded", version=msg.version)

    # --- sending -------------------------------------------------------------------

    def _send(self, msg: Message, *, block: bool) -> bool:
        """Send without ever blocking in ZeroMQ. ``block``: keep retrying (counting
        backpressure, still reading the learner's messages) until sent."""
        frames = encode(msg)
        while True:
            try:
                self.dealer.send_multipart(frames, zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                if not block or self.session is None:
                    return False
            self._note_backpressure("send")
            self._check_stop()
            self._pump(POLL_MS)

    def _note_backpressure(self, waiting_for: str) -> None:
        """Count a wait on the learner; log it at most once per 5 s."""
        self.backpressure += 1
        now = time.monotonic()
        if now - self.backpressure_logged_at > 5.0:
            self.log.warning("backpressure", waiting_for=waiting_for, total=self.backpressure)
            self.backpressure_logged_at = now

    def _close(self, reason: str) -> None:
        try:
            self._send(
                Bye(actor_id=self.actor_id, incarnation=self.incarnation, reason=reason),
                block=False,
            )
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        if self.session is not None:
            self.session.collector.envs.close()
            self.session.sub.close(linger=0)
        if self.monitor is not None:
            self.dealer.disable_monitor()
            self.monitor.close(linger=0)
        self.dealer.close(linger=sockets.LINGER_MS)
        self.ctx.term()
