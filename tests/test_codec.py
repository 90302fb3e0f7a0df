"""protocol.codec: round trips, pinned bytes, and one test per rejection reason."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
import zmq

from protocol.codec import DEFAULT_LIMITS, DecodeError, Limits, decode, encode
from protocol.messages import (
    DTYPES,
    MESSAGE_TYPES,
    SCHEMA_VERSION,
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


# --- rejections: every malformed input is a DecodeError with one specific reason ---


def pong_header(**changes) -> dict:
    header = {
        "v": SCHEMA_VERSION,
        "type": "pong",
        "fields": {"learner_id": "L", "version": 3, "held": [5]},
        "arrays": [],
    }
    header.update(changes)
    return header


def weights_header(layout: list, **changes) -> dict:
    return {
        "v": SCHEMA_VERSION,
        "type": "weights",
        "fields": {"learner_id": "L", "version": 1, **changes},
        "arrays": layout,
    }


def pack(header) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def reject(frames, reason: str, limits=DEFAULT_LIMITS) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(frames, limits)
    assert info.value.reason == reason, str(info.value)
    return info.value


def test_valid_pong_header_decodes():
    # The baseline every rejection below mutates must itself be accepted.
    pong = decode([pack(pong_header())])
    assert (pong.version, pong.held) == (3, [5])
    full = list(range(DEFAULT_LIMITS.list_len))  # as long as a list field may be
    assert (
        decode([pack(pong_header(fields={"learner_id": "L", "version": 3, "held": full}))]).held
        == full
    )
    assert decode([pack(weights_header([["w", "<f4", [2]]])), bytes(8)]).arrays["w"].shape == (2,)


def test_reject_no_frames():
    reject([], "no_frames")


def test_reject_header_too_large():
    header = pack(pong_header(fields={"learner_id": "x" * 4000, "version": 1, "held": []}))
    reject([header], "header_too_large", Limits(header_bytes=1024))
    reject([bytes(DEFAULT_LIMITS.header_bytes + 1)], "header_too_large")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"\x84\xa1v",  # truncated
        b"not msgpack at all",
        pack([1, "pong", {}, []]),  # not a map
        pack("pong"),
        pack(pong_header()) + b"\x00",  # trailing data
        pack({"v": SCHEMA_VERSION, "type": "pong", "fields": {}}),  # key missing
        pack({**pong_header(), "extra": 1}),  # key extra
        pack({b"v": SCHEMA_VERSION, b"type": "pong", b"fields": {}, b"arrays": []}),  # bytes keys
        pack(pong_header(fields=msgpack.ExtType(5, b"xx"))),  # ext type
        pack({1: 2}),  # non-str map key
        b"\x91" * 10_000 + b"\xc0",  # nested 10,000 deep
    ],
)
def test_reject_bad_header(raw):
    reject([raw], "bad_header")


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4, 5, 6, 7, 9, -1, True, 8.0, "8", None, [8]])
def test_reject_schema_version(version):
    reject([pack(pong_header(v=version))], "schema_version")


@pytest.mark.parametrize("type_name", ["ping", "", "Pong", 7, None, b"pong", ["pong"]])
def test_reject_unknown_type(type_name):
    reject([pack(pong_header(type=type_name))], "unknown_type")


@pytest.mark.parametrize(
    "fields",
    [
        {"learner_id": "L", "version": 3},  # missing (a schema-7 Pong)
        {"learner_id": "L", "version": 3, "held": [], "extra": 0},  # extra
        {"learner_id": "L", "version": 3, "held": [], b"extra": 0, "more": 1},  # bytes + str
        {"learner_id": 5, "version": 3, "held": []},  # wrong type
        {"learner_id": b"L", "version": 3, "held": []},  # bytes for str
        {"learner_id": "L", "version": "3", "held": []},
        {"learner_id": "L", "version": 3.0, "held": []},  # float for int
        {"learner_id": "L", "version": True, "held": []},  # bool for int
        {"learner_id": "L", "version": 2**63, "held": []},  # outside int64
        {"learner_id": "L", "version": None, "held": []},
        {"learner_id": "L", "version": 3, "held": 5},  # not a list
        {"learner_id": "L", "version": 3, "held": {"5": 5}},
        {"learner_id": "L", "version": 3, "held": [-1]},  # seqs are non-negative
        {"learner_id": "L", "version": 3, "held": [True]},
        {"learner_id": "L", "version": 3, "held": [1.0]},
        {"learner_id": "L", "version": 3, "held": ["1"]},
        {"learner_id": "L", "version": 3, "held": [[1]]},
        {"learner_id": "L", "version": 3, "held": [2**63]},
        [["learner_id", "L"], ["version", 3], ["held", []]],  # not a map
    ],
    ids=str,
)
def test_reject_bad_fields(fields):
    reject([pack(pong_header(fields=fields))], "bad_fields")


def test_reject_a_list_field_past_its_limit():
    held = list(range(DEFAULT_LIMITS.list_len + 1))
    fields = {"learner_id": "L", "version": 3, "held": held}
    reject([pack(pong_header(fields=fields))], "bad_header")  # msgpack's own array bound
    reject([pack(pong_header(fields=fields))], "bad_fields", Limits(list_len=8, arrays=1024))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "1.0", None])
def test_reject_bad_float_field(value):
    fields = {"actor_id": "a", "incarnation": "i", "hostname": "h", "pid": 1}
    header = {
        "v": SCHEMA_VERSION,
        "type": "hello",
        "fields": {**fields, "num_envs": 0, "temperature": value},
        "arrays": [],
    }
    reject([pack(header)], "bad_fields")


def test_int_accepted_for_float_and_bool_needs_bool():
    fields = {"actor_id": "a", "incarnation": "i", "hostname": "h", "pid": 1, "num_envs": 0}
    header = {
        "v": SCHEMA_VERSION,
        "type": "hello",
        "fields": {**fields, "temperature": 2},
        "arrays": [],
    }
    out = decode([pack(header)])
    assert out.temperature == 2.0 and type(out.temperature) is float
    error = {
        "v": SCHEMA_VERSION,
        "type": "error",
        "fields": {"code": "c", "detail": "d", "fatal": 1},
    }
    reject([pack({**error, "arrays": []})], "bad_fields")


@pytest.mark.parametrize(
    "layout",
    [
        {"w": ["<f4", [2]]},  # not a list
        [["w", "<f4"]],  # entry too short
        [["w", "<f4", [2], 0]],  # entry too long
        ["w"],
        [[7, "<f4", [2]]],  # name not a str
        [["", "<f4", [2]]],  # empty name
        [["w" * (DEFAULT_LIMITS.name_len + 1), "<f4", [2]]],
        [["w", "<f4", [1]], ["w", "<f4", [1]]],  # duplicate
    ],
    ids=str,
)
def test_reject_bad_arrays(layout):
    reject([pack(weights_header(layout)), bytes(8), bytes(8)], "bad_arrays")


def test_reject_arrays_on_a_type_without_arrays():
    reject([pack(pong_header(arrays=[["w", "<f4", [1]]])), bytes(4)], "bad_arrays")


@pytest.mark.parametrize(
    ("type_name", "fields", "name"),
    [
        ("experience", {}, "grad/x"),  # Experience has fixed names only
        ("experience", {}, "weights"),
        (
            "gradient",
            {"env_steps": 0, "policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0},
            "obs",
        ),
        (
            "gradient",
            {"env_steps": 0, "policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0},
            "grad/",
        ),
    ],
)
def test_reject_unknown_array(type_name, fields, name):
    rollout = {
        "actor_id": "a",
        "incarnation": "i",
        "seq": 0,
        "learner_id": "L",
        "policy_version": 0,
    }
    header = {
        "v": SCHEMA_VERSION,
        "type": type_name,
        "fields": {**rollout, **fields},
        "arrays": [[name, "<f4", [1]]],
    }
    reject([pack(header), bytes(4)], "unknown_array")


@pytest.mark.parametrize("dtype", ["|O", ">f4", "V8", "<u2", "<c8", "f4", "float32", 4, None])
def test_reject_bad_dtype(dtype):
    reject([pack(weights_header([["w", dtype, [1]]])), bytes(8)], "bad_dtype")


@pytest.mark.parametrize(
    "shape",
    [[-1], [2, -3], [True], [1, False], [1.0], ["2"], [None], [2**31], 2, "2", None, [1] * 9],
    ids=str,
)
def test_reject_bad_shape(shape):
    reject([pack(weights_header([["w", "<f4", shape]])), bytes(4)], "bad_shape")


def test_max_ndim_accepted():
    shape = [1] * DEFAULT_LIMITS.ndim
    out = decode([pack(weights_header([["w", "<f4", shape]])), bytes(4)])
    assert out.arrays["w"].shape == tuple(shape)


@pytest.mark.parametrize("extra_frames", [0, 1, 3])
def test_reject_frame_count(extra_frames):
    header = pack(weights_header([["a", "<f4", [1]], ["b", "<f4", [1]]]))
    reject([header, *[bytes(4)] * extra_frames], "frame_count")
    # A type without arrays must come alone.
    reject([pack(pong_header()), b""], "frame_count")


@pytest.mark.parametrize("size", [0, 7, 9, 16])
def test_reject_bad_size(size):
    reject([pack(weights_header([["w", "<f4", [2]]])), bytes(size)], "bad_size")


def test_reject_bad_size_second_array():
    header = pack(weights_header([["a", "|u1", [3]], ["b", "<i8", [0]]]))
    reject([header, bytes(3), bytes(1)], "bad_size")


def test_reject_too_many_arrays():
    n = DEFAULT_LIMITS.arrays + 1
    layout = [[f"w{i}", "|u1", [1]] for i in range(n)]
    reject([pack(weights_header(layout)), *[bytes(1)] * n], "too_many_arrays")


def test_reject_too_large():
    # Declared sizes are checked before any frame is looked at.
    reject([pack(weights_header([["w", "<f8", [2**30, 2**30]]]))], "too_large")
    half = DEFAULT_LIMITS.total_bytes // 2 + 1
    reject([pack(weights_header([["a", "|u1", [half]], ["b", "|u1", [half]]]))], "too_large")


def test_reject_frame_that_is_not_a_buffer():
    reject([12345], "bad_frame")
    reject([pack(weights_header([["w", "<f4", [1]]])), object()], "bad_frame")
