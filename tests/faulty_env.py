"""Environments that raise, for fault tests. Importing this module registers them;
actors reach them as ``tests.faulty_env:FaultyCartPole-v0``."""

from __future__ import annotations

import os

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class FaultyCartPole(CartPoleEnv):
    """CartPole whose ``step`` raises with probability FAULTY_P_STEP (env var, default
    0.002) and whose ``reset`` raises with probability FAULTY_P_RESET (default 0)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.p_step = float(os.environ.get("FAULTY_P_STEP", "0.002"))
        self.p_reset = float(os.environ.get("FAULTY_P_RESET", "0"))

    def step(self, action):
        if self.np_random.random() < self.p_step:
            raise RuntimeError("injected step failure")
        return super().step(action)

    def reset(self, *, seed=None, options=None):
        out = super().reset(seed=seed, options=options)
        if self.np_random.random() < self.p_reset:
            raise RuntimeError("injected reset failure")
        return out


if "FaultyCartPole-v0" not in gym.registry:
    gym.register(
        "FaultyCartPole-v0",
        entry_point=FaultyCartPole,
        max_episode_steps=500,
        reward_threshold=475.0,
    )
