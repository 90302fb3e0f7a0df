"""Messages to ZeroMQ frames and back.

``encode`` returns a list of frames: a msgpack header, then one raw buffer per array
(numpy arrays themselves, so pyzmq sends them without a copy). ``decode`` is total:
for any list of byte strings it returns a message or raises ``DecodeError`` with a
short machine-readable ``reason``, in time and memory bounded by the input size and
``Limits``. It never unpickles and never calls ``repr`` on a payload.

Content checks that need the run's settings (shapes, action range, finite values) are
in checks.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from protocol.messages import (
    DTYPES,
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    ArrayMessage,
    Message,
    array_name_allowed,
    carries_arrays,
)

# Every reason a DecodeError can carry: the vocabulary a peer implementation and the
# learner's logs share (message_rejected reason=...).
REASONS = frozenset(
    {
        "no_frames",
        "bad_frame",
        "header_too_large",
        "bad_header",
        "schema_version",
        "unknown_type",
        "bad_fields",
        "bad_arrays",
        "too_many_arrays",
        "unknown_array",
        "bad_dtype",
        "bad_shape",
        "too_large",
        "frame_count",
        "bad_size",
    }
)


class DecodeError(ValueError):
    """A received message is not a valid message of this protocol."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:  # a programming error here, never input-dependent
            raise AssertionError(f"undocumented decode reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    header_bytes: int = 64 * 1024
    arrays: int = 256
    ndim: int = 8
    name_len: int = 128
    str_len: int = 4096
    list_len: int = 1024  # items of a list field
    # The whole message; the socket's MAXMSGSIZE bounds each frame before this runs.
    total_bytes: int = 256 * 1024 * 1024


DEFAULT_LIMITS = Limits()


def _scalar(value: Any) -> Any:
    # msgpack refuses numpy scalars; convert rather than fail at send time.
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode(msg: Message) -> list:
    """Frames for ``msg``: header bytes, then the arrays (C-contiguous, whitelisted)."""
    arrays: list[np.ndarray] = []
    layout: list[list] = []
    if isinstance(msg, ArrayMessage):
        for name, arr in msg.arrays.items():
            # Not np.ascontiguousarray: it promotes a 0-d array to shape (1,), so a scalar
            # array would come back with the wrong shape.
            a = np.asarray(arr, order="C")
            if a.dtype.str not in DTYPES:
                raise ValueError(f"array {name!r}: dtype {a.dtype.str} is not allowed on the wire")
            layout.append([name, a.dtype.str, list(a.shape)])
            arrays.append(a)
    header = {
        "v": SCHEMA_VERSION,
        "type": msg.TYPE,
        "fields": {k: _scalar(v) for k, v in msg.scalar_fields().items()},
        "arrays": layout,
    }
    return [msgpack.packb(header, use_bin_type=True), *arrays]


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError("bad_header", f"msgpack ext type {code} is not allowed")


def _buffer(frame: Any) -> memoryview:
    # zmq.Frame (copy=False receive) exposes .buffer; bytes/memoryview come as they are.
    buf = getattr(frame, "buffer", frame)
    try:
        view = memoryview(buf)
        # memoryview.cast refuses any view with a 0 in its shape, so an empty array
        # passed in-process (decode(encode(msg)) with K = 0 episodes) needs its own case.
        if view.nbytes == 0 and view.c_contiguous:
            return memoryview(b"")
        return view.cast("B")
    except TypeError as exc:  # not a buffer, or a non-contiguous one
        raise DecodeError("bad_frame", "frame is not a byte buffer") from exc


def _unpack_header(raw: memoryview, limits: Limits) -> dict:
    if len(raw) > limits.header_bytes:
        raise DecodeError("header_too_large", f"{len(raw)} bytes")
    try:
        header = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            ext_hook=_reject_ext,
            max_str_len=limits.str_len,
            max_bin_len=limits.header_bytes,
            max_array_len=max(limits.arrays * 2, limits.list_len),
            max_map_len=limits.arrays * 2,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types; all mean "bad header"
        raise DecodeError("bad_header", type(exc).__name__) from None
    if not isinstance(header, dict):
        raise DecodeError("bad_header", "header is not a map")
    return header


def _check_fields(cls: type[Message], fields: Any, limits: Limits) -> dict:
    if not isinstance(fields, dict):
        raise DecodeError("bad_fields", "fields is not a map")
    expected = cls.FIELDS
    missing = expected.keys() - fields.keys()
    extra = fields.keys() - expected.keys()
    if missing or extra:
        # Keys may be str or bytes (msgpack bin): sorting a mix raises TypeError, so
        # sort their str() forms.
        raise DecodeError(
            "bad_fields",
            f"missing {sorted(missing)[:8]} unexpected {sorted(map(str, extra))[:8]}",
        )
    out = {}
    for name, typ in expected.items():
        value = fields[name]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        # bool is an int subclass: an int field must not accept True, nor bool accept 1.
        ok = isinstance(value, typ) and (typ is bool or not isinstance(value, bool))
        if not ok:
            raise DecodeError("bad_fields", f"{name} must be {typ.__name__}")
        if typ is float and not math.isfinite(value):
            raise DecodeError("bad_fields", f"{name} is not finite")
        if typ is int and not -(2**63) <= value < 2**63:
            raise DecodeError("bad_fields", f"{name} out of range")
        if typ is list:  # a list field is a list of non-negative ints (seqs)
            if len(value) > limits.list_len:
                raise DecodeError("bad_fields", f"{name} longer than {limits.list_len}")
            if not all(
                isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**63 for x in value
            ):
                raise DecodeError("bad_fields", f"{name} must hold non-negative ints")
        out[name] = value
    return out


def _check_layout(cls: type[Message], layout: Any, limits: Limits) -> list[tuple]:
    if not isinstance(layout, list):
        raise DecodeError("bad_arrays", "arrays is not a list")
    if layout and not carries_arrays(cls):
        raise DecodeError("bad_arrays", f"{cls.TYPE} carries no arrays")
    if len(layout) > limits.arrays:
        raise DecodeError("too_many_arrays", str(len(layout)))
    seen: set[str] = set()
    out = []
    total = 0
    for entry in layout:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise DecodeError("bad_arrays", "array entry is not [name, dtype, shape]")
        name, dtype, shape = entry
        if not isinstance(name, str) or not name or len(name) > limits.name_len:
            raise DecodeError("bad_arrays", "array name")
        if name in seen:
            raise DecodeError("bad_arrays", f"duplicate array {name!r}")
        seen.add(name)
        if not array_name_allowed(cls, name):
            raise DecodeError("unknown_array", f"{cls.TYPE} has no array {name[:64]!r}")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise DecodeError("bad_dtype", f"{name}: dtype not allowed")
        if not isinstance(shape, list) or len(shape) > limits.ndim:
            raise DecodeError(
                "bad_shape", f"{name}: shape must be a list of at most {limits.ndim} dims"
            )
        if not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape
        ):
            raise DecodeError("bad_shape", f"{name}: dims must be ints in [0, 2**31)")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        total += nbytes
        if total > limits.total_bytes:
            raise DecodeError("too_large", f"arrays declare more than {limits.total_bytes} bytes")
        out.append((name, np.dtype(dtype), tuple(shape), nbytes))
    return out


