"""Reading what a learner run leaves behind: ``learner.jsonl`` and ``summary.json``.

Small pure functions over the list of events (one dict per JSON line), so every
script that reports on runs reads them the same way. No plotting, no statistics
across runs here; see scripts/compare.py for those.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

# The columns of a progress series, in the order they are written out.
PROGRESS_FIELDS = (
    "wall_s",
    "env_steps",
    "episodes",
    "updates",
    "steps_per_s",
    "mean_return_100",
    "return_std_100",
    "grad_norm",
    "grad_norm_max",
    "policy_lag_min",
    "policy_lag_mean",
    "policy_lag_max",
    "dropped_stale",
    "policy_loss",
    "value_loss",
    "entropy",
    "actors",
    "version",
)
SUMMARY_FIELDS = ("solved", "wall_s", "env_steps", "episodes", "updates", "mean_return_100")
MILESTONE_FIELDS = ("env_steps", "episodes", "updates", "wall_s")


def parse_events(lines: Iterable[str]) -> list[dict]:
    """One dict per JSON object line. Blank lines and lines that do not parse are
    skipped: a process killed mid-write leaves a torn last line."""
    events = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def event_time(event: dict) -> float:
    """An event's ``timestamp`` (structlog's ISO 8601, UTC) as seconds since the epoch."""
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def read_events(path: Path) -> list[dict]:
    """The events of a JSONL log; [] if the file does not exist (the run never logged)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8", errors="replace") as f:
        return parse_events(f)


def named(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e.get("event") == name]


def progress_series(events: list[dict]) -> dict[str, list]:
    """The ``progress`` events as columns: ``{field: [value per event]}``, None where an
    event lacks the field or logged null (no batch, or too few episodes, in that interval)."""
    rows = named(events, "progress")
    return {k: [row.get(k) for row in rows] for k in PROGRESS_FIELDS}


def milestones(events: list[dict]) -> dict[float, dict]:
    """``{threshold: {env_steps, episodes, updates, wall_s}}`` from the ``return_reached``
    events; the first event wins if a threshold was logged twice (e.g. after a resume)."""
    out: dict[float, dict] = {}
    for e in named(events, "return_reached"):
        threshold = float(e["threshold"])
        if threshold not in out:
            out[threshold] = {k: e.get(k) for k in MILESTONE_FIELDS}
    return out


def finished(events: list[dict]) -> dict | None:
    """The last ``run_finished`` event (reason plus the summary fields), or None."""
    found = named(events, "run_finished")
    return found[-1] if found else None


def learner_config(events: list[dict]) -> dict | None:
    """The settings the learner logged at start (``learner_config``), or None."""
    found = named(events, "learner_config")
    if not found:
        return None
    return {k: v for k, v in found[0].items() if k not in ("event", "level", "timestamp", "role")}


def read_summary(run_dir: Path) -> dict | None:
    """``summary.json`` of a run, or None if it is missing or unreadable (crash, kill)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) else None


def summary_from_events(events: list[dict]) -> dict:
    """The summary numbers of a run with no ``summary.json``: from ``run_finished`` if it
    got that far, else from its last progress event, never solved."""
    done = finished(events)
    if done is not None:
        return {k: done.get(k) for k in SUMMARY_FIELDS}
    progress = named(events, "progress")
    last = progress[-1] if progress else {}
    return {"solved": False, **{k: last.get(k) for k in SUMMARY_FIELDS if k != "solved"}}


def machine_info() -> dict:
    """What a benchmark report must say about where it ran (one definition for every
    script in scripts/)."""
    cpu = platform.processor() or platform.machine() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "numpy", "gymnasium", "pyzmq", "stable-baselines3"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        **versions,
    }
