"""What an environment family is: how to build the vector env for an id and what its
spaces mean for the run spec.

    family = family_for(env_id)                 # core/envs/__init__.py
    envs = family.make(env_id, num_envs, kwargs) # a gymnasium VectorEnv, next-step autoreset
    family.reward_threshold(env_id)              # for "solved", or None
    family.frame_stack(envs)                     # S > 1: observations are stacks of S frames

A family is a small class with ``name``, ``matches``, ``make``, ``frame_stack`` and
``reward_threshold``;
the first registered family that matches an id builds it. ``describe`` turns any family's
spaces into RunSpec fields, so the checks, the model and the rollout agree on them.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class EnvSpecError(ValueError):
    """The environment cannot be used by this trainer (unknown id, unsupported space)."""


class EnvFamily(Protocol):
    name: str

    def matches(self, env_id: str) -> bool: ...

    def make(self, env_id: str, num_envs: int, env_kwargs: dict) -> gym.vector.VectorEnv: ...

    def frame_stack(self, envs: gym.vector.VectorEnv) -> int: ...

    def reward_threshold(self, env_id: str) -> float | None: ...


# An env's observation dtype -> the dtype its observations travel in (float64 vectors
# travel as float32; uint8 images stay uint8, a quarter of float32's bytes).
_OBS_DTYPES = {np.dtype(np.float32): "<f4", np.dtype(np.float64): "<f4", np.dtype(np.uint8): "|u1"}


def wire_obs_dtype(dtype: Any) -> str | None:
    return _OBS_DTYPES.get(np.dtype(dtype))


def spaces_to_spec_fields(env_id: str, obs_space: Any, act_space: Any) -> dict[str, Any]:
    """RunSpec fields from an env's single observation and action spaces."""
    if isinstance(obs_space, gym.spaces.Dict | gym.spaces.Tuple):
        raise EnvSpecError(
            f"{env_id}: {type(obs_space).__name__} observation spaces are not supported yet "
            f"(got {obs_space}); where every part is a vector, gymnasium's "
            "FlattenObservation wrapper makes one Box of them (register the wrapped env "
            "under an id of your own and pass it as module:Id)"
        )
    if not isinstance(obs_space, gym.spaces.Box):
        raise EnvSpecError(f"{env_id}: only Box observation spaces are supported, got {obs_space}")
    obs_dtype = wire_obs_dtype(obs_space.dtype)
    if obs_dtype is None:
        raise EnvSpecError(f"{env_id}: observation dtype {obs_space.dtype} is not supported")
    fields: dict[str, Any] = {"obs_shape": tuple(obs_space.shape), "obs_dtype": obs_dtype}
    if isinstance(act_space, gym.spaces.Discrete):
        if act_space.start != 0:
            raise EnvSpecError(f"{env_id}: Discrete spaces must start at 0")
        return {**fields, "action_kind": "discrete", "action_n": int(act_space.n)}
    if isinstance(act_space, gym.spaces.Box):
        return {
            **fields,
            "action_kind": "box",
            "action_n": 0,
            "action_shape": tuple(act_space.shape),
            "action_low": tuple(float(x) for x in np.ravel(act_space.low)),
            "action_high": tuple(float(x) for x in np.ravel(act_space.high)),
        }
    if isinstance(act_space, gym.spaces.MultiDiscrete):
        start = np.ravel(act_space.start).astype(np.int64)
        return {
            **fields,
            "action_kind": "multi_discrete",
            "action_n": 0,
            "action_shape": tuple(act_space.nvec.shape),
            "action_low": tuple(float(x) for x in start),
            "action_high": tuple(float(x) for x in start + np.ravel(act_space.nvec) - 1),
        }
    if isinstance(act_space, gym.spaces.MultiBinary):
        return {
            **fields,
            "action_kind": "multi_binary",
            "action_n": 0,
            "action_shape": tuple(np.atleast_1d(act_space.n).tolist()),
        }
    raise EnvSpecError(
        f"{env_id}: unsupported action space {act_space} (Discrete, Box, MultiDiscrete "
        "and MultiBinary are; Tuple and Dict action spaces are not)"
    )
