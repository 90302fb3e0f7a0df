"""The learner playing its own policy on a thread, while its loop keeps serving actors:
for ``--confirm-episodes`` (learner/confirm.py) and ``--eval-every-s`` (below).

    player = BackgroundPlay(spec, name="evaluate")
    player.start(weights, episodes=10, seed=3)     # one at a time
    result = player.poll()     # None while running; then a Played, or the exception
    player.close()             # asks it to stop, joins (bounded)

The thread owns a private copy of the network (core/evaluation.py builds one from the
weights), so it never touches the training thread's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from core.evaluation import Played, play
from protocol.spec import RunSpec

# Steps allowed per episode asked for: a policy that never ends an episode must not keep
# a player running for ever (Atari's longest game is 108k frames / 4 = 27k steps).
MAX_STEPS_PER_EPISODE = 100_000


class BackgroundPlay:
    def __init__(self, spec: RunSpec, name: str) -> None:
        self.spec, self.name = spec, name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._result: Played | BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, weights: Mapping[str, np.ndarray], *, episodes: int, seed: int) -> None:
        assert self._thread is None, "one play at a time"
        self._result = None

        def run() -> None:
            try:
                self._result = play(
                    self.spec,
                    weights,
                    episodes=episodes,
                    seed=seed,
                    max_steps=episodes * MAX_STEPS_PER_EPISODE,
                    should_stop=self._stop.is_set,
                )
            except Exception as exc:  # noqa: BLE001 - handed to the loop by poll()
                self._result = exc

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()

    def poll(self) -> Played | BaseException | None:
        """The finished play's result (once), or None while it runs or when none does."""
        if self._thread is None or self._thread.is_alive():
            return None
        self._thread = None
        return self._result

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)


class PeriodicEvaluation:
    """``--eval-every-s S``: every S seconds of training the learner plays
    ``episodes`` episodes of its newest policy and logs an ``evaluation`` event (and
    TensorBoard's ``eval/mean_return``). Training never waits for it."""

    def __init__(self, spec: RunSpec, *, every_s: float, episodes: int, seed: int, log) -> None:
        self.every_s, self.episodes, self.seed, self.log = every_s, episodes, seed, log
        self.player = BackgroundPlay(spec, name="evaluate")
        self._next_at = every_s
        self._started: tuple[int, int, float] = (0, 0, 0.0)  # version, env steps, wall s
        self.count = 0

    def tick(self, wall_s: float, env_steps: int, weights) -> dict | None:
        """Start an evaluation when one is due; return the fields of a finished one.
        ``weights``: () -> (version, arrays), read only when one starts."""
        result = self.player.poll()
        if result is not None:
            return self._report(result)
        if not self.player.running and wall_s >= self._next_at:
            version, arrays = weights()
            self._started = (version, env_steps, wall_s)
            self._next_at = wall_s + self.every_s
            self.count += 1
            self.player.start(arrays, episodes=self.episodes, seed=self.seed * 7919 + self.count)
        return None

    def _report(self, result: Played | BaseException) -> dict | None:
        version, env_steps, wall_s = self._started
        if isinstance(result, BaseException):
            self.log.error("evaluation_failed", error=f"{type(result).__name__}: {result}"[:500])
            return None
        fields = {
            "version": version,
            "env_steps": env_steps,
            "wall_s": round(wall_s, 3),
            "episodes": len(result.returns),
            "mean_return": result.mean,
            "return_std": result.std,
            "mean_length": float(np.mean(result.lengths)) if result.lengths else None,
            "complete": result.complete,
        }
        self.log.info("evaluation", **fields)
        return fields

    def close(self) -> None:
        self.player.close()
