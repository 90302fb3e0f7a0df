"""The actor's line to the learner it serves: where the learner is (``--learner``, or
``--learner-file`` read again after every loss), the transport, when the learner was
last heard from, sends that never block, what any message means wherever it arrives,
and the goodbye. actor/client.py runs the session (join, collect, credit) over it.

    link.check_stop()              # a signal or a failed CURVE handshake: Stop
    link.locate()                  # --learner-file: wait for it, follow a moved learner
    link.common(source, msg, ...)  # liveness, Shutdown, Error, a restarted learner
    link.send(msg, pump)           # at the high-water mark: count backpressure, pump, retry
    link.check_alive()             # silent for --learner-timeout: Rejoin
    link.close(bye)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from actor.config import ActorConfig
from actor.exits import EXIT_AUTH, EXIT_NO_LEARNER, EXIT_OK, EXIT_PROTOCOL, Rejoin, Stop
from actor.locate import LearnerNotFound, wait_for_address
from actor.transport import DEALER, Transport
from protocol import sockets
from protocol.codec import encode
from protocol.messages import Bye, Error, Message, Pong, Shutdown
from protocol.sockets import plaintext_refusal

BACKPRESSURE_LOG_EVERY_S = 5.0


class Link:
    def __init__(
        self,
        cfg: ActorConfig,
        log,
        stop_requested: Callable[[], bool],
        curve: sockets.CurveKeys | None = None,
    ) -> None:
        self.cfg, self.log, self.curve = cfg, log, curve
        self.stop_requested = stop_requested  # set by the signal handlers
        # With --learner-file the endpoint is read from the file before each join.
        self.endpoint = "" if cfg.learner_file else cfg.learner
        self.transport: Transport | None = (
            None if cfg.learner_file else Transport(cfg.learner, log, curve)
        )
        self._plaintext_checked = False
        self.last_heard = time.monotonic()
        self.backpressure = 0  # waits on the learner, reported in every Heartbeat
        self._backpressure_logged_at = 0.0

    def check_stop(self) -> None:
        if self.stop_requested():
            raise Stop(self.cfg.signal_exit_code, "signal")
        why = self.transport.handshake_failure() if self.transport is not None else None
        if why is not None:
            self.log.error("auth_failed", learner=self.endpoint, detail=why)
            raise Stop(EXIT_AUTH, "auth_failed")

    def locate(self, last_learner_id: str | None = None) -> None:
        """--learner-file: wait (at most --learner-file-timeout) until the file names a
        learner, and connect there if that is not where this actor is connected. While
        waiting, the learner last served (``last_learner_id``) is still listened to: its
        Shutdown, arriving after this actor had given it up as lost (a slow machine),
        still ends the actor, which would otherwise wait for a file that will not come
        back."""
        if not self.cfg.learner_file:
            if not self._plaintext_checked:
                self._check_plaintext(self.endpoint)
                self._plaintext_checked = True
            return
        path = Path(self.cfg.learner_file)

        def check() -> None:
            self.check_stop()
            self._heed_shutdown(last_learner_id)

        try:
            found = wait_for_address(path, self.cfg.learner_file_timeout, check, self.log)
        except LearnerNotFound as exc:
            self.log.error(
                "learner_not_found",
                learner_file=str(path),
                waited_s=exc.waited_s,
                detail=exc.detail,
            )
            raise Stop(EXIT_NO_LEARNER, "learner_not_found") from None
        if found.router != self.endpoint:
            self._check_plaintext(found.router)
            if self.transport is not None:
                self.transport.close()
            self.transport = Transport(found.router, self.log, self.curve)
            self.endpoint = found.router
            self.log.info(
                "learner_located",
                learner=found.router,
                learner_id=found.learner_id,
                learner_host=found.host,
                learner_file=str(path),
            )

    def _check_plaintext(self, endpoint: str) -> None:
        """Without keys, a learner on another host only with --insecure (and a warning);
        otherwise exit 2, which a supervisor does not restart: the address will not
        change its mind (python -m actor refuses such a --learner before it starts)."""
        if self.curve is not None or (refusal := plaintext_refusal(endpoint)) is None:
            return
        if not self.cfg.insecure:
            self.log.error("plaintext_refused", learner=endpoint, detail=refusal)
            raise Stop(EXIT_PROTOCOL, "plaintext_refused")
        self.log.warning(
            "insecure_connect",
            learner=endpoint,
            detail="no CurveZMQ keys: traffic is neither encrypted nor authenticated",
        )

    def _heed_shutdown(self, learner_id: str | None) -> None:
        """A Shutdown waiting on the transport, from its learner: Stop. Anything else
        from a learner given up is dropped."""
        if self.transport is None:
            return
        for source, msg in self.transport.receive(0):
            if isinstance(msg, Shutdown) and (
                source == DEALER or getattr(msg, "learner_id", None) == learner_id
            ):
                self.log.info("learner_shutdown", reason=msg.reason, after="learner_lost")
                raise Stop(EXIT_OK, "learner_shutdown")

    def common(self, source: str, msg: Message, learner_id: str | None, joined: bool) -> None:
        """What every message means wherever it arrives: liveness, shutdown, errors, a
        restarted learner. ``learner_id``: the learner of the current session, if any;
        ``joined``: a session is running (a non-fatal Error then means re-join)."""
        from_current = learner_id is not None and getattr(msg, "learner_id", None) == learner_id
        if source == DEALER or from_current:
            self.last_heard = time.monotonic()
        if isinstance(msg, Shutdown) and (source == DEALER or from_current):
            self.log.info("learner_shutdown", reason=msg.reason)
            raise Stop(EXIT_OK, "learner_shutdown")
        if isinstance(msg, Error):
            self.log.error("learner_error", code=msg.code, detail=msg.detail, fatal=msg.fatal)
            if msg.fatal:
                raise Stop(EXIT_AUTH if msg.code.startswith("auth") else EXIT_PROTOCOL, msg.code)
            if joined:
                raise Rejoin()
        if isinstance(msg, Pong) and learner_id and msg.learner_id != learner_id:
            self.log.info("learner_restarted", learner_id=msg.learner_id)
            raise Rejoin()

    def check_alive(self) -> None:
        silent = time.monotonic() - self.last_heard
        if silent > self.cfg.learner_timeout:
            self.log.warning("learner_lost", learner=self.endpoint, silent_s=round(silent, 1))
            raise Rejoin()

    def send(self, msg: Message, pump: Callable[[], None]) -> None:
        """Send, retrying at the high-water mark (counting backpressure; ``pump`` reads
        the learner's messages meanwhile) until sent."""
        frames = encode(msg)
        noted = False
        while not self.transport.try_send_frames(frames):
            if not noted:
                self.note_backpressure("send")
                noted = True
            self.check_stop()
            pump()

    def note_backpressure(self, waiting_for: str) -> None:
        """Count one wait on the learner (a send at the high-water mark, or credit
        held past BACKPRESSURE_AFTER_S); log it at most once per 5 s."""
        self.backpressure += 1
        now = time.monotonic()
        if now - self._backpressure_logged_at > BACKPRESSURE_LOG_EVERY_S:
            self.log.warning("backpressure", waiting_for=waiting_for, total=self.backpressure)
            self._backpressure_logged_at = now

    def close(self, bye: Bye) -> None:
        if self.transport is None:  # stopped before a learner was found
            return
        try:
            self.transport.try_send(bye)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        self.transport.close()
