"""How a run ends: the stopping rules the networked learner and the serial mode share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from learner.config import LearnerConfig
from learner.stats import RunStats

if TYPE_CHECKING:
    from learner.confirm import SolveConfirmation, WeightsFn


@dataclass
class Outcome:
    solved: bool
    reason: str
    confirmation: dict | None = None  # --confirm-episodes: the learner's own figures


def stopping_rule(
    cfg: LearnerConfig,
    stats: RunStats,
    target: float | None,
    wall_s: float,
    *,
    started: bool,
    stop_requested: Callable[[], bool],
    confirm: SolveConfirmation | None = None,
    weights: WeightsFn | None = None,
) -> Outcome | None:
    """The outcome if a rule says stop now, else None. ``started``: training has begun
    (the --max-seconds clock runs from the first actor's join). Solved rests only on the
    returns the learner derived (learner/episodes.py), and with ``confirm`` also on
    episodes it played itself (``weights``: the policy to play, read only then)."""
    if confirm is None:
        if stats.solved(target):
            return Outcome(True, "solved")
    elif (confirmed := confirm.judge(stats.solved(target), stats, weights)) is not None:
        return confirmed
    if stop_requested():
        return Outcome(False, "signal")
    if cfg.max_env_steps and stats.env_steps >= cfg.max_env_steps:
        return Outcome(False, "max_env_steps")
    if cfg.max_seconds and started and wall_s >= cfg.max_seconds:
        return Outcome(False, "max_seconds")
    return None
