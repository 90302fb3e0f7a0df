"""The gymnasium family: any registered gymnasium id.

An env with a vector entry point (CartPole, and ale-py's Atari ids) uses it: CartPole's
is numpy-vectorised, ~10x faster than stepping copies one by one. Others fall back to
``SyncVectorEnv``. Both autoreset on the next step, which the rollout relies on (see
protocol/rollout.py). No sockets here.
"""

from __future__ import annotations

import importlib
import math

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from core.envs.family import EnvSpecError


def resolve(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``. ``module:Name-v0`` imports ``module`` first
    (gymnasium's convention for envs registered by a package on import)."""
    module, sep, name = env_id.rpartition(":")
    if sep:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise EnvSpecError(f"cannot import {module!r} for {env_id!r}: {exc}") from None
    try:
        return gym.spec(name)
    except gym.error.Error as exc:
        raise EnvSpecError(f"unknown environment {env_id!r}: {exc}") from None


class GymnasiumFamily:
    name = "gymnasium"

    def matches(self, env_id: str) -> bool:
        return True  # the fallback: anything gymnasium can resolve

    def make(self, env_id: str, num_envs: int, env_kwargs: dict) -> gym.vector.VectorEnv:
        spec = resolve(env_id)
        if spec.vector_entry_point is not None:
            envs = gym.make_vec(
                spec.id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs
            )
        else:
            envs = gym.make_vec(
                spec.id,
                num_envs=num_envs,
                vectorization_mode="sync",
                vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
                **env_kwargs,
            )
        mode = envs.metadata.get("autoreset_mode")
        if mode is not None and mode != AutoresetMode.NEXT_STEP:
            envs.close()
            raise EnvSpecError(f"{env_id}: autoreset mode {mode} is not supported (need NEXT_STEP)")
        return envs

    def frame_stack(self, envs: gym.vector.VectorEnv) -> int | dict[str, int]:
        """A vector env whose observations are stacks of frames on their first axis says
        so in ``metadata["frame_stack"]`` (a Dict observation's env: {key: S} for its
        stacked keys); 0 otherwise."""
        stack = envs.metadata.get("frame_stack", 0)
        return {str(k): int(v) for k, v in stack.items()} if isinstance(stack, dict) else int(stack)

    def reward_threshold(self, env_id: str) -> float | None:
        threshold = resolve(env_id).reward_threshold
        return None if threshold is None or not math.isfinite(threshold) else float(threshold)
