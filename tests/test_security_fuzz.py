"""A flood of malformed, hostile and random messages from a registered actor, against
a real learner: every one is rejected with a reason, none crashes the learner, and the
well-behaved actor trains on.

The promise under test is in the function's name; shared helpers are in
tests/hostile.py. Every wait is bounded and every process is stopped in ``finally``.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from protocol.codec import REASONS as CODEC_REASONS
from protocol.codec import encode
from protocol.messages import (
    SCHEMA_VERSION,
    Error,
    Experience,
    Gradient,
    Heartbeat,
    Pong,
    Shutdown,
    Weights,
    WeightsRequest,
    Welcome,
)
from protocol.spec import RunSpec
from scripts.procs import endpoint_of, start_actor, start_learner
from tests import hostile
from tests.hostile import (
    A3C,
    join,
    progress,
    raw_dealer,
    recv_until,
    updates_now,
    wait_updates,
)

# The attacker's ZeroMQ context, a fixture; bound here so that pytest finds it.
zctx = hostile.zctx


def header(**overrides: object) -> bytes:
    """A msgpack header built by hand: a valid Heartbeat's unless ``overrides`` say
    otherwise (a key set to ``...`` is left out)."""
    h: dict = {
        "v": SCHEMA_VERSION,
        "type": "heartbeat",
        "fields": {
            "actor_id": "x",
            "incarnation": "i",
            "seq": 0,
            "policy_version": 0,
            "backpressure": 0,
        },
        "arrays": [],
    }
    h.update(overrides)
    return msgpack.packb({k: v for k, v in h.items() if v is not ...}, use_bin_type=True)


# --- a flood of garbage ---------------------------------------------------------------


def malformed_experiences(welcome: Welcome, actor_id: str, make_rollout) -> list[list]:
    """Messages from a registered actor, each wrong in one way: Experience with bad
    contents, shapes, dtypes, ids or frames, and types the learner never takes."""
    spec = RunSpec.from_dict(welcome.run)
    t, n = spec.rollout_len, spec.num_envs

    counter = iter(range(1, 1_000_000))

    def exp(seq: int | None = None, **changes: object) -> Experience:
        # Each its own sequence number: the learner judges the sequence before the
        # contents, so a reused one would be rejected as a replay, not for its contents.
        seq = next(counter) if seq is None else seq
        arrays = make_rollout(spec, n, seed=seq)
        fields = {
            "actor_id": actor_id,
            "incarnation": "inc-1",
            "seq": seq,
            "learner_id": welcome.learner_id,
            "policy_version": 0,
        }
        for k, v in changes.items():
            if k in fields:
                fields[k] = v
            elif v is None:
                del arrays[k]
            else:
                arrays[k] = v
        return Experience(arrays=arrays, **fields)

    nan = np.full((t, n), np.nan, dtype="<f4")
    bad = [
        exp(rewards=nan),
        exp(logp=nan),
        exp(obs=np.full((t + 1, n, *spec.obs_shape), np.inf, dtype="<f4")),
        exp(actions=np.full((t, n), -1, dtype="<i8")),
        exp(actions=np.full((t, n), spec.action_n, dtype="<i8")),
        exp(actions=np.zeros((t, n), dtype="<i4")),
        exp(obs=np.zeros((t + 1, n, *spec.obs_shape), dtype="<f8")),
        exp(obs=np.zeros((t + 2, n, *spec.obs_shape), dtype="<f4")),
        exp(rewards=np.zeros((t, n + 1), dtype="<f4")),
        exp(rewards=np.full((t, n), 1e7, dtype="<f4")),
        exp(valid=None),
        exp(ep_lengths=np.array([0], dtype="<i8")),
        exp(ep_returns=np.zeros((1, 1), dtype="<f8")),
        exp(ep_returns=np.array([np.nan], dtype="<f8")),
        exp(incarnation="someone-else"),
        exp(actor_id="not-me"),
        exp(policy_version=10**9),
        exp(seq=0),  # not after the last sequence number (0): a replay
    ]
    frames = [encode(m) for m in bad]
    good_frames = encode(exp())
    frames.append(good_frames[:-1])  # an array frame missing
    frames.append([*good_frames, b"extra"])  # one frame too many
    frames.append([*good_frames[:-1], bytes(3)])  # the last frame the wrong size
    # An array name Experience does not have.
    frames.append(encode(Experience(arrays={"grad/x": np.zeros(2, "<f4")})))
    # Types only the learner sends, and gradients to an experience run.
    frames += [
        encode(Weights(arrays={"w": np.zeros(3, "<f4")}, learner_id="L", version=1)),
        encode(Pong(learner_id="L", version=1)),
        encode(Shutdown(learner_id="L", reason="no")),
        encode(Error(code="x", detail="y", fatal=True)),
        encode(
            Gradient(
                arrays={
                    "grad/a": np.zeros(2, "<f4"),
                    "ep_returns": np.zeros(0, "<f8"),
                    "ep_lengths": np.zeros(0, "<i8"),
                },
                actor_id=actor_id,
                incarnation="inc-1",
                seq=1,
                learner_id=welcome.learner_id,
            )
        ),
        encode(Heartbeat(actor_id="not-me", incarnation="inc-1", seq=0, policy_version=0)),
        encode(WeightsRequest(actor_id="not-me", incarnation="inc-1", have_version=0)),
    ]
    return frames


def hostile_headers() -> list[list[bytes]]:
    """msgpack-valid headers that are wrong: versions, types, fields, array layouts."""
    fields = {"actor_id": "x", "incarnation": "i", "seq": 0, "policy_version": 0}
    out = [header(v=v) for v in (0, 2, -1, 999, 2**64 - 1, "1", True, 1.0, None)]
    out += [header(type=t) for t in ("nope", "", 5, None, ["hello"], "HELLO")]
    out += [header(**{k: ...}) for k in ("v", "type", "fields", "arrays")]
    out += [header(extra=1)]
    out += [
        header(fields=f)
        for f in (
            [],
            "fields",
            None,
            fields,  # backpressure missing
            {**fields, "backpressure": 0, "more": 1},
            {**fields, "backpressure": "0"},
            {**fields, "backpressure": True},
            {**fields, "backpressure": 2**64 - 1},
            {**fields, "backpressure": 0.5},
            {**fields, "backpressure": 0, "seq": None},
            {**fields, "backpressure": 0, "actor_id": b"x"},
            {**fields, "backpressure": 0, "actor_id": ["x"] * 1000},
            {b"actor_id": "x"},
        )
    ]
    experience = {
        "actor_id": "x",
        "incarnation": "i",
        "seq": 1,
        "learner_id": "L",
        "policy_version": 0,
    }
    layouts = [
        "arrays",
        [["obs"]],
        [["obs", "<f4"]],
        [["obs", "|O", [1]]],
        [["obs", ">f4", [1]]],
        [["obs", "<U8", [1]]],
        [["obs", "V8", [1]]],
        [["obs", "<f4", [-1]]],
        [["obs", "<f4", [2**31]]],
        [["obs", "<f4", [2**30, 2**30]]],
        [["obs", "<f4", [1] * 9]],
        [["obs", "<f4", "1"]],
        [["obs", "<f4", [True]]],
        [["obs", "<f4", [1]], ["obs", "<f4", [1]]],
        [["nope", "<f4", [1]]],
        [["", "<f4", [1]]],
        [[5, "<f4", [1]]],
        [["obs", "<f4", [1]]] * 300,
    ]
    out += [header(type="experience", fields=experience, arrays=a) for a in layouts]
    out += [header(arrays=[["obs", "<f4", [1]]])]  # arrays on a type that has none
    out += [msgpack.packb(x, use_bin_type=True) for x in ([1, 2], 7, "hello", None, b"\x00", 1.5)]
    out += [msgpack.packb({1: 2}), msgpack.packb({"v": msgpack.ExtType(1, b"x")})]
    out += [b"\x91" * 1000 + b"\xc0", b"\x91" * 60_000 + b"\xc0", b"\x81\xa1v" * 20_000 + b"\x01"]
    out += [b"\xdd\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff"]
    out += [b"\x80" + bytes(70_000)]  # over Limits.header_bytes
    return [[h] for h in out] + [[header(), b"unexpected array frame"]]


def random_messages(rng: np.random.Generator, count: int) -> list[list[bytes]]:
    return [
        [rng.bytes(int(rng.integers(0, 2001))) for _ in range(int(rng.integers(1, 5)))]
        for _ in range(count)
    ]


@pytest.mark.slow
def test_learner_survives_a_thousand_random_messages_and_keeps_training(
    tmp_path, zctx, make_rollout
):
    # Quarantine would drop the flood unread after 20 bad messages; raise the bar so
    # every message goes through the decoder and the checks.
    learner = start_learner(tmp_path, *A3C, "--max-bad-messages", "1000000")
    good = None
    try:
        endpoint = endpoint_of(learner)
        good = start_actor(tmp_path, endpoint, "good")
        wait_updates(learner, 5)

        attacker = raw_dealer(zctx, endpoint)
        welcome = join(attacker, "fuzz-1")
        flood = malformed_experiences(welcome, "fuzz-1", make_rollout) + hostile_headers()
        flood += random_messages(np.random.default_rng(0), 1000)
        for frames in flood:
            attacker.send_multipart(frames)
        # A valid heartbeat last: its answer says the learner has read everything before
        # it (a Pong, or "not_registered" if the flood outlasted --actor-timeout-s). Its
        # seq is past every rollout sent: a heartbeat's counter may not go backwards.
        attacker.send_multipart(
            encode(Heartbeat(actor_id="fuzz-1", incarnation="inc-1", seq=10**9, policy_version=0))
        )
        answer = recv_until(
            attacker,
            lambda m: isinstance(m, Pong) or (isinstance(m, Error) and m.code == "not_registered"),
            60,
        )
        assert answer is not None, "no answer to the heartbeat after the flood"
        attacker.close()

        after_flood = updates_now(learner)
        wait_updates(learner, after_flood + 10)
        assert learner.popen.poll() is None and good.popen.poll() is None
        assert learner.events("handler_error") == []
        reasons = {e["reason"] for e in learner.events("message_rejected")}
        # Every decode reason a peer can cause over the wire (an empty message or a
        # non-buffer frame cannot cross a socket), then the content and identity ones.
        wire = CODEC_REASONS - {"no_frames", "bad_frame"}
        assert (
            wire
            | {
                "not_finite",
                "out_of_range",
                "missing_array",
                "unexpected_type",
                "identity_mismatch",
                "wrong_incarnation",
                "future_version",
                "replayed_seq",
            }
            <= reasons
        )
        # Every one of them was counted (none dropped unseen, none taken as valid).
        assert progress(learner)[-1]["rejected"] >= len(flood)
    finally:
        if good:
            good.stop()
        learner.stop()
