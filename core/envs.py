"""Vector environments and what the run spec needs to know of them.

CartPole (and any env with a vector entry point) uses gymnasium's numpy-vectorised
implementation, ~10x faster than stepping copies one by one; other envs fall back to
``SyncVectorEnv``. Both autoreset on the next step, which the rollout relies on (see
core/loss.py for the layout). No sockets here.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode


class EnvSpecError(ValueError):
    """The environment cannot be used by this trainer (unknown id, unsupported space)."""


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


def make_vec_env(
    env_id: str, num_envs: int, env_kwargs: dict | None = None
) -> gym.vector.VectorEnv:
    kwargs = dict(env_kwargs or {})
    spec = resolve(env_id)
    env_id = spec.id
    if spec.vector_entry_point is not None:
        envs = gym.make_vec(
            env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
        )
    else:
        envs = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
            **kwargs,
        )
    mode = envs.metadata.get("autoreset_mode")
    if mode is not None and mode != AutoresetMode.NEXT_STEP:
        envs.close()
        raise EnvSpecError(f"{env_id}: autoreset mode {mode} is not supported (need NEXT_STEP)")
    return envs


def describe_spaces(env_id: str, env_kwargs: dict | None = None) -> dict[str, Any]:
    """RunSpec fields that come from the env: obs_shape and the action space."""
    envs = make_vec_env(env_id, 1, env_kwargs)
    try:
        obs_space, act_space = envs.single_observation_space, envs.single_action_space
    finally:
        envs.close()
    if not isinstance(obs_space, gym.spaces.Box):
        raise EnvSpecError(f"{env_id}: only Box observation spaces are supported, got {obs_space}")
    if isinstance(act_space, gym.spaces.Discrete):
        if act_space.start != 0:
            raise EnvSpecError(f"{env_id}: Discrete spaces must start at 0")
        return {
            "obs_shape": tuple(obs_space.shape),
            "action_kind": "discrete",
            "action_n": int(act_space.n),
        }
    if isinstance(act_space, gym.spaces.Box):
        return {
            "obs_shape": tuple(obs_space.shape),
            "action_kind": "box",
            "action_n": 0,
            "action_shape": tuple(act_space.shape),
            "action_low": tuple(float(x) for x in np.ravel(act_space.low)),
            "action_high": tuple(float(x) for x in np.ravel(act_space.high)),
        }
    raise EnvSpecError(f"{env_id}: unsupported action space {act_space}")


def reward_threshold(env_id: str) -> float | None:
    threshold = resolve(env_id).reward_threshold
    return None if threshold is None or not math.isfinite(threshold) else float(threshold)
