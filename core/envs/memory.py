"""``zmq_a3c/CartPoleNoVel-v1``: CartPole-v1 with the velocities taken out of the
observation, so that the state is not in one observation: the cart's position and the
pole's angle only. A policy must remember (or difference) what it saw to know which way
the pole is falling: the memory task of recurrent policies (the partially observed
CartPole of the recurrent-RL literature, e.g. SB3-contrib's RecurrentPPO benchmarks).

Built on gymnasium's own numpy-vectorised CartPole (the same dynamics, time limit of
500 and next-step autoreset), with a vector observation wrapper.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "zmq_a3c/CartPoleNoVel-v1"
KEEP = [0, 2]  # cart position, pole angle (velocities: 1 and 3)


class PositionsOnly(gym.vector.VectorObservationWrapper):
    def __init__(self, envs: gym.vector.VectorEnv) -> None:
        super().__init__(envs)
        space = envs.single_observation_space
        self.single_observation_space = gym.spaces.Box(
            space.low[KEEP], space.high[KEEP], dtype=space.dtype
        )
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, envs.num_envs
        )

    def observations(self, observations: np.ndarray) -> np.ndarray:
        return observations[:, KEEP]


def make_vec(num_envs: int = 1, **kwargs) -> gym.vector.VectorEnv:
    envs = gym.make_vec(
        "CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
    )
    return PositionsOnly(envs)


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(
            ENV_ID,
            entry_point=None,
            vector_entry_point=make_vec,
            reward_threshold=475.0,
        )
