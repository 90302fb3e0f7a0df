"""How a run ends: the stopping rules the networked learner and the serial mode share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from learner.config import LearnerConfig
from learner.stats import RunStats


@dataclass
class Outcome:
    solved: bool
    reason: str


def stopping_rule(
    cfg: LearnerConfig,
    stats: RunStats,
    target: float | None,
    wall_s: float,
    *,
    started: bool,
    stop_requested: Callable[[], bool],
) -> Outcome | None:
    """The outcome if a rule says stop now, else None. ``started``: training has begun
    (the --max-seconds clock runs from the first actor's join)."""
    if stats.solved(target):
        return Outcome(True, "solved")
    if stop_requested():
        return Outcome(False, "signal")
    if cfg.max_env_steps and stats.env_steps >= cfg.max_env_steps:
        return Outcome(False, "max_env_steps")
    if cfg.max_seconds and started and wall_s >= cfg.max_seconds:
        return Outcome(False, "max_seconds")
    return None
