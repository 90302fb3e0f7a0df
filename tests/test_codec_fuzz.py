"""The decoder is total: for any frames it returns a Message or raises DecodeError.

Property-based (hypothesis) over raw bytes, over mutations of valid messages, and over
msgpack-valid headers of arbitrary shape. Anything else escaping ``decode`` (TypeError,
RecursionError, msgpack's own exceptions, MemoryError) is a failure.
"""

from __future__ import annotations

import math

import msgpack
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocol.codec import REASONS as CODEC_REASONS
from protocol.codec import DecodeError, decode, encode
from protocol.messages import DTYPES, MESSAGE_TYPES, SCHEMA_VERSION, Message

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The documented vocabulary; DecodeError refuses any other reason.
REASONS = CODEC_REASONS


def decode_totally(frames) -> Message | None:
    """decode(frames), asserting it either returns a Message or raises a DecodeError
    with a known reason. Any other exception propagates and fails the test."""
    try:
        msg = decode(frames)
    except DecodeError as exc:
        assert exc.reason in REASONS, exc.reason
        event(exc.reason)  # shown by --hypothesis-show-statistics
        return None
    assert isinstance(msg, Message)
    assert isinstance(msg, MESSAGE_TYPES[msg.TYPE])
    event("decoded")
    return msg


def assert_re_encodes(msg: Message) -> None:
    # Whatever decode accepts, encode can send again and decode accepts unchanged.
    again = decode([bytes(memoryview(f)) for f in encode(msg)])
    assert type(again) is type(msg)
    assert _same(again.scalar_fields(), msg.scalar_fields())
    for name, arr in getattr(msg, "arrays", {}).items():
        assert again.arrays[name].shape == arr.shape
        assert again.arrays[name].tobytes() == arr.tobytes()


def _same(a, b, depth: int = 0) -> bool:
    """Equal as decoded values, NaN equal to NaN (Welcome.run is an arbitrary map and may
    hold one; NaN != NaN), types included (True is not 1); bounded recursion."""
    if depth > 50 or type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], depth + 1) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y, depth + 1) for x, y in zip(a, b, strict=True))
    return a == b


# --- (a) arbitrary frames ---


@FUZZ
@given(st.lists(st.binary(max_size=4096), max_size=6))
def test_arbitrary_frames(frames):
    decode_totally(frames)


@FUZZ
@given(st.binary(max_size=512), st.lists(st.binary(max_size=64), max_size=4))
def test_arbitrary_frames_as_memoryviews_and_bytearrays(header, rest):
    decode_totally([memoryview(header), *map(bytearray, rest)])


# --- (b) mutations of valid messages ---


def _flip(frames, data):
    i = data.draw(st.integers(0, len(frames) - 1))
    f = bytearray(frames[i])
    if f:
        j = data.draw(st.integers(0, len(f) - 1))
        f[j] ^= data.draw(st.integers(1, 255))
    frames[i] = bytes(f)


def _insert(frames, data):
    f = frames[0]
    j = data.draw(st.integers(0, len(f)))
    frames[0] = f[:j] + data.draw(st.binary(min_size=1, max_size=8)) + f[j:]


def _delete(frames, data):
    f = frames[0]
    j = data.draw(st.integers(0, len(f)))
    k = data.draw(st.integers(j, min(len(f), j + 8)))
    frames[0] = f[:j] + f[k:]


# fixint, fixmap, fixarray, fixstr, nil, never-used, false, true, bin8, float32/64,
# uint64, int64, fixext1, array16, map16, negative fixint.
TYPE_BYTES = list(bytes.fromhex("007f8090a0c0c1c2c3c4cacbcfd3d4dcdeff"))


def _set_header_byte(frames, data):
    # Replace one header byte with an interesting msgpack type byte.
    f = bytearray(frames[0])
    if not f:
        return
    j = data.draw(st.integers(0, len(f) - 1))
    f[j] = data.draw(st.sampled_from(TYPE_BYTES))
    frames[0] = bytes(f)


def _truncate(frames, data):
    i = data.draw(st.integers(0, len(frames) - 1))
    frames[i] = frames[i][: data.draw(st.integers(0, max(0, len(frames[i]) - 1)))]


def _extend(frames, data):
    i = data.draw(st.integers(0, len(frames) - 1))
    frames[i] = frames[i] + data.draw(st.binary(min_size=1, max_size=16))


def _drop(frames, data):
    del frames[data.draw(st.integers(0, len(frames) - 1))]


def _duplicate(frames, data):
    i = data.draw(st.integers(0, len(frames) - 1))
    frames.insert(data.draw(st.integers(0, len(frames))), frames[i])


def _swap(frames, data):
    i = data.draw(st.integers(0, len(frames) - 1))
    j = data.draw(st.integers(0, len(frames) - 1))
    frames[i], frames[j] = frames[j], frames[i]


MUTATIONS = [
    _flip,
    _insert,
    _delete,
    _set_header_byte,
    _truncate,
    _extend,
    _drop,
    _duplicate,
    _swap,
]


@FUZZ
@given(data=st.data())
def test_mutated_valid_messages(sample_messages, data):
    msg = data.draw(st.sampled_from(sample_messages), label="message")
    frames = [bytes(memoryview(f)) for f in encode(msg)]
    for mutation in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        if not frames:
            break
        mutation(frames, data)
    out = decode_totally(frames)
    if out is not None:
        assert_re_encodes(out)


# --- (c) msgpack-valid headers of any shape ---

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.binary(max_size=12)
)
keys = st.text(max_size=8) | st.binary(max_size=4)
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=24,
)


def _shapes():
    plausible = st.lists(st.integers(0, 4), max_size=3)
    return plausible | st.lists(st.integers(-(2**40), 2**40) | st.booleans(), max_size=10) | values


