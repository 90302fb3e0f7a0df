"""The actor's sockets: a DEALER to the learner's ROUTER, a SUB to its weights PUB,
and (with CurveZMQ) a monitor on the handshake. No training state here.

    t = Transport(endpoint, curve)
    t.try_send(msg)                # never blocks in ZeroMQ; False at the high-water mark
    for source, msg in t.receive(timeout_ms): ...   # decoded, bounded drain of both sockets
    t.handshake_failure()          # None, or why the learner refused us
    t.subscribe(pub_endpoint)      # after each Welcome
    t.close()

Decoding failures are logged and dropped here; what a message means is the client's.
"""

from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

from protocol import sockets
from protocol.codec import DecodeError, decode, encode
from protocol.messages import Message

HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
MAX_HANDSHAKE_FAILURES = 5
DRAIN = 256  # messages read per socket per receive() call

DEALER, SUB = "dealer", "sub"


class Transport:
    def __init__(self, endpoint: str, log, curve: sockets.CurveKeys | None = None) -> None:
        self.log = log
        self.curve = curve
        self.host, port = sockets.parse_endpoint(endpoint)
        self.ctx = sockets.new_context()
        # With CURVE, watch the handshake: an unknown key is refused once and ZeroMQ
        # never says so on the data socket; a wrong learner key retries forever.
        self.dealer, self.monitor = sockets.connect_dealer(
            self.ctx,
            sockets.tcp(self.host, port),
            curve=curve,
            monitor_events=HANDSHAKE_EVENTS if curve is not None else 0,
        )
        self.sub: zmq.Socket | None = None
        self.handshake_failures = 0

    def subscribe(self, pub_port: int) -> str:
        """(Re)connect the SUB to the learner's weights PUB on the same host."""
        self.unsubscribe()
        endpoint = sockets.tcp(self.host, pub_port)
        self.sub = sockets.connect_sub(self.ctx, endpoint, curve=self.curve)
        return endpoint

    def unsubscribe(self) -> None:
        if self.sub is not None:
            self.sub.close(linger=0)
            self.sub = None

    def try_send(self, msg: Message) -> bool:
        return self.try_send_frames(encode(msg))

    def try_send_frames(self, frames: list) -> bool:
        try:
            self.dealer.send_multipart(frames, zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False

    def receive(self, timeout_ms: int) -> list[tuple[str, Message]]:
        """Every message waiting on both sockets (waiting up to ``timeout_ms`` for the
        first), decoded; undecodable ones are logged and dropped."""
        poller = zmq.Poller()
        poller.register(self.dealer, zmq.POLLIN)
        if self.sub is not None:
            poller.register(self.sub, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        out = []
        for source, sock in ((DEALER, self.dealer), (SUB, self.sub)):
            if sock is None or sock not in events:
                continue
            for _ in range(DRAIN):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                try:
                    out.append((source, decode(frames)))
                except DecodeError as exc:
                    self.log.warning("message_rejected", reason=exc.reason, detail=exc.detail)
        return out

    def handshake_failure(self) -> str | None:
        """Why the CURVE handshake failed for good, or None."""
        if self.monitor is None:
            return None
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return None
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshake_failures = 0
                continue
            self.handshake_failures += 1
            if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return "the learner refused this actor's key"
            if self.handshake_failures >= MAX_HANDSHAKE_FAILURES:
                return "handshake keeps failing: is learner.key the learner's public key?"

    def close(self) -> None:
        self.unsubscribe()
        if self.monitor is not None:
            self.dealer.disable_monitor()
            self.monitor.close(linger=0)
        self.dealer.close(linger=sockets.LINGER_MS)
        self.ctx.term()
