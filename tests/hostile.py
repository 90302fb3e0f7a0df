"""Hostile peers against real learner and actor processes on 127.0.0.1: what the
tests/test_security_*.py files share.

Each of those tests starts a learner (random ports, endpoint read from its own
``learner_listening`` line) and, where it matters, one well-behaved actor; an
"attacker" is a plain pyzmq DEALER (or SUB) in the test process that builds its
messages with protocol.codec / protocol.messages, or by hand with msgpack where a
message must be one the codec would refuse to build. Here: the learner flags those
tests run with, the attacker's socket and its bounded receives, and waits on the
learner's progress. Every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import zmq

from protocol.codec import decode, encode
from protocol.messages import Hello, Message, Weights, Welcome
from scripts.procs import HANG_S, Proc

SMALL = [
    "--envs",
    "4",
    "--rollout-len",
    "8",
    "--heartbeat-s",
    "0.2",
    "--actor-timeout-s",
    "1.5",
    "--log-interval-s",
    "0.2",
]
# CartPole can be solved within ~8 s of these settings, and a solved learner exits: an
# unreachable target keeps it up for the test. --max-seconds bounds a learner a test
# failed to stop (it counts from the first join): well past every wait a test makes, so
# that a stall on a loaded machine slows a test instead of ending its learner.
A3C = [
    "--algo",
    "a3c",
    "--actors",
    "0",
    "--target-return",
    "1e9",
    "--max-seconds",
    str(int(HANG_S * 5)),
    *SMALL,
]


# --- raw peers -------------------------------------------------------------------------


@pytest.fixture
def zctx():
    """A context for attacker sockets; linger 0 so closing never waits on a dead peer."""
    ctx = zmq.Context()
    ctx.linger = 0
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def raw_dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.sndtimeo = int(HANG_S * 1000)  # a send that cannot go out fails the test, never hangs
    sock.connect(endpoint)
    return sock


def recv_message(sock: zmq.Socket, timeout_s: float) -> Message | None:
    """The next message on ``sock`` within ``timeout_s``, decoded; None if none came."""
    if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
        return None
    return decode(sock.recv_multipart(copy=False))


def hello(actor_id: str, incarnation: str = "inc-1") -> Hello:
    return Hello(actor_id=actor_id, incarnation=incarnation, hostname="attacker", pid=1)


def recv_until(
    sock: zmq.Socket, wanted: type[Message] | Callable[[Message], bool], timeout_s: float
) -> Message | None:
    """The first message within ``timeout_s`` of type ``wanted`` (or for which
    ``wanted(msg)`` holds); the others are skipped. None if none came."""
    match = (lambda m: isinstance(m, wanted)) if isinstance(wanted, type) else wanted
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        msg = recv_message(sock, left)
        if msg is not None and match(msg):
            return msg
    return None


def join(sock: zmq.Socket, actor_id: str, timeout_s: float = HANG_S) -> Welcome:
    """Send a valid Hello and return the Welcome (the Weights after it stay queued)."""
    sock.send_multipart(encode(hello(actor_id)))
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        msg = recv_message(sock, left)
        if isinstance(msg, Welcome):
            return msg
    raise AssertionError(f"no Welcome for {actor_id!r} within {timeout_s}s")


def join_with_weights(
    sock: zmq.Socket, actor_id: str, timeout_s: float = HANG_S
) -> tuple[Welcome, Weights]:
    """Join as ``actor_id`` (incarnation ``inc-1``) and take the Weights that follow the
    Welcome: what a client needs before its first rollout."""
    welcome = join(sock, actor_id, timeout_s)
    weights = recv_until(sock, Weights, timeout_s)
    assert isinstance(weights, Weights), f"no Weights for {actor_id!r} within {timeout_s}s"
    return welcome, weights


# --- the learner's progress ------------------------------------------------------------


def progress(learner: Proc) -> list[dict]:
    return learner.events("progress")


def updates_now(learner: Proc) -> int:
    events = progress(learner)
    return events[-1]["updates"] if events else 0


def wait_updates(learner: Proc, at_least: int, timeout: float = HANG_S) -> dict:
    return learner.wait_for("progress", timeout, where=lambda e: e["updates"] >= at_least)
