"""How a run ended: what the learner's loop returns and the summary reports. The rules
that end a run are learner/housekeeping.py's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    solved: bool
    reason: str
    confirmation: dict | None = None  # --confirm-episodes: the learner's own figures
