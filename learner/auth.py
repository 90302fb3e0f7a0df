"""CurveZMQ authentication for the learner, answered in the learner's own loop.

ZeroMQ asks a ZAP handler (RFC 27) at ``inproc://zeromq.zap.01`` whether each
connecting client key may talk to a CURVE server socket; both the ROUTER (experience
in) and the PUB (weights out) ask. This handler is a plain REP socket the learner
polls beside the ROUTER (no hidden thread): a key in ``authorized/`` is accepted with
its file name as the user id, which ZeroMQ then attaches to every message from that
connection (``frame.get("User-Id")``); any other key is refused and logged.

Key layout (``make keys`` / scripts/keys.py):

    <learner keys>/learner.key, learner.key_secret      the learner's pair
    <learner keys>/authorized/NAME.key                   each actor's public key
    <actor keys>/learner.key, NAME.key, NAME.key_secret  given to the actor NAME
"""

from __future__ import annotations

from pathlib import Path

import zmq
from zmq.utils import z85

from protocol.keys import read_keypair, read_public
from protocol.sockets import CurveKeys

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
LOGGED_REJECTIONS = 20  # auth_rejected lines in full before one per thousand


def load_learner_keys(directory: Path) -> tuple[CurveKeys, dict[bytes, str]]:
    """The learner's key pair and the authorised actor keys (z85 public key -> name)."""
    public, secret = read_keypair(directory / "learner.key_secret")
    authorized: dict[bytes, str] = {}
    auth_dir = directory / "authorized"
    if not auth_dir.is_dir():
        raise ValueError(f"{auth_dir} is missing: no actor could ever join")
    for path in sorted(auth_dir.glob("*.key")):  # read_public checks them and auth_dir
        authorized[read_public(path)] = path.name[: -len(".key")]
    if not authorized:
        raise ValueError(f"{auth_dir} holds no *.key files: no actor could ever join")
    return CurveKeys(public, secret), authorized


class ZapHandler:
    def __init__(self, ctx: zmq.Context, authorized: dict[bytes, str], log) -> None:
        self.authorized = authorized
        self.log = log
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self.rejected = 0

    def handle(self) -> None:
        """Answer every pending ZAP request."""
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.sock.send_multipart(self._answer(frames))

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = frames[:6]
        credentials = frames[6:]
        if (
            version != b"1.0"
            or mechanism != b"CURVE"
            or len(credentials) != 1
            or len(credentials[0]) != 32
        ):
            self.rejected += 1
            self._log_rejection(
                reason="not_curve",
                mechanism=mechanism.decode(errors="replace"),
                address=address.decode(errors="replace"),
            )
            return [b"1.0", request_id, b"400", b"CURVE required", b"", b""]
        key = z85.encode(credentials[0])
        name = self.authorized.get(key)
        if name is None:
            self.rejected += 1
            self._log_rejection(
                reason="unknown_key",
                key=key.decode(),
                address=address.decode(errors="replace"),
            )
            return [b"1.0", request_id, b"400", b"unknown key", b"", b""]
        return [b"1.0", request_id, b"200", b"OK", name.encode(), b""]

    def _log_rejection(self, **fields) -> None:
        # As message_rejected: the first few in full, then one in a thousand with the
        # count, so that handshakes with random keys cannot fill the learner's disk.
        if self.rejected <= LOGGED_REJECTIONS or self.rejected % 1000 == 0:
            self.log.warning("auth_rejected", count=self.rejected, **fields)

    def close(self) -> None:
        self.sock.close(linger=0)


def user_id(frame: zmq.Frame) -> str | None:
    """The authenticated identity ZeroMQ attached to a received frame, if any."""
    try:
        return frame.get("User-Id")
    except (zmq.ZMQError, AttributeError):
        return None
