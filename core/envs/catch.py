"""``zmq_a3c/Catch-v0``: a small image task that a CNN learns in a minute on a laptop CPU.

The image path's end-to-end check (tests/test_image_learning.py) and a quick sanity run
for users: a ball falls one row per step from a random column of the top row of a 10x10
grid; a one-cell paddle starts in the middle of the bottom row and moves left, stays or
moves right (actions 0, 1, 2), so it can always get under the ball with moves to spare. When the ball reaches the bottom row the episode ends with reward +1 if the
paddle is under it, -1 if not (9 steps). A random policy scores about -0.8, a perfect
one +1. The correct action is visible in the pixels only: observations are 40x40 uint8
frames (each cell 4x4 pixels, ball 255, paddle 128), the last 4 stacked (on reset the
stack holds copies of the first frame), like Atari's, so the frame-once wire and the
CNN are exercised exactly as on Atari.

``zmq_a3c/CatchDict-v0`` is the same game seen through a Dict observation, the task for
Dict observations: ``image`` shows the ball alone (the same stacked 40x40 frames, each
frame once on the wire) and ``paddle`` is where the paddle is, one-hot over the 10
columns (float32). Neither key alone says which way to move: the policy must read both,
each through the encoder its space calls for (the CNN, the MLP).

A numpy vector env with gymnasium's next-step autoreset: the step after the last one of
an episode ignores its action and returns the first observation of the next episode,
reward 0, both flags False.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

ENV_ID = "zmq_a3c/Catch-v0"
DICT_ENV_ID = "zmq_a3c/CatchDict-v0"
GRID = 10
CELL = 4
STACK = 4
SIZE = GRID * CELL


class CatchVectorEnv(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "frame_stack": STACK}

    def __init__(self, num_envs: int = 1, **kwargs) -> None:
        if kwargs:
            raise TypeError(f"Catch-v0 takes no arguments, got {sorted(kwargs)}")
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(0, 255, (STACK, SIZE, SIZE), np.uint8)
        self.single_action_space = gym.spaces.Discrete(3)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._rng = np.random.default_rng()
        self._ball_row = np.zeros(num_envs, dtype=np.int64)
        self._ball_col = np.zeros(num_envs, dtype=np.int64)
        self._paddle = np.zeros(num_envs, dtype=np.int64)
        self._stack = np.zeros((num_envs, STACK, SIZE, SIZE), dtype=np.uint8)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    DRAW_PADDLE = True

    def _frame(self, idx: np.ndarray) -> np.ndarray:
        frames = np.zeros((len(idx), SIZE, SIZE), dtype=np.uint8)
        for k, i in enumerate(idx):
            r, c, p = self._ball_row[i], self._ball_col[i], self._paddle[i]
            if self.DRAW_PADDLE:
                frames[k, (GRID - 1) * CELL :, p * CELL : (p + 1) * CELL] = 128
            frames[k, r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = 255
        return frames

    def _start(self, idx: np.ndarray) -> None:
        self._ball_row[idx] = 0
        self._ball_col[idx] = self._rng.integers(0, GRID, len(idx))
        self._paddle[idx] = GRID // 2
        self._stack[idx] = self._frame(idx)[:, None]  # the first frame, STACK times

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._start(np.arange(self.num_envs))
        self._autoreset[:] = False
        return self._observe(), {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        reward = np.zeros(self.num_envs, dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        restart = np.flatnonzero(self._autoreset)
        live = np.flatnonzero(~self._autoreset)
        if restart.size:
            self._start(restart)
        if live.size:
            self._paddle[live] = np.clip(self._paddle[live] + actions[live] - 1, 0, GRID - 1)
            self._ball_row[live] += 1
            self._stack[live, :-1] = self._stack[live, 1:]
            self._stack[live, -1] = self._frame(live)
            done = live[self._ball_row[live] == GRID - 1]
            caught = self._paddle[done] == self._ball_col[done]
            reward[done] = np.where(caught, 1.0, -1.0)
            terminated[done] = True
        self._autoreset = terminated.copy()
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self._observe(), reward, terminated, truncated, {}

    def _observe(self):
        return self._stack.copy()


class CatchDictVectorEnv(CatchVectorEnv):
    """Catch through a Dict observation: the ball's frames, and the paddle one-hot."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "frame_stack": {"image": STACK}}
    DRAW_PADDLE = False

    def __init__(self, num_envs: int = 1, **kwargs) -> None:
        super().__init__(num_envs, **kwargs)
        self.single_observation_space = gym.spaces.Dict(
            {
                "image": self.single_observation_space,
                "paddle": gym.spaces.Box(0.0, 1.0, (GRID,), np.float32),
            }
        )
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )

    def _observe(self):
        paddle = np.zeros((self.num_envs, GRID), dtype=np.float32)
        paddle[np.arange(self.num_envs), self._paddle] = 1.0
        return {"image": self._stack.copy(), "paddle": paddle}


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=None, vector_entry_point=CatchVectorEnv)
    if DICT_ENV_ID not in gym.registry:
        gym.register(DICT_ENV_ID, entry_point=None, vector_entry_point=CatchDictVectorEnv)
