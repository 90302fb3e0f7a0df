"""What the learner's loop does every so often, whatever feeds it: progress events,
milestones, periodic checkpoints, evaluation ticks and the stopping rules. The networked
loop (server.py) and the serial one (serial.py) share it, so a run stops, reports and
checkpoints by the same rules in both. No sockets, no torch; times are passed in.

    house = Housekeeping(cfg, stats, reporter, target=..., confirm=..., ...)
    loop:
        ... take in rollouts, train ...
        house.after_intake(wall_s)                  # a milestone reached? (log it)
        house.tick(now, wall_s, fields, per_actor)  # evaluation; progress when due
        if house.checkpoint_due(wall_s): (let updates finish) save; house.checkpointed(wall_s)
        outcome = house.stop(wall_s, started)       # None: go on
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from learner.config import LearnerConfig
from learner.confirm import SolveConfirmation
from learner.outcome import Outcome
from learner.reporting import Reporter
from learner.stats import RunStats

Latest = Callable[[], tuple[int, Mapping[str, np.ndarray]]]  # (version, weights)

HOUSEKEEPING_S = 0.1  # evaluation ticks and the lost-actor sweep, at most this often


class Housekeeping:
    def __init__(
        self,
        cfg: LearnerConfig,
        stats: RunStats,
        reporter: Reporter,
        log,
        *,
        target: float | None,
        latest: Latest,
        stop_requested: Callable[[], bool],
        confirm: SolveConfirmation | None = None,
        checkpoint_from_s: float = 0.0,
    ) -> None:
        self.cfg, self.stats, self.reporter, self.log = cfg, stats, reporter, log
        self.target = target
        self.latest = latest  # the newest weights: what evaluation and confirmation play
        self.stop_requested = stop_requested
        self.confirm = confirm
        # Not yet reached: a resumed run's restored window may have passed some, which
        # the run before logged already.
        self.milestones = [m for m in sorted(cfg.milestones) if not stats.solved(m)]
        self._next_progress: float | None = None
        self._last_checkpoint = checkpoint_from_s  # run seconds at the last checkpoint

    def after_intake(self, wall_s: float) -> None:
        """Log each --milestones return the actors' window has reached."""
        while self.milestones and self.stats.solved(self.milestones[0]):
            self.log.info(
                "return_reached",
                threshold=self.milestones.pop(0),
                env_steps=self.stats.env_steps,
                episodes=self.stats.episodes,
                updates=self.stats.updates,
                wall_s=round(wall_s, 3),
            )

    def tick(
        self,
        now: float,
        wall_s: float,
        fields: Callable[[], dict],
        actor_steps: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """Evaluation's turn, and the ``progress`` event when one is due: the run's
        figures plus ``fields()`` (the loop's own: actors, version, ...);
        ``actor_steps()``: env steps so far per live actor, for per-actor rates."""
        self.reporter.tick(wall_s, self.stats.env_steps, self.latest)
        if self._next_progress is not None and now < self._next_progress:
            return
        self._next_progress = now + self.cfg.log_interval_s
        event = {**self.stats.progress(now, wall_s), **fields()}
        self.reporter.progress(event, now, None if actor_steps is None else actor_steps())

    def checkpoint_due(self, wall_s: float) -> bool:
        every = self.cfg.checkpoint_every_s
        return bool(every) and wall_s - self._last_checkpoint >= every

    def checkpointed(self, wall_s: float) -> None:
        self._last_checkpoint = wall_s

    def stop(self, wall_s: float, *, started: bool) -> Outcome | None:
        """The outcome if a rule says stop now, else None. ``started``: training has
        begun (the --max-seconds clock runs from the first actor's join). Solved rests
        only on the returns the learner derived (learner/episodes.py), and with
        --confirm-episodes also on episodes it played itself."""
        solved = self.stats.solved(self.target)
        if self.confirm is None:
            if solved:
                return Outcome(True, "solved")
        elif (confirmed := self.confirm.judge(solved, self.stats, self.latest)) is not None:
            return confirmed
        if self.stop_requested():
            return Outcome(False, "signal")
        cfg = self.cfg
        if cfg.max_env_steps and self.stats.env_steps >= cfg.max_env_steps:
            return Outcome(False, "max_env_steps")
        if cfg.max_seconds and started and wall_s >= cfg.max_seconds:
            return Outcome(False, "max_seconds")
        return None
