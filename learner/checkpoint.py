"""Atomic, periodic checkpoints for the learner.

A checkpoint is one ``torch.save`` file, ``<dir>/ckpt-<step:012d>.pt``, holding a plain dict:
model and optimizer state dicts, counters, RNG states, recent returns, config. It is written to
``.ckpt-<step>.<pid>.tmp`` in the same directory, fsynced and renamed, so a crash never leaves a
half-written file under a final name. Files are read back only with
``torch.load(weights_only=True)``: a checkpoint that needs pickled code to load is skipped,
never executed.

What this is not: it does not decide when to save (the learner does), and it does not build
models or restore state into them. It writes dicts and finds the newest one that loads.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

# 2: the run spec and resolved settings are stored (resume checks them); the network
# is an encoder plus a head, so parameter names differ from format 1.
FORMAT_VERSION = 2
_FINAL = re.compile(r"ckpt-(\d{12,})\.pt")
_NDARRAY = "__ndarray__"


class UnreadableCheckpoint(ValueError):
    """A checkpoint that does not load as a current-format dict with weights_only=True."""


class WarningLog(Protocol):  # a structlog logger, or any test double
    def warning(self, event: str, **kw: Any) -> Any: ...


@dataclass(frozen=True)
class CheckpointConfig:
    directory: Path
    """Where checkpoints live; created if missing."""
    keep: int = 3
    """How many of the newest checkpoints survive each save; older ones are deleted."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        if self.keep < 1:
            raise ValueError(f"keep must be >= 1 (got {self.keep}): 0 would delete every save")


