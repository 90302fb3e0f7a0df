"""The staleness study's knob: --weights-delay K hands actors the weights K updates old."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from learner.flags import parse
from learner.outbox import Outbox
from protocol.codec import decode


def test_outbox_sends_the_weights_k_updates_old():
    ctx = zmq.Context.instance()
    router, pub = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB)
    try:
        outbox = Outbox(router, pub, "L", 0, {"w": np.zeros(2, np.float32)}, delay=2)
        sent = []
        for v in range(1, 6):
            outbox.publish_weights(v, {"w": np.full(2, v, np.float32)})
            msg = decode([bytes(f) for f in outbox._frames])
            sent.append((outbox.version, msg.version, float(msg.arrays["w"][0])))
        assert sent == [(0, 0, 0.0), (0, 0, 0.0), (1, 1, 1.0), (2, 2, 2.0), (3, 3, 3.0)]
    finally:
        router.close(0)
        pub.close(0)


def test_weights_delay_is_refused_for_sync_algorithms():
    with pytest.raises(SystemExit):
        parse(["--algo", "a2c", "--weights-delay", "2"])
    cfg, _ = parse(["--algo", "impala", "--weights-delay", "2"])
    assert cfg.weights_delay == 2


def test_weights_delay_must_stay_below_the_lag_bound():
    with pytest.raises(SystemExit):
        parse(["--algo", "a3c", "--weights-delay", "4"])  # a3c's bound is 4
    cfg, _ = parse(["--algo", "a3c", "--weights-delay", "4", "--max-policy-lag", "100"])
    assert cfg.weights_delay == 4
