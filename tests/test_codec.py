"""protocol.codec: round trips of every message, dtype and shape (in memory and over
ZeroMQ) and pinned bytes. Its refusals: tests/test_codec_refusals.py."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from protocol.codec import decode, encode
from protocol.messages import (
    DTYPES,
    MESSAGE_TYPES,
    ArrayMessage,
    Experience,
    Heartbeat,
    Weights,
)

POLL_MS = 5000


def assert_same_message(got, want) -> None:
    # Dataclass == would compare numpy arrays element-wise and fail on truthiness.
    assert type(got) is type(want)
    assert got.scalar_fields() == want.scalar_fields()
    for name, typ in want.FIELDS.items():
        assert type(getattr(got, name)) is typ, name
    if isinstance(want, ArrayMessage):
        assert list(got.arrays) == list(want.arrays)
        for name, arr in want.arrays.items():
            out = got.arrays[name]
            assert out.dtype == arr.dtype, name
            assert out.shape == arr.shape, name
            np.testing.assert_array_equal(out, arr, err_msg=name)


def as_bytes(frames) -> list[bytes]:
    return [bytes(memoryview(f)) for f in frames]


def test_samples_cover_every_message_type(sample_messages):
    assert sorted(type(msg).TYPE for msg in sample_messages) == sorted(MESSAGE_TYPES)


def test_round_trip_every_message_type(sample_messages):
    for msg in sample_messages:
        frames = encode(msg)
        assert isinstance(frames[0], bytes)
        assert_same_message(decode(as_bytes(frames)), msg)
        # In-process frames (the numpy arrays encode returns) decode the same way.
        assert_same_message(decode(frames), msg)


SHAPES = [(), (0,), (3, 0, 2), (1,), (2, 3), (2, 1, 3, 1)]


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_round_trip_every_dtype_and_shape(dtype, shape):
    rng = np.random.default_rng(0)
    arr = rng.uniform(0, 200, size=shape).astype(np.dtype(dtype))  # in range for |u1
    msg = Weights(learner_id="L", version=1, arrays={"w": arr})
    frames = as_bytes(encode(msg))
    assert len(frames[1]) == arr.nbytes
    out = decode(frames)
    assert_same_message(out, msg)
    assert not out.arrays["w"].flags.writeable  # a view of the frame, not a copy
    # In-process: the frames are the numpy arrays themselves (zero-size ones included).
    assert_same_message(decode(encode(msg)), msg)


def test_encode_makes_non_contiguous_arrays_contiguous():
    base = np.arange(24, dtype="<f4").reshape(4, 6)
    view = base[:, ::2].T  # [3, 4], neither C- nor F-contiguous
    out = decode(as_bytes(encode(Weights(arrays={"w": view}))))
    np.testing.assert_array_equal(out.arrays["w"], view)


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros(2, dtype=object),
        np.zeros(2, dtype=">f4"),
        np.zeros(2, dtype=np.uint16),
        np.zeros(2, dtype=np.complex64),
        np.zeros(2, dtype="V8"),
        np.zeros(2, dtype=[("a", "<f4")]),
    ],
    ids=lambda a: a.dtype.str,
)
def test_encode_refuses_disallowed_dtype(arr):
    with pytest.raises(ValueError, match="not allowed"):
        encode(Weights(arrays={"w": arr}))


def test_encode_converts_numpy_scalars():
    msg = Heartbeat(actor_id="a", incarnation="i", seq=np.int64(5), policy_version=np.int32(2))
    out = decode(encode(msg))
    assert out.seq == 5 and type(out.seq) is int
    assert type(out.policy_version) is int


@pytest.fixture
def zmq_pair():
    ctx = zmq.Context()
    ctx.linger = 0
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        yield router, dealer
    finally:
        ctx.destroy(linger=0)


def test_round_trip_over_zmq_with_frames(zmq_pair, sample_messages):
    router, dealer = zmq_pair
    for msg in sample_messages:
        dealer.send_multipart(encode(msg), copy=False)
        assert router.poll(POLL_MS), f"no {msg.TYPE} within {POLL_MS} ms"
        identity, *frames = router.recv_multipart(copy=False)
        assert all(isinstance(f, zmq.Frame) for f in frames)
        assert_same_message(decode(frames), msg)
        # And back the other way, addressed to the dealer.
        router.send_multipart([identity, *encode(msg)], copy=False)
        assert dealer.poll(POLL_MS)
        assert_same_message(decode(dealer.recv_multipart(copy=False)), msg)


def test_every_dtype_and_shape_over_zmq(zmq_pair):
    router, dealer = zmq_pair
    rng = np.random.default_rng(1)
    arrays = {
        f"{dtype}{shape}": rng.uniform(0, 200, size=shape).astype(dtype)
        for dtype in sorted(DTYPES)
        for shape in SHAPES
    }
    msg = Weights(learner_id="L", version=2, arrays=arrays)
    dealer.send_multipart(encode(msg), copy=False)
    assert router.poll(POLL_MS)
    _identity, *frames = router.recv_multipart(copy=False)
    assert len(frames) == 1 + len(arrays)
    assert_same_message(decode(frames), msg)


# Golden bytes: a change to the schema (field names or order, key names, msgpack
# encoding choices) breaks these on purpose. If the change is intended, bump
# SCHEMA_VERSION and re-pin.
GOLDEN_HEARTBEAT = (
    "84a17608a474797065a9686561727462656174a66669656c647385a86163746f725f6964a26131"
    "ab696e6361726e6174696f6ea26931a373657107ae706f6c6963795f76657273696f6e03ac6261"
    "636b707265737375726500a661727261797390"
)
GOLDEN_EXPERIENCE = (
    "84a17608a474797065aa657870657269656e6365a66669656c647385a86163746f725f6964a261"
    "31ab696e6361726e6174696f6ea26931a373657101aa6c6561726e65725f6964a14cae706f6c69"
    "63795f76657273696f6e02a66172726179739593a36f6273a33c66349302010293a7616374696f"
    "6e73a33c693892010193a772657761726473a33c663492010193aa7465726d696e61746564a37c"
    "623192010193aa65705f72657475726e73a33c66389100"
)


def test_golden_heartbeat():
    msg = Heartbeat(actor_id="a1", incarnation="i1", seq=7, policy_version=3)
    frames = encode(msg)
    assert len(frames) == 1
    assert frames[0].hex() == GOLDEN_HEARTBEAT
    assert_same_message(decode([bytes.fromhex(GOLDEN_HEARTBEAT)]), msg)


def test_golden_experience():
    msg = Experience(
        actor_id="a1",
        incarnation="i1",
        seq=1,
        learner_id="L",
        policy_version=2,
        arrays={
            "obs": np.array([[[0.5, -1.0]], [[2.0, 0.0]]], dtype="<f4"),  # [T+1=2, N=1, 2]
            "actions": np.array([[1]], dtype="<i8"),
            "rewards": np.array([[1.0]], dtype="<f4"),
            "terminated": np.array([[True]]),
            "ep_returns": np.zeros(0, dtype="<f8"),
        },
    )
    frames = as_bytes(encode(msg))
    assert frames[0].hex() == GOLDEN_EXPERIENCE
    # Array frames are raw little-endian C-order bytes.
    assert [f.hex() for f in frames[1:]] == [
        "0000003f000080bf0000004000000000",
        "0100000000000000",
        "0000803f",
        "01",
        "",
    ]
    assert_same_message(decode([bytes.fromhex(GOLDEN_EXPERIENCE), *frames[1:]]), msg)
