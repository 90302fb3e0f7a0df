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

from protocol.spec import OBS_KEY


class EnvSpecError(ValueError):
    """The environment cannot be used by this trainer (unknown id, unsupported space)."""


class EnvFamily(Protocol):
    name: str

    def matches(self, env_id: str) -> bool: ...

    def make(self, env_id: str, num_envs: int, env_kwargs: dict) -> gym.vector.VectorEnv: ...

    def frame_stack(self, envs: gym.vector.VectorEnv) -> int | dict[str, int]: ...

    def reward_threshold(self, env_id: str) -> float | None: ...


# An env's observation dtype -> the dtype its observations travel in (float64 vectors
# travel as float32; uint8 images stay uint8, a quarter of float32's bytes).
_OBS_DTYPES = {np.dtype(np.float32): "<f4", np.dtype(np.float64): "<f4", np.dtype(np.uint8): "|u1"}


def wire_obs_dtype(dtype: Any) -> str | None:
    return _OBS_DTYPES.get(np.dtype(dtype))


def _box_part(env_id: str, space: Any, what: str) -> tuple[tuple[int, ...], str]:
    """A Box observation's (shape, wire dtype); anything else is refused by name."""
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
        raise EnvSpecError(
            f"{env_id}: {what} is a nested {type(space).__name__} ({space}); a Dict "
            "observation's keys must each be a Box (gymnasium's FlattenObservation makes "
            "one Box of vector parts: register the wrapped env under an id of your own)"
        )
    if not isinstance(space, gym.spaces.Box):
        raise EnvSpecError(
            f"{env_id}: {what} must be a Box space, got {space} (a Discrete part can be "
            "given to the agent one-hot, as a Box, by a wrapper of your own)"
        )
    dtype = wire_obs_dtype(space.dtype)
    if dtype is None:
        raise EnvSpecError(f"{env_id}: {what} has dtype {space.dtype}, which is not supported")
    return tuple(space.shape), dtype


def obs_spec_fields(env_id: str, space: Any) -> dict[str, Any]:
    """RunSpec fields from an env's single observation space: a Box's shape and dtype,
    or a Dict's keys (each a Box; frame stacking is the family's to add)."""
    if isinstance(space, gym.spaces.Tuple):
        raise EnvSpecError(
            f"{env_id}: Tuple observation spaces are not supported (got {space}); a Dict "
            "names its parts, and each part becomes its own array on the wire"
        )
    if not isinstance(space, gym.spaces.Dict):
        shape, dtype = _box_part(env_id, space, "the observation space")
        return {"obs_shape": shape, "obs_dtype": dtype}
    keys: dict[str, dict[str, Any]] = {}
    for key, sub in space.spaces.items():
        if not OBS_KEY.fullmatch(str(key)):
            raise EnvSpecError(
                f"{env_id}: observation key {key!r} must be 1 to 64 letters, digits, '_' or '-'"
            )
        shape, dtype = _box_part(env_id, sub, f"observation key {key!r}")
        keys[key] = {"shape": list(shape), "dtype": dtype, "frame_stack": 0}
    if not keys:
        raise EnvSpecError(f"{env_id}: an empty Dict observation space")
    return {"obs_shape": (), "obs_keys": keys}


def spaces_to_spec_fields(env_id: str, obs_space: Any, act_space: Any) -> dict[str, Any]:
    """RunSpec fields from an env's single observation and action spaces."""
    fields = obs_spec_fields(env_id, obs_space)
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
