"""Where the learner's figures go besides the JSON log: TensorBoard and the periodic
evaluation, shared by the networked learner and the serial mode.

    reporter = Reporter(log, tensorboard=TensorBoardWriter(...) or None,
                        evaluation=PeriodicEvaluation(...) or None)
    reporter.progress(fields, actor_steps={"host-1": 1234})   # logs ``progress`` too
    reporter.tick(wall_s, env_steps, weights)                  # often; cheap
    reporter.confirmation(fields, env_steps)                    # confirm.py's result
    reporter.close()
"""

from __future__ import annotations

from learner.playing import PeriodicEvaluation
from learner.tensorboard import TensorBoardWriter


class Reporter:
    def __init__(
        self,
        log,
        *,
        tensorboard: TensorBoardWriter | None = None,
        evaluation: PeriodicEvaluation | None = None,
    ) -> None:
        self.log, self.tensorboard, self.evaluation = log, tensorboard, evaluation
        self._actor_marks: dict[str, tuple[float, int]] = {}
        self._last_now: float | None = None

    def progress(self, fields: dict, now: float, actor_steps: dict[str, int] | None = None) -> None:
        """Log one ``progress`` event (``fields``) and write its scalars; with
        ``actor_steps`` (env steps so far per live actor), each actor's rate since the
        last call."""
        self.log.info("progress", **fields)
        if self.tensorboard is None:
            return
        self.tensorboard.progress(fields)
        if actor_steps is not None:
            rates = {}
            for actor_id, steps in actor_steps.items():
                # An actor new since the last event had no steps then (it joined since).
                t, before = self._actor_marks.get(actor_id, (self._last_now, 0))
                if t is not None and now > t:
                    rates[actor_id] = (steps - before) / (now - t)
            # Only live actors are kept: the marks stay as many as the actors.
            self._actor_marks = {a: (now, s) for a, s in actor_steps.items()}
            self.tensorboard.actors(rates, int(fields.get("env_steps", 0)))
        self._last_now = now

    def tick(self, wall_s: float, env_steps: int, weights) -> None:
        if self.evaluation is None:
            return
        done = self.evaluation.tick(wall_s, env_steps, weights)
        if done is not None and self.tensorboard is not None:
            self.tensorboard.evaluation(done)

    def confirmation(self, fields: dict, env_steps: int) -> None:
        """A finished confirmation's figures (learner/confirm.py logs them itself)."""
        if self.tensorboard is not None:
            self.tensorboard.confirmation(fields, env_steps)

    def close(self) -> None:
        if self.evaluation is not None:
            self.evaluation.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
