"""Everything the learner sends, and the two sockets it sends on.

The ROUTER carries replies to one actor (Welcome, Weights, Pong, Ack, Error,
Shutdown); the PUB broadcasts Weights and Shutdown. No send ever blocks: the PUB drops
at its high-water mark and a ROUTER send to a gone or saturated peer is dropped (the
peer asks again). The encoded Weights message is cached per version, so publishing it
and answering late joiners cost one encode per update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import zmq

from protocol import sockets
from protocol.codec import encode
from protocol.messages import Ack, Message, Shutdown, Weights


class Outbox:
    def __init__(
        self,
        router: zmq.Socket,
        pub: zmq.Socket,
        learner_id: str,
        version: Callable[[], int],
        weights: Callable[[], dict[str, np.ndarray]],
    ) -> None:
        self.router = router
        self.pub = pub
        self.learner_id = learner_id
        self.version = version
        self.weights = weights  # read (copied off the device) only when the version moved
        self._cached: tuple[int, list] | None = None

    def _weights_frames(self) -> list:
        version = self.version()
        if self._cached is None or self._cached[0] != version:
            msg = Weights(arrays=self.weights(), learner_id=self.learner_id, version=version)
            self._cached = (version, encode(msg))
        return self._cached[1]

    def publish_weights(self) -> None:
        try:
            self.pub.send_multipart(self._weights_frames(), zmq.NOBLOCK, copy=False)
        except zmq.Again:  # PUB drops rather than blocks; kept for completeness
            pass

    def send_weights(self, route: bytes) -> None:
        self._send(route, self._weights_frames())

    def ack(self, route: bytes, seq: int, version: int, *, trained: bool) -> None:
        """Return the actor's credit for rollout ``seq`` (see protocol.messages.Ack)."""
        self.reply(
            route, Ack(learner_id=self.learner_id, seq=seq, version=version, trained=trained)
        )

    def reply(self, route: bytes, msg: Message) -> None:
        self._send(route, encode(msg))

    def _send(self, route: bytes, frames: list) -> None:
        try:
            self.router.send_multipart([route, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:  # peer gone or at its high-water mark: it will ask again
            pass

    def shutdown(self, routes: Iterable[bytes], reason: str) -> None:
        """Tell every actor to stop (the PUB and each known ROUTER peer), then close."""
        frames = encode(Shutdown(learner_id=self.learner_id, reason=reason))
        try:
            self.pub.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        for route in routes:
            self._send(route, frames)
        self.router.close(linger=sockets.LINGER_MS)
        self.pub.close(linger=sockets.LINGER_MS)
