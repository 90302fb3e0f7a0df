"""``--confirm-episodes K``: the learner sees a "solved" with its own eyes before it ends
a run on it.

The returns the stopping rule reads are derived from the data actors send
(learner/episodes.py), so an actor cannot claim episodes its flags do not show; but the
rewards themselves are the actor's word. With K > 0, when the rule says solved the
learner plays K episodes of that policy in its own env (learner/playing.py), on a thread so
that actors are still answered meanwhile, and ends the run only if their mean reaches
the target as well. Otherwise it logs ``solve_not_confirmed`` and trains on; it asks
again after another ``WINDOW`` episodes.

    confirm = SolveConfirmation(spec, episodes=10, target=475.0, seed=1, log=log)
    outcome = confirm.judge(rule_says_solved, stats, weights=lambda: (version, weights))
    # None: not (yet) confirmed; the weights are read only when a confirmation starts
    confirm.close()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from learner.outcome import Outcome
from learner.playing import BackgroundPlay
from learner.stats import WINDOW, RunStats
from protocol.spec import RunSpec

WeightsFn = Callable[[], tuple[int, Mapping[str, np.ndarray]]]


class SolveConfirmation:
    def __init__(
        self,
        spec: RunSpec,
        *,
        episodes: int,
        target: float,
        seed: int,
        log,
        report: Callable[[dict, int], None] | None = None,
    ) -> None:
        self.episodes, self.target, self.seed, self.log = episodes, target, seed, log
        self.report = report  # (figures, env steps): TensorBoard (learner/reporting.py)
        self.player = BackgroundPlay(spec, name="confirm-solved")
        self._version = -1
        self._mean_at_start: float | None = None
        self._retry_after = 0  # run episodes before which no new confirmation starts
        self.attempts = 0
        self.last: dict | None = None  # the latest finished confirmation's figures

    def summary(self) -> dict:
        """What summary.json says of the learner's own evidence, apart from the actors'
        figure (``mean_return_100``): the attempts, and the latest one's figures."""
        return {"confirm_attempts": self.attempts, **(self.last or {})}

    def judge(self, solved: bool, stats: RunStats, weights: WeightsFn) -> Outcome | None:
        """``solved``: the stopping rule says so now; ``weights``: the policy to play
        (version, arrays). Returns the solved outcome once a confirmation passes; None
        while one runs, after one fails, or when not solved."""
        if self.player.running:
            result = self.player.poll()
            return None if result is None else self._conclude(result, stats)
        if solved and stats.episodes >= self._retry_after:
            self._version, arrays = weights()
            self._mean_at_start = stats.mean_return_100
            self.attempts += 1
            self.log.info(
                "confirm_started",
                version=self._version,
                episodes=self.episodes,
                mean_return_100=stats.mean_return_100,
                target=self.target,
            )
            self.player.start(
                arrays, episodes=self.episodes, seed=self.seed * 1_000_003 + self.attempts
            )
        return None

    def _conclude(self, result, stats: RunStats) -> Outcome | None:
        self._retry_after = stats.episodes + WINDOW
        if isinstance(result, BaseException):
            self.log.error("confirm_failed", error=f"{type(result).__name__}: {result}"[:500])
            return None
        figures = {
            "confirm_version": self._version,
            "confirm_episodes": len(result.returns),
            "confirm_mean_return": result.mean,
            "confirm_return_std": result.std,
            "mean_return_100_at_start": self._mean_at_start,
        }
        passed = result.complete and result.mean is not None and result.mean >= self.target
        self.last = {**figures, "confirm_passed": passed}
        if self.report is not None:
            self.report(figures, stats.env_steps)
        if passed:
            self.log.info("solve_confirmed", **figures, target=self.target)
            return Outcome(True, "solved", confirmation=figures)
        self.log.warning(
            "solve_not_confirmed",
            **figures,
            target=self.target,
            complete=result.complete,
            retry_after_episodes=self._retry_after,
        )
        return None

    def close(self) -> None:
        self.player.close()