def decode(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> Message:
    """The message these frames encode, or ``DecodeError``. Arrays are read-only views
    of the frames (no copy)."""
    if not frames:
        raise DecodeError("no_frames")
    header = _unpack_header(_buffer(frames[0]), limits)
    if header.keys() != {"v", "type", "fields", "arrays"}:
        raise DecodeError("bad_header", "header keys must be v, type, fields, arrays")
    version = header["v"]
    # Exactly an int: True and 1.0 both compare equal to 1 but are not a schema version.
    if type(version) is not int or version != SCHEMA_VERSION:
        raise DecodeError(
            "schema_version",
            f"got {version if isinstance(version, int) else '?'}, expected {SCHEMA_VERSION}",
        )
    type_name = header["type"]
    cls = MESSAGE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise DecodeError("unknown_type", type_name[:64] if isinstance(type_name, str) else "")
    fields = _check_fields(cls, header["fields"], limits)
    layout = _check_layout(cls, header["arrays"], limits)
    if len(frames) != 1 + len(layout):
        raise DecodeError("frame_count", f"{len(frames) - 1} array frames for {len(layout)} arrays")
    if not carries_arrays(cls):
        return cls(**fields)
    arrays = {}
    for (name, dtype, shape, nbytes), frame in zip(layout, frames[1:], strict=True):
        buf = _buffer(frame)
        if len(buf) != nbytes:
            raise DecodeError("bad_size", f"{name}: {len(buf)} bytes, shape needs {nbytes}")
        arrays[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return cls(arrays=arrays, **fields)