def rng_state_to_plain(state: Any) -> Any:
    """numpy ``Generator.bit_generator.state`` -> a value ``weights_only`` loading accepts.

    PCG64 (numpy's default) state is strs and Python ints, which load fine even at 128 bits:
    it passes through unchanged. MT19937, Philox and SFC64 hold ndarrays, which weights_only
    refuses: each becomes ``{"__ndarray__": dtype, "data": list}``. ``save`` and
    ``load_latest`` apply this pair to "numpy_rng", so callers never see the plain form.
    """
    if isinstance(state, dict):
        return {k: rng_state_to_plain(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return {_NDARRAY: state.dtype.str, "data": state.tolist()}
    if isinstance(state, np.generic):
        return state.item()
    return state


def rng_state_from_plain(plain: Any) -> Any:
    """Inverse of ``rng_state_to_plain``; only integer arrays are rebuilt (RNG states are ints)."""
    if isinstance(plain, dict) and _NDARRAY in plain:
        dtype = np.dtype(plain[_NDARRAY])
        if dtype.kind not in "ui":
            raise ValueError(f"RNG state array has dtype {dtype}, expected an integer dtype")
        return np.array(plain["data"], dtype=dtype)
    if isinstance(plain, dict):
        return {k: rng_state_from_plain(v) for k, v in plain.items()}
    return plain


class Checkpointer:
    """Writes and finds checkpoints in one directory.

    The learner uses it like::

        ckpt = Checkpointer(CheckpointConfig(run_dir / "ckpt", keep=3))
        if (found := ckpt.load_latest(log=log)) is not None:
            model.load_state_dict(found[1]["model"]); ...
        while training:
            ...  # every N updates:
            ckpt.save({"model": model.state_dict(), ...}, step=counters["env_steps"])
    """

    def __init__(self, cfg: CheckpointConfig) -> None:
        self.cfg = cfg
        self.skipped: list[tuple[Path, str]] = []  # (path, reason) from the last load_latest
        cfg.directory.mkdir(parents=True, exist_ok=True)

    def clear_temp(self) -> list[Path]:
        """Remove what saves killed mid-write left (``.ckpt-*.tmp``); for the learner
        that owns the directory, at start-up only (a reader such as ``evaluate`` must
        not: the learner may be writing one). Returns what it removed."""
        stale = sorted(self.cfg.directory.glob(".ckpt-*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def list(self) -> list[Path]:
        """Final checkpoint files, newest (highest step) first; temp files are not listed."""
        found = [
            (int(m[1]), p)
            for p in self.cfg.directory.iterdir()
            if (m := _FINAL.fullmatch(p.name)) and p.is_file()
        ]
        return [p for _, p in sorted(found, reverse=True)]

    def save(self, state: dict, step: int) -> Path:
        """Write ``state`` as the checkpoint for ``step`` atomically, prune, return its path."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        state = {"format_version": FORMAT_VERSION, **state}
        if "numpy_rng" in state:
            state["numpy_rng"] = rng_state_to_plain(state["numpy_rng"])
        buf = io.BytesIO()
        torch.save(state, buf)
        # Refuse now, loudly, what a restart could not load (numpy scalars, custom classes,
        # a wrong format_version): found only at restart, it would cost the whole run.
        _read(io.BytesIO(buf.getbuffer()))

        final = self.cfg.directory / f"ckpt-{step:012d}.pt"
        tmp = self.cfg.directory / f".ckpt-{step}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)  # stale, from a crashed save by a process with our pid
        try:
            with open(tmp, "xb") as f:
                f.write(buf.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.cfg.directory)
        # Never prune the file just written, even below a higher step (a run resumed from an
        # older checkpoint because the newest was unreadable).
        for old in [p for p in self.list() if p != final][self.cfg.keep - 1 :]:
            old.unlink(missing_ok=True)
        return final

    def set_aside(self, path: Path) -> Path:
        """Rename an unreadable checkpoint out of the listing (kept for a post-mortem,
        never pruned, never read); returns its new path."""
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        return aside

    def load_latest(self, log: WarningLog | None = None) -> tuple[Path, dict] | None:
        """Newest checkpoint that loads, as (path, state) with tensors on CPU; None if none.

        Each one skipped is logged as ``checkpoint_unreadable`` and kept in ``self.skipped``.
        """
        self.skipped = []
        for path in self.list():
            try:
                return path, _read(path)
            except UnreadableCheckpoint as e:
                self.skipped.append((path, str(e)))
                if log is not None:
                    log.warning("checkpoint_unreadable", path=str(path), reason=str(e))
        return None


def read(path: Path) -> dict:
    """One checkpoint file, as ``load_latest`` reads it; ``UnreadableCheckpoint`` if it
    does not load."""
    return _read(Path(path))


def _read(src: Path | io.BytesIO) -> dict:
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, garbage, refused global, I/O: all mean "not this one"
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # torch's weights_only refusal names the offending global on a later line; show it.
        why = [ln for ln in lines if "Unsupported" in ln] or lines or [""]
        raise UnreadableCheckpoint(f"{type(e).__name__}: {why[0][:200]}") from e
    if not isinstance(state, dict):
        raise UnreadableCheckpoint(f"not a dict but {type(state).__name__}")
    if "format_version" not in state:
        raise UnreadableCheckpoint("missing format_version")
    if (version := state["format_version"]) != FORMAT_VERSION:
        raise UnreadableCheckpoint(f"format_version is {version!r:.40}, expected {FORMAT_VERSION}")
    if "numpy_rng" in state:
        try:
            state["numpy_rng"] = rng_state_from_plain(state["numpy_rng"])
        except (TypeError, ValueError, OverflowError) as e:
            raise UnreadableCheckpoint(f"numpy_rng: {e}") from e
    return state


def _fsync_dir(directory: Path) -> None:
    # A rename is durable only once the directory entry is; POSIX asks for an fsync of the dir.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Run-spec fields of checkpoints written before the network became one map (wire schema
# 6), and where they went.
_MODEL_FIELDS = ("encoder", "hidden", "obs_norm")


def stored_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's run spec as the current RunSpec reads it: an older one's network
    fields moved into its ``model`` map."""
    if "model" in spec or not any(k in spec for k in _MODEL_FIELDS):
        return spec
    rest = {k: v for k, v in spec.items() if k not in _MODEL_FIELDS}
    return {**rest, "model": {k: spec[k] for k in _MODEL_FIELDS if k in spec}}
