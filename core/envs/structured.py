"""Two small tasks with structured action spaces, for the tests and for trying a new
space out: each is learned by a feed-forward policy in seconds, and a policy that does
not use every component of its action cannot pass.

``zmq_a3c/MatchMulti-v0`` (MultiDiscrete): each step shows three targets, one-hot, and
the action names one value per component from MultiDiscrete([3, 4, 5], start=[-1, 0,
2]) (the start offsets exercise the actor's index-to-value map). Reward: the fraction
of components that match, so 0 to 1 per step; episodes are 10 steps. A random policy
scores about 2.6, a perfect one 10.

``zmq_a3c/MatchBits-v0`` (MultiBinary): each step shows 6 bits as +-1; the action is
MultiBinary(6); reward: the fraction of bits copied. Random about 5, perfect 10.

Plain gymnasium envs (the gymnasium family vectorises them with next-step autoreset).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

MULTI_ID = "zmq_a3c/MatchMulti-v0"
BITS_ID = "zmq_a3c/MatchBits-v0"
STEPS = 10
NVEC = np.array([3, 4, 5])
START = np.array([-1, 0, 2])
BITS = 6


class _Match(gym.Env):
    """Show a target each step; reward the fraction of the action that matches it."""

    def __init__(self) -> None:
        self._t = 0
        self._target = np.zeros(0, dtype=np.int64)

    def _new_target(self) -> np.ndarray:
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._target = self._new_target()
        return self._obs(), {}

    def step(self, action):
        action = np.asarray(action, dtype=np.int64).reshape(self._target.shape)
        reward = float(np.mean(action == self._target))
        self._t += 1
        self._target = self._new_target()
        return self._obs(), reward, self._t >= STEPS, False, {}


class MatchMulti(_Match):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Box(0.0, 1.0, (int(NVEC.sum()),), np.float32)
        self.action_space = gym.spaces.MultiDiscrete(NVEC, start=START)

    def _new_target(self) -> np.ndarray:
        return START + self.np_random.integers(0, NVEC)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(int(NVEC.sum()), dtype=np.float32)
        obs[np.cumsum([0, *NVEC[:-1]]) + self._target - START] = 1.0
        return obs


class MatchBits(_Match):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (BITS,), np.float32)
        self.action_space = gym.spaces.MultiBinary(BITS)

    def _new_target(self) -> np.ndarray:
        return self.np_random.integers(0, 2, BITS)

    def _obs(self) -> np.ndarray:
        return (2.0 * self._target - 1.0).astype(np.float32)


def register() -> None:
    # Thresholds: nearly every component right on nearly every step.
    for env_id, cls in ((MULTI_ID, MatchMulti), (BITS_ID, MatchBits)):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=cls, reward_threshold=9.5)
