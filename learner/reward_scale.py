"""Return-based reward scaling (``--reward-norm``): the loss sees each reward divided by
the running standard deviation of the discounted return, as SB3's ``VecNormalize``
(``norm_reward``) and CleanRL's ``NormalizeReward`` do ("reward scaling", Engstrom et
al. 2020). The mean is not subtracted: a constant added to every step changes which
policy is best when episodes can end. Scaled rewards are clipped to +-``CLIP``.

Why it matters: Pendulum's rewards are down to -16 a step, so early values and value
losses are in the hundreds, and the global gradient-norm clip (``--max-grad-norm``)
then shrinks the policy's share of the gradient to nothing.

It lives on the learner, not the actors: actors never use rewards to act, so nothing
needs to travel and every actor is treated alike. The learner sees each actor's
rollouts in order (the server checks their sequence numbers), and carries each env's
discounted return from one rollout to the next on that actor's ``EpisodeChain``; a
break in the chain (a lost or refused rollout, learner/episodes.py) starts them over.

    scale = RewardScale(gamma)
    scale.observe(chain, rewards, terminated, truncated, valid)  # each accepted rollout
    rewards = scale.apply(batch.rewards)                         # in the trainer

The statistics (mean, variance, count of the discounted returns seen) are saved in
checkpoints with the trainer; the per-env running returns are not (actors re-join a
resumed learner with fresh envs).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch

EPS = 1e-8
CLIP = 10.0


class RewardScale:
    def __init__(self, gamma: float) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.gamma = gamma
        self.mean = 0.0
        self.var = 1.0
        self.count = 0
        # chain -> (its break count when last seen, running discounted return per env)
        self._running: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def factor(self) -> float:
        """What rewards are multiplied by: 1 / std of the discounted returns seen."""
        return 1.0 / float(np.sqrt(self.var + EPS))

    def observe(
        self,
        chain: Any,  # learner.episodes.EpisodeChain: its identity and break count
        rewards: np.ndarray,  # [T, N]
        terminated: np.ndarray,  # [T, N] bool
        truncated: np.ndarray,  # [T, N] bool
        valid: np.ndarray,  # [T, N] bool
    ) -> None:
        """Carry the running discounted returns of ``chain``'s envs through one rollout
        and merge every valid step's into the statistics. An invalid step (an env
        error: the env was reset) starts its env's return over, as an episode end does."""
        t, n = valid.shape
        breaks, running = self._running.get(chain, (-1, None))
        if running is None or breaks != chain.breaks or len(running) != n:
            running = np.zeros(n, dtype=np.float64)
        seen = np.empty((t, n), dtype=np.float64)
        for i in range(t):
            running = np.where(valid[i], running * self.gamma + rewards[i], 0.0)
            seen[i] = running
            running = np.where(terminated[i] | truncated[i], 0.0, running)
        self._running[chain] = (chain.breaks, running)
        values = seen[valid]
        if len(values):
            self._merge(float(values.mean()), float(values.var()), len(values))

    def _merge(self, batch_mean: float, batch_var: float, batch_count: int) -> None:
        # Chan et al.'s parallel update (as core/models/normalizer.py, in float64).
        total = self.count + batch_count
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * batch_count
        m2 += delta * delta * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.var = m2 / total
        self.count = total

    def apply(self, rewards: torch.Tensor) -> torch.Tensor:
        """Rewards as the loss sees them: scaled, clipped to +-CLIP."""
        return (rewards * self.factor).clamp(-CLIP, CLIP)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean = float(state["mean"])
        self.var = float(state["var"])
        self.count = int(state["count"])
