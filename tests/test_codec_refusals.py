"""protocol.codec's refusals: every malformed input is a DecodeError with one specific
reason, a test per reason (round trips and pinned bytes: tests/test_codec.py; random
input: tests/test_codec_fuzz.py)."""

from __future__ import annotations

import math

import msgpack
import pytest

from protocol.codec import DEFAULT_LIMITS, DecodeError, Limits, decode
from protocol.messages import (
    SCHEMA_VERSION,
)


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
