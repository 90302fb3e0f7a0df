"""Run counters and the numbers in the ``progress`` event and ``summary.json``.

Totals live for the run (and are checkpointed); interval figures (policy lag, gradient
norm, loss terms) are gathered between two progress events and then reset, so memory
stays bounded however long the run is.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from learner.episodes import Episodes

WINDOW = 100


@dataclass
class RunStats:
    env_steps: int = 0
    # Episodes the learner derived from the data (learner/episodes.py): ``episodes`` and
    # ``returns`` hold only those whose every step it saw; the other two say how many
    # ended that it could not vouch for.
    episodes: int = 0
    episodes_unseen_start: int = 0  # ended, but began before a lost or refused rollout
    episodes_cut: int = 0  # ended by an env error, without an end flag
    updates: int = 0
    batches: int = 0
    skipped_updates: int = 0
    dropped_stale: int = 0
    dropped_steps: int = 0  # env steps in batches dropped as stale
    dropped_foreign: int = 0  # batches collected for an earlier learner (not counted in steps)
    trained_steps: int = 0  # env steps in batches trained on
    rejected: Counter = field(default_factory=Counter)
    returns: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    # Who computed the loss terms in progress: "actors" under gradient coordination,
    # where they are the actors' claims (logged, never used to decide anything).
    losses_from: str = "learner"
    # Interval accumulators, reset by progress().
    _lags: list[int] = field(default_factory=list)  # at arrival (what the filter judged)
    _train_lags: list[int] = field(default_factory=list)  # when the update started: the loss's
    _grad_norms: list[float] = field(default_factory=list)
    _losses: list[tuple[float, float, float]] = field(default_factory=list)
    _extras: dict[str, list[float]] = field(default_factory=dict)
    _last_steps: int = 0
    _last_trained: int = 0
    _last_time: float | None = None

    def add_episodes(self, episodes: Episodes) -> None:
        self.episodes += len(episodes.returns)
        self.returns.extend(float(r) for r in episodes.returns)
        self.episodes_unseen_start += len(episodes.unseen_lengths)
        self.episodes_cut += episodes.cut

    def add_update(
        self,
        grad_norm: float,
        policy_loss: float,
        value_loss: float,
        entropy: float,
        extras: dict[str, float] | None = None,
    ) -> None:
        self.updates += 1
        self._grad_norms.append(grad_norm)
        self._losses.append((policy_loss, value_loss, entropy))
        for k, v in (extras or {}).items():
            self._extras.setdefault(k, []).append(v)

    def add_lag(self, lag: int) -> None:
        self._lags.append(lag)

    def add_train_lag(self, lag: int) -> None:
        self._train_lags.append(lag)

    @property
    def mean_return_100(self) -> float | None:
        return float(np.mean(self.returns)) if self.returns else None

    def solved(self, target: float | None) -> bool:
        return (
            target is not None
            and len(self.returns) == WINDOW
            and float(np.mean(self.returns)) >= target
        )

    def progress(self, now: float, wall_s: float) -> dict:
        """The fields of one ``progress`` event; resets the interval figures."""
        dt = None if self._last_time is None else now - self._last_time
        sps = (self.env_steps - self._last_steps) / dt if dt else 0.0
        tps = (self.trained_steps - self._last_trained) / dt if dt else 0.0
        self._last_steps, self._last_time = self.env_steps, now
        self._last_trained = self.trained_steps
        lags, norms, losses = self._lags, self._grad_norms, self._losses
        train_lags = self._train_lags
        self._lags, self._grad_norms, self._losses, self._train_lags = [], [], [], []
        out = {
            "wall_s": round(wall_s, 3),
            "env_steps": self.env_steps,
            "steps_per_s": round(sps, 1),
            "trained_per_s": round(tps, 1),
            "updates": self.updates,
            "episodes": self.episodes,
            "episodes_unseen_start": self.episodes_unseen_start,
            "episodes_cut": self.episodes_cut,
            "mean_return_100": _round(self.mean_return_100),
            "return_std_100": _round(float(np.std(self.returns)) if self.returns else None),
            "policy_lag_min": min(lags) if lags else None,
            "policy_lag_mean": _round(float(np.mean(lags)) if lags else None),
            "policy_lag_max": max(lags) if lags else None,
            # The lag the loss saw (behind the version each update started from), and
            # how many batches that is over: the figures a lag study reads.
            "train_lag_mean": _round(float(np.mean(train_lags)) if train_lags else None),
            "train_lag_max": max(train_lags) if train_lags else None,
            "trained_batches": len(train_lags),
            "dropped_stale": self.dropped_stale,
            "dropped_steps": self.dropped_steps,
            "rejected": sum(self.rejected.values()),
            "skipped_updates": self.skipped_updates,
            "grad_norm": _round(float(np.mean(norms)) if norms else None),
            "grad_norm_max": _round(max(norms) if norms else None),
        }
        if losses:
            pl, vl, ent = (float(np.mean(x)) for x in zip(*losses, strict=True))
            out.update(policy_loss=_round(pl), value_loss=_round(vl), entropy=_round(ent))
            out["losses_from"] = self.losses_from
        extras, self._extras = self._extras, {}
        out.update({k: _round(float(np.mean(v))) for k, v in extras.items()})
        return out

    def counters(self) -> dict:
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "episodes_unseen_start": self.episodes_unseen_start,
            "episodes_cut": self.episodes_cut,
            "updates": self.updates,
            "batches": self.batches,
            "skipped_updates": self.skipped_updates,
            "dropped_stale": self.dropped_stale,
            "dropped_steps": self.dropped_steps,
            "dropped_foreign": self.dropped_foreign,
            "trained_steps": self.trained_steps,
            "rejected": dict(self.rejected),
            "returns": list(self.returns),
        }

    def restore(self, counters: dict) -> None:
        for name in (
            "env_steps",
            "episodes",
            "episodes_unseen_start",
            "episodes_cut",
            "updates",
            "batches",
            "skipped_updates",
            "dropped_stale",
            "dropped_steps",
            "dropped_foreign",
            "trained_steps",
        ):
            setattr(self, name, int(counters.get(name, 0)))
        self.rejected = Counter({str(k): int(v) for k, v in counters.get("rejected", {}).items()})
        self.returns = deque((float(r) for r in counters.get("returns", [])), maxlen=WINDOW)
        self._last_steps = self.env_steps


def _round(x: float | None, nd: int = 5) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, nd)
