"""Identity against a real learner: an actor that keeps sending bad rollouts is
quarantined, its messages are dropped unread from then on, and it stays out after the
actor timeout. (Replayed sequence numbers and claimed identities are among the rejects
in test_security_fuzz.py; keys bound to names are in test_security_curve.py.)

The promise under test is in each function's name; shared helpers are in
tests/hostile.py. Every wait is bounded and every process is stopped in ``finally``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from protocol.codec import encode
from protocol.messages import Experience, Heartbeat, Pong, Welcome
from protocol.spec import RunSpec
from scripts.procs import HANG_S, Proc, endpoint_of, start_actor, start_learner
from tests import hostile
from tests.hostile import (
    A3C,
    hello,
    join,
    raw_dealer,
    recv_until,
    updates_now,
    wait_updates,
)

# The attacker's ZeroMQ context, a fixture; bound here so that pytest finds it.
zctx = hostile.zctx


def rejected_by(learner: Proc, actor: str) -> list[dict]:
    return [e for e in learner.events("message_rejected") if e.get("actor") == actor]


# --- quarantine -----------------------------------------------------------------------


def bad_rollouts(welcome: Welcome, actor_id: str, count: int, make_rollout) -> list[list]:
    """``count`` Experience messages with the right shapes and dtypes but wrong
    contents: NaN rewards and out-of-range actions, alternately."""
    spec = RunSpec.from_dict(welcome.run)
    out = []
    for seq in range(1, count + 1):
        arrays = make_rollout(spec, spec.num_envs, seed=seq)
        if seq % 2:
            arrays["rewards"] = np.full_like(arrays["rewards"], np.nan)
        else:
            arrays["actions"] = np.full_like(arrays["actions"], spec.action_n + 7)
        out.append(
            encode(
                Experience(
                    arrays=arrays,
                    actor_id=actor_id,
                    incarnation="inc-1",
                    seq=seq,
                    learner_id=welcome.learner_id,
                    policy_version=0,
                )
            )
        )
    return out


@pytest.mark.slow
def test_actor_sending_bad_rollouts_is_quarantined_and_ignored(tmp_path, zctx, make_rollout):
    learner = start_learner(tmp_path, *A3C)  # --max-bad-messages 20 (the default)
    good = None
    try:
        endpoint = endpoint_of(learner)
        good = start_actor(tmp_path, endpoint, "good")
        wait_updates(learner, 5)

        bad = raw_dealer(zctx, endpoint)
        welcome = join(bad, "bad-1")
        heartbeat = encode(
            Heartbeat(actor_id="bad-1", incarnation="inc-1", seq=0, policy_version=0)
        )
        bad.send_multipart(heartbeat)  # before: answered
        assert isinstance(recv_until(bad, Pong, HANG_S), Pong)
        for frames in bad_rollouts(welcome, "bad-1", 30, make_rollout):
            bad.send_multipart(frames)
        learner.wait_for("actor_quarantined", HANG_S, where=lambda e: e["actor"] == "bad-1")
        bad.send_multipart(heartbeat)  # after: ignored, no Pong
        assert recv_until(bad, Pong, 1.0) is None
        # 20 rejected on their contents, then the 10 + 1 that followed were dropped
        # unread (counted, not logged).
        learner.wait_for("progress", HANG_S, where=lambda e: e["rejected"] >= 31)
        assert len(learner.events("actor_quarantined")) == 1
        assert {e["reason"] for e in rejected_by(learner, "bad-1")} == {
            "not_finite",
            "out_of_range",
        }
        assert len(rejected_by(learner, "bad-1")) == 20

        # The good actor is unaffected: it trains on, and was never rejected.
        wait_updates(learner, updates_now(learner) + 10)
        assert rejected_by(learner, "good") == []
        bad.close()
        learner.signal(signal.SIGTERM)
        assert learner.wait_exit(HANG_S) == 0
    finally:
        if good:
            good.stop()
        learner.stop()
    # The per-reason counters are in the final checkpoint (progress gives only the sum).
    state = load_final_checkpoint(tmp_path)
    assert state["counters"]["rejected"]["quarantined"] == 11
    assert state["counters"]["rejected"]["not_finite"] == 10
    assert state["counters"]["rejected"]["out_of_range"] == 10


def load_final_checkpoint(run_dir: Path) -> dict:
    from learner.checkpoint import CheckpointConfig, Checkpointer

    found = Checkpointer(CheckpointConfig(run_dir / "checkpoints")).load_latest()
    assert found is not None, "the learner wrote no checkpoint"
    return found[1]


@pytest.mark.slow
def test_quarantined_actor_stays_ignored_after_the_actor_timeout(tmp_path, zctx, make_rollout):
    learner = start_learner(tmp_path, *A3C)
    try:
        endpoint = endpoint_of(learner)
        bad = raw_dealer(zctx, endpoint)
        welcome = join(bad, "bad-1")
        for frames in bad_rollouts(welcome, "bad-1", 20, make_rollout):
            bad.send_multipart(frames)
        learner.wait_for("actor_quarantined", HANG_S, where=lambda e: e["actor"] == "bad-1")
        # Wait out --actor-timeout-s (1.5 s), then the same connection says Hello again.
        learner.wait_for("actor_lost", HANG_S, where=lambda e: e["actor_id"] == "bad-1")
        before = learner.events("progress")[-1]["rejected"]
        bad.send_multipart(encode(hello("bad-1", incarnation="inc-2")))
        # The Hello was handled, and refused as the quarantined connection's ...
        learner.wait_for("progress", HANG_S, where=lambda e: e["rejected"] > before)
        # ... with no Welcome on its way, by a learner that goes on without a fault.
        assert recv_until(bad, Welcome, 1.0) is None, "a quarantined actor was welcomed back"
        assert learner.popen.poll() is None and not learner.events("handler_error")
    finally:
        learner.stop()
