"""Hostile peers on the wire, against a real learner: frames over --max-frame-bytes are
cut off by ZeroMQ before Python sees them, and a message of another schema version gets
a fatal Error reply. The flood of malformed messages is in test_security_fuzz.py.

The promise under test is in each function's name; shared helpers are in
tests/hostile.py. Every wait is bounded and every process is stopped in ``finally``.
"""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from protocol.codec import encode
from protocol.messages import Error, Experience, Hello
from protocol.spec import RunSpec
from scripts.procs import HANG_S, endpoint_of, start_actor, start_learner
from tests import hostile
from tests.hostile import (
    A3C,
    hello,
    join,
    progress,
    raw_dealer,
    recv_message,
    wait_updates,
)

# The attacker's ZeroMQ context, a fixture; bound here so that pytest finds it.
zctx = hostile.zctx


# --- frames over --max-frame-bytes ---------------------------------------------------


def wait_disconnected(monitor: zmq.Socket, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not monitor.poll(int(left * 1000), zmq.POLLIN):
            return False
        if recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED:
            return True
    return False


@pytest.mark.slow
def test_oversize_frame_is_cut_off_by_zeromq_and_never_reaches_python(tmp_path, zctx, make_rollout):
    learner = start_learner(tmp_path, *A3C, "--max-frame-bytes", "1000000")
    good = None
    try:
        endpoint = endpoint_of(learner)
        good = start_actor(tmp_path, endpoint, "good")
        wait_updates(learner, 5)
        n_progress = len(progress(learner))
        rejected_before = progress(learner)[-1]["rejected"]
        updates_before = progress(learner)[-1]["updates"]

        # A registered actor (valid Hello first) sends an Experience whose obs frame is
        # 3 MB; a stranger's very first message is a single 3 MB frame.
        registered = raw_dealer(zctx, endpoint)
        reg_monitor = registered.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        welcome = join(registered, "big-1")
        spec = RunSpec.from_dict(welcome.run)
        arrays = make_rollout(spec, spec.num_envs)
        arrays["obs"] = np.zeros(3_000_000 // 4, dtype="<f4")
        registered.send_multipart(
            encode(
                Experience(
                    arrays=arrays,
                    actor_id="big-1",
                    incarnation="inc-1",
                    seq=1,
                    learner_id=welcome.learner_id,
                    policy_version=0,
                )
            )
        )
        stranger = raw_dealer(zctx, endpoint)
        str_monitor = stranger.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        stranger.send(b"\x00" * 3_000_000)

        # ZeroMQ on the learner's side drops the connection on reading the frame size (in
        # milliseconds; the bound is a hang guard: nothing else disconnects these two
        # while the learner runs, which is checked right after).
        assert wait_disconnected(reg_monitor, HANG_S / 4), (
            "the registered oversize sender stays connected"
        )
        assert wait_disconnected(str_monitor, HANG_S / 4), (
            "the stranger oversize sender stays connected"
        )
        assert learner.popen.poll() is None
        registered.close()
        stranger.close()

        # Training goes on, and nothing was counted as rejected: Python never saw it.
        wait_updates(learner, updates_before + 10)
        after = progress(learner)[n_progress:]
        assert after and all(e["rejected"] == rejected_before for e in after)
        assert learner.events("message_rejected") == []
        assert learner.events("handler_error") == []
        assert learner.popen.poll() is None and good.popen.poll() is None
    finally:
        if good:
            good.stop()
        learner.stop()


# --- schema version -------------------------------------------------------------------


@pytest.mark.slow
def test_wrong_schema_version_gets_a_fatal_error_reply(tmp_path, zctx):
    learner = start_learner(tmp_path, *A3C)
    try:
        sock = raw_dealer(zctx, endpoint_of(learner))
        fields = {k: getattr(hello("v999"), k) for k in Hello.FIELDS}
        sock.send(
            msgpack.packb(
                {"v": 999, "type": "hello", "fields": fields, "arrays": []}, use_bin_type=True
            )
        )
        reply = recv_message(sock, HANG_S)
        assert isinstance(reply, Error)
        assert reply.code == "schema_version" and reply.fatal is True
        assert "999" in reply.detail
        ev = learner.wait_for("message_rejected", HANG_S)
        assert ev["reason"] == "schema_version"
        assert learner.events("actor_joined") == []
    finally:
        learner.stop()
