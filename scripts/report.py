"""Writing benchmark reports: the one markdown table formatter every script uses, the
machine lines, and the report files of a benchmark. No measuring and no log reading
here; see scripts/runlog.py for reading runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are written with ``str``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_lines(info: dict[str, Any]) -> str:
    """``runlog.machine_info()`` as a markdown list."""
    return "\n".join(f"- {k}: {v}" for k, v in info.items())


def write_report(out_dir: Path, title: str, body: str, results: dict) -> None:
    """``report.md`` (the title over ``body``) and ``results.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(f"# {title}\n\n{body}\n")
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
