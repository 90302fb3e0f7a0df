"""Everything the learner sends, and the two sockets it sends on.

The ROUTER carries replies to one actor (Welcome, Weights, Pong, Ack, Error,
Shutdown); the PUB broadcasts Weights and Shutdown. No send ever blocks: the PUB drops
at its high-water mark and a ROUTER send to a gone or saturated peer is dropped (the
peer asks again). The encoded Weights message is cached per version, so publishing it
and answering late joiners cost one encode per update. The weights are handed in (a copy
made where the update ran), never read off the live network here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

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
        version: int,
        weights: dict[str, np.ndarray],
        delay: int = 0,
    ) -> None:
        self.router = router
        self.pub = pub
        self.learner_id = learner_id
        # The staleness study's knob (--weights-delay): actors get the weights ``delay``
        # updates older than the learner's, a controlled policy lag.
        self._history: deque[tuple[int, list]] = deque(maxlen=delay + 1)
        self.set_weights(version, weights)

    def set_weights(self, version: int, weights: dict[str, np.ndarray]) -> None:
        """The weights (own arrays, not views of live parameters) that Welcome and the
        broadcast send from now on (with a delay: those of ``delay`` updates ago)."""
        msg = Weights(arrays=weights, learner_id=self.learner_id, version=version)
        self._history.append((version, encode(msg)))
        self.version, self._frames = self._history[0]

    def publish_weights(self, version: int, weights: dict[str, np.ndarray]) -> None:
        self.set_weights(version, weights)
        try:
            self.pub.send_multipart(self._frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:  # PUB drops rather than blocks; kept for completeness
            pass

    def send_weights(self, route: bytes) -> None:
        self._send(route, self._frames)

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

    def shutdown(self, routes: Iterable[bytes], reason: str, *, tell: bool = True) -> None:
        """Tell every actor to stop (the PUB and each known ROUTER peer), then close;
        ``tell=False``: close only (the actors will find the next learner)."""
        frames = encode(Shutdown(learner_id=self.learner_id, reason=reason))
        if tell:
            try:
                self.pub.send_multipart(frames, zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            for route in routes:
                self._send(route, frames)
        self.router.close(linger=sockets.LINGER_MS)
        self.pub.close(linger=sockets.LINGER_MS)