def _layouts():
    # A list of arbitrary items (right or wrong length for an entry).
    entry = st.lists(
        st.sampled_from(["obs", "rewards", "w", "grad/w", "ep_returns", "", "grad/", "<f4"])
        | values,
        max_size=4,
    )
    good = st.tuples(
        st.sampled_from(["obs", "actions", "rewards", "valid", "ep_lengths", "w", "grad/w"])
        | st.text(max_size=6),
        st.sampled_from(sorted(DTYPES)) | st.sampled_from(["|O", ">f4", "V8", "<u2"]) | values,
        _shapes(),
    ).map(list)
    return st.lists(good | good | good | entry | values, max_size=5) | values


TYPED = {
    str: st.text(max_size=8),
    int: st.integers(-(2**63), 2**63 - 1),
    float: st.floats(allow_nan=True, allow_infinity=True),
    bool: st.booleans(),
    dict: st.dictionaries(st.text(max_size=4), values, max_size=3),
    # Pong.held: seqs, with the occasional bad item (negative, too big, not an int).
    list: st.lists(
        st.integers(0, 2**63 - 1) | st.integers(-5, -1) | st.just(2**63) | st.booleans(),
        max_size=4,
    ),
}


@st.composite
def _fields(draw, cls):
    """Fields of the right names and types, then at most one corruption."""
    fields = {name: draw(TYPED[typ]) for name, typ in cls.FIELDS.items()}
    corruption = draw(st.sampled_from(["none", "none", "drop", "add", "retype"]))
    if corruption == "drop" and fields:
        del fields[draw(st.sampled_from(sorted(fields)))]
    elif corruption == "add":
        fields[draw(keys)] = draw(values)
    elif corruption == "retype" and fields:
        fields[draw(st.sampled_from(sorted(fields)))] = draw(values)
    return fields


@st.composite
def headers(draw):
    """A header map: usually the right keys with plausible contents, sometimes any value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    type_name = draw(st.sampled_from(sorted(MESSAGE_TYPES)) | values)
    cls = MESSAGE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is not None and draw(st.integers(0, 3)) > 0:
        fields = draw(_fields(cls))
    else:
        names = sorted(cls.FIELDS) if cls else ["x"]
        keys_ = st.sampled_from(names) | keys
        fields = draw(st.dictionaries(keys_, values, max_size=len(names) + 1) | values)
    version = 1
    if draw(st.integers(0, 9)) == 0:
        version = draw(st.sampled_from([0, 2, True, 1.0, "1"]) | values)
    header = {"v": version, "type": type_name, "fields": fields, "arrays": draw(_layouts())}
    if draw(st.integers(0, 9)) == 0:
        header[draw(keys)] = draw(values)
    return header


def _frames_for(layout, data) -> list[bytes]:
    # Array frames of the declared size where the declaration makes sense, so the
    # later checks (frame count, size) are reached too.
    frames = []
    for entry in layout if isinstance(layout, list) else []:
        size = 4
        if (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[1], str)
            and entry[1] in DTYPES
        ):
            shape = entry[2]
            if isinstance(shape, list) and all(type(d) is int and 0 <= d <= 64 for d in shape):
                size = math.prod(shape) * np.dtype(entry[1]).itemsize
        frames.append(bytes(size + data.draw(st.sampled_from([0, 0, 0, 1, -1]))) if size else b"")
    return frames


@FUZZ
@given(header=headers(), data=st.data())
def test_msgpack_valid_headers(header, data):
    raw = msgpack.packb(header, use_bin_type=True)
    frames = [raw, *_frames_for(header.get("arrays") if isinstance(header, dict) else None, data)]
    if data.draw(st.booleans()):
        frames += data.draw(st.lists(st.binary(max_size=16), max_size=2))
    out = decode_totally(frames)
    if out is not None:
        assert_re_encodes(out)


@FUZZ
@given(fields=st.dictionaries(st.text(max_size=8) | st.binary(max_size=4), values, max_size=8))
def test_field_maps_with_mixed_key_types(fields):
    # str and bytes keys together once made the error message itself raise TypeError.
    for type_name in ("hello", "welcome", "gradient", "error"):
        header = {"v": SCHEMA_VERSION, "type": type_name, "fields": fields, "arrays": []}
        decode_totally([msgpack.packb(header, use_bin_type=True)])


def _raw_welcome(run: bytes) -> bytes:
    def p(x):
        return msgpack.packb(x, use_bin_type=True)

    fields = {"learner_id": "L", "pub_port": 1, "temperature": 1.0, "seed": 0}
    body = b"".join(p(k) + p(v) for k, v in fields.items())
    top = [p("v"), p(SCHEMA_VERSION), p("type"), p("welcome"), p("fields")]
    # map of 4 keys; "fields" is a map of 5 whose last value is ``run``; "arrays" is [].
    return b"".join([b"\x84", *top, b"\x85", body, p("run"), run, p("arrays"), b"\x90"])


def test_deeply_nested_header_is_a_decode_error():
    depth = 10_000
    for raw in (
        b"\x91" * depth + b"\xc0",  # [[[...None...]]]
        b"\x81\xa1k" * depth + b"\xc0",  # {"k": {"k": ...}}
        _raw_welcome(b"\x81\xa1k" * depth + b"\xc0"),  # deep inside a field
    ):
        try:
            decode([raw])
        except DecodeError as exc:
            assert exc.reason == "bad_header"
        else:
            raise AssertionError("a 10,000-deep header decoded")


def test_raw_welcome_helper_builds_a_valid_message():
    # The helper above is itself correct: with a shallow run map it decodes.
    msg = decode([_raw_welcome(msgpack.packb({"env_id": "x"}))])
    assert msg.TYPE == "welcome" and msg.run == {"env_id": "x"}
