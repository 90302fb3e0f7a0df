"""``--confirm-episodes K``: the learner sees a "solved" with its own eyes before it ends
a run on it.

The returns the stopping rule reads are derived from the data actors send
(learner/episodes.py), so an actor cannot claim episodes its flags do not show; but the
rewards themselves are the actor's word. With K > 0, when the rule says solved the
learner plays K episodes of that policy in its own env (core/evaluation.py), on a thread
so that actors are still answered meanwhile, and ends the run only if their mean reaches
the target as well. Otherwise it logs ``solve_not_confirmed`` and trains on; it asks
again after another ``WINDOW`` episodes.

    confirm = SolveConfirmation(spec, episodes=10, target=475.0, seed=1, log=log)
    outcome = confirm.judge(rule_says_solved, stats, weights=lambda: (version, weights))
    # None: not (yet) confirmed; the weights are read only when a confirmation starts
    confirm.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import numpy as np

from core.evaluation import Played, play
from learner.outcome import Outcome
from learner.stats import WINDOW, RunStats
from protocol.spec import RunSpec

# Steps allowed per episode asked for: a policy that never ends an episode must not keep
# the confirmation running for ever (Atari's longest game is 108k frames / 4 = 27k steps).
MAX_STEPS_PER_EPISODE = 100_000

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
    ) -> None:
        self.spec, self.episodes, self.target, self.seed, self.log = (
            spec,
            episodes,
            target,
            seed,
            log,
        )
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._result: Played | BaseException | None = None
        self._version = -1
        self._episodes_at_start = 0
        self._retry_after = 0  # run episodes before which no new confirmation starts
        self.attempts = 0

    def judge(self, solved: bool, stats: RunStats, weights: WeightsFn) -> Outcome | None:
        """``solved``: the stopping rule says so now; ``weights``: the policy to play
        (version, arrays). Returns the solved outcome once a confirmation passes; None
        while one runs, after one fails, or when not solved."""
        if self._thread is not None:
            if self._thread.is_alive():
                return None
            self._thread = None
            return self._conclude(stats)
        if solved and stats.episodes >= self._retry_after:
            self._start(stats, *weights())
        return None

    def _start(self, stats: RunStats, version: int, weights: Mapping[str, np.ndarray]) -> None:
        self._version, self._episodes_at_start = version, stats.episodes
        self._mean_at_start = stats.mean_return_100
        self.attempts += 1
        self._result = None
        self.log.info(
            "confirm_started",
            version=version,
            episodes=self.episodes,
            mean_return_100=stats.mean_return_100,
            target=self.target,
        )

        def run() -> None:
            try:
                self._result = play(
                    self.spec,
                    weights,
                    episodes=self.episodes,
                    seed=self.seed * 1_000_003 + self.attempts,
                    max_steps=self.episodes * MAX_STEPS_PER_EPISODE,
                    should_stop=self._stop.is_set,
                )
            except Exception as exc:  # noqa: BLE001 - reported by judge, on the loop's thread
                self._result = exc

        self._thread = threading.Thread(target=run, name="confirm-solved", daemon=True)
        self._thread.start()

    def _conclude(self, stats: RunStats) -> Outcome | None:
        result, self._retry_after = self._result, stats.episodes + WINDOW
        if isinstance(result, BaseException):
            self.log.error("confirm_failed", error=f"{type(result).__name__}: {result}"[:500])
            return None
        assert result is not None
        figures = {
            "confirm_version": self._version,
            "confirm_episodes": len(result.returns),
            "confirm_mean_return": result.mean,
            "confirm_return_std": result.std,
            "mean_return_100_at_start": self._mean_at_start,
        }
        if result.complete and result.mean is not None and result.mean >= self.target:
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
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
