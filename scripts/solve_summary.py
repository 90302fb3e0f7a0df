"""The pure half of ``make bench-solve`` (scripts/bench_solve.py runs the systems):
medians that count an unsolved run as infinitely slow, the per-system summary with
failed runs apart, the speed-up over the best peer, and the markdown table. No
processes, no trainer imports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from scripts.report import markdown_table

OURS = "ours"


def median(values: Iterable[float | None]) -> float | None:
    """Median with None (not solved) counted as +inf; None for no values or an
    infinite median."""
    xs = sorted(math.inf if v is None else float(v) for v in values)
    if not xs:
        return None
    mid = len(xs) // 2
    m = xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
    return None if math.isinf(m) else m


FAILED = "failed"


def summarize(runs: Sequence[dict]) -> dict[str, dict]:
    """Per system (in first-seen order): seeds, wall_s and env_steps per seed (None
    when not solved, FAILED when the run failed), their medians over the runs that did
    not fail, solved and failed counts."""
    out: dict[str, dict] = {}
    for r in runs:
        s = out.setdefault(
            r["system"], {"seeds": [], "wall_s": [], "env_steps": [], "solved": 0, "failed": 0}
        )
        s["seeds"].append(r["seed"])
        failed = bool(r.get("error"))
        s["wall_s"].append(FAILED if failed else r["wall_s"] if r["solved"] else None)
        s["env_steps"].append(FAILED if failed else r["env_steps"] if r["solved"] else None)
        s["solved"] += bool(r["solved"]) and not failed
        s["failed"] += failed
    for s in out.values():
        s["n"] = len(s["seeds"])
        s["median_wall_s"] = median(v for v in s["wall_s"] if v != FAILED)
        s["median_env_steps"] = median(v for v in s["env_steps"] if v != FAILED)
    return out


def speedup(summary: dict[str, dict], ours: str = OURS) -> dict[str, Any] | None:
    """Best peer's median wall clock / ours (> 1: ours is faster). None when ours or
    every peer has no finite median, or when any system had a failed run (a peer that
    crashed must not drop out of the comparison unseen)."""
    if any(s.get("failed") for s in summary.values()):
        return None
    mine = summary.get(ours, {}).get("median_wall_s")
    peers = {k: v["median_wall_s"] for k, v in summary.items() if k != ours}
    peers = {k: v for k, v in peers.items() if v is not None}
    if mine is None or not peers:
        return None
    best = min(peers, key=peers.__getitem__)
    return {
        "best_peer": best,
        "peer_median_s": peers[best],
        "ours_median_s": mine,
        "ratio": peers[best] / mine,
    }


def _fmt(v: float | str | None, digits: int = 1) -> str:
    if v is None:
        return "—"
    if v == FAILED:
        return FAILED
    return f"{v:.{digits}f}"


def solve_table(summary: dict[str, dict]) -> str:
    rows = []
    for name, s in summary.items():
        rows.append(
            [
                name,
                ", ".join(_fmt(v) for v in s["wall_s"]),
                _fmt(s["median_wall_s"], 2),
                ", ".join(_fmt(v, 0) for v in s["env_steps"]),
                _fmt(s["median_env_steps"], 0),
                f"{s['solved']}/{s['n']}" + (f" ({s['failed']} failed)" if s["failed"] else ""),
            ]
        )
    header = [
        "system",
        "wall s per seed",
        "median wall s",
        "env steps per seed",
        "median env steps",
        "solved",
    ]
    return markdown_table(header, rows)


def speedup_line(sp: dict[str, Any] | None) -> str:
    if sp is None:
        return "Speed-up: not defined (a run failed, or ours or every peer has no finite median)."
    return (
        f"Speed-up in median wall clock to solve: {sp['ratio']:.2f}x "
        f"({sp['best_peer']} {sp['peer_median_s']:.2f} s / ours {sp['ours_median_s']:.2f} s)."
    )
