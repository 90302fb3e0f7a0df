"""The actor's line to its learner (actor/link.py) against a real ROUTER on 127.0.0.1:
an actor that gave its learner up as lost and waits for the address file still hears
that learner's Shutdown, and goes (a slow machine can declare the loss first)."""

from __future__ import annotations

import time

import pytest
import structlog

from actor.config import ActorConfig
from actor.exits import EXIT_NO_LEARNER, EXIT_OK, Stop
from actor.link import Link
from actor.transport import Transport
from protocol import address, sockets
from protocol.address import LearnerAddress
from protocol.codec import decode, encode
from protocol.messages import Heartbeat, Hello, Shutdown, Welcome
from scripts.procs import HANG_S, Proc
from tests.conftest import CARTPOLE

LOG = structlog.get_logger()


@pytest.fixture
def router():
    ctx = sockets.new_context()
    sock, port = sockets.bind_router(ctx, "127.0.0.1", 0)
    try:
        yield sock, port
    finally:
        sock.close(linger=0)
        ctx.term()


def lost_link(tmp_path, port: int) -> Link:
    """A Link with --learner-file (no file there: the learner has gone) still connected
    to the learner at ``port``, as after learner_lost."""
    cfg = ActorConfig(learner_file=str(tmp_path / "learner.addr"), learner_file_timeout=2.0)
    link = Link(cfg, LOG, stop_requested=lambda: False)
    link.transport = Transport(sockets.tcp("127.0.0.1", port), LOG)
    link.endpoint = sockets.tcp("127.0.0.1", port)
    return link


def identity_of(router_sock, link: Link) -> bytes:
    """The DEALER's identity, from a message it sends (a ROUTER can answer no other)."""
    beat = Heartbeat(actor_id="a", incarnation="i", seq=1, policy_version=0)
    # The DEALER queues nothing until it is connected (IMMEDIATE): retry, bounded.
    for _ in range(100):  # each try waits up to 50 ms for the message to arrive
        sent = link.transport.try_send(beat)
        if router_sock.poll(50) and sent:
            break
    assert router_sock.poll(5000), "the ROUTER heard nothing"
    frames = router_sock.recv_multipart()
    assert isinstance(decode(frames[1:]), Heartbeat)
    return frames[0]


def test_a_shutdown_from_the_lost_learner_ends_the_wait_for_its_file(tmp_path, router):
    sock, port = router
    link = lost_link(tmp_path, port)
    try:
        who = identity_of(sock, link)
        sock.send_multipart([who, *encode(Shutdown(learner_id="L1", reason="finished"))])
        with pytest.raises(Stop) as stop:
            link.locate(last_learner_id="L1")
        assert stop.value.code == EXIT_OK and stop.value.reason == "learner_shutdown"
    finally:
        link.transport.close()


def test_without_a_shutdown_the_wait_for_the_file_times_out_as_before(tmp_path, router):
    sock, port = router
    link = lost_link(tmp_path, port)
    try:
        identity_of(sock, link)
        with pytest.raises(Stop) as stop:
            link.locate(last_learner_id="L1")
        assert stop.value.code == EXIT_NO_LEARNER and stop.value.reason == "learner_not_found"
    finally:
        link.transport.close()


def answer_hello(sock, timeout_s: float = 30.0) -> bytes | None:
    """The identity of the first actor whose Hello reaches ``sock`` within the time."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            frames = sock.recv_multipart()
            if isinstance(decode(frames[1:]), Hello):
                return frames[0]
    return None


def test_an_actor_welcomed_by_a_learner_that_dies_before_its_weights_follows_the_file(tmp_path):
    """A learner killed between its Welcome and its Weights sends neither again; the
    actor, still joining, follows the address file to the learner that replaced it
    (it waited for those Weights forever before; seen in the Slurm kill test)."""
    addr = tmp_path / "learner.addr"
    ctx = sockets.new_context()
    first, port_a = sockets.bind_router(ctx, "127.0.0.1", 0)
    second, port_b = sockets.bind_router(ctx, "127.0.0.1", 0)
    actor = None
    try:
        address.write(
            addr,
            LearnerAddress(
                sockets.tcp("127.0.0.1", port_a), sockets.tcp("127.0.0.1", port_a + 1), "A", 1, "h"
            ),
        )
        actor = Proc(
            ["-m", "actor", "--learner-file", str(addr), "--actor-id", "t1",
             "--run-dir", str(tmp_path), "--learner-timeout", "1.5"],
            tmp_path / "actor-t1.jsonl",
            tmp_path / "actor-t1.stderr",
        )  # fmt: skip
        who = answer_hello(first)
        assert who is not None, "no Hello reached the first learner"
        welcome = Welcome(
            learner_id="A", run=CARTPOLE.to_dict(), pub_port=port_a + 1, temperature=1.0, seed=1
        )
        first.send_multipart([who, *encode(welcome)])  # ... and then it dies: no Weights
        actor.wait_for("joined", HANG_S)
        address.write(
            addr,
            LearnerAddress(
                sockets.tcp("127.0.0.1", port_b), sockets.tcp("127.0.0.1", port_b + 1), "B", 2, "h"
            ),
        )
        assert answer_hello(second) is not None, "the actor stayed with the dead learner"
        assert actor.popen.poll() is None
    finally:
        if actor is not None:
            actor.stop()
        first.close(linger=0)
        second.close(linger=0)
        ctx.term()
