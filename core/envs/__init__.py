"""Environment families (family.py for the contract). Registered families, first match
wins: ale (``ALE/<Game>-v5``, ale-py's C++ vector env), then gymnasium (any registered
id; the fallback).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from core.envs import catch, memory, structured
from core.envs.ale_family import AleFamily
from core.envs.family import EnvFamily, EnvSpecError, spaces_to_spec_fields, wire_obs_dtype
from core.envs.gymnasium_family import GymnasiumFamily

FAMILIES: tuple[EnvFamily, ...] = (AleFamily(), GymnasiumFamily())
catch.register()  # zmq_a3c/Catch-v0, the small image task (catch.py)
structured.register()  # MatchMulti-v0 and MatchBits-v0: MultiDiscrete, MultiBinary
memory.register()  # CartPoleNoVel-v1: CartPole without velocities, a memory task


def family_for(env_id: str, name: str | None = None) -> EnvFamily:
    """The family named ``name`` (as a RunSpec says), else the first that matches."""
    for family in FAMILIES:
        if (family.name == name) if name else family.matches(env_id):
            return family
    raise EnvSpecError(f"no environment family {name or ''} for {env_id!r}")


def make_vec_env(
    env_id: str, num_envs: int, env_kwargs: dict | None = None, family: str | None = None
) -> gym.vector.VectorEnv:
    return family_for(env_id, family).make(env_id, num_envs, dict(env_kwargs or {}))


def describe(env_id: str, env_kwargs: dict | None = None) -> dict[str, Any]:
    """RunSpec fields that come from the env: family, observation shape and dtype,
    frame stacking, and the action space."""
    family = family_for(env_id)
    envs = family.make(env_id, 1, dict(env_kwargs or {}))
    try:
        fields = spaces_to_spec_fields(
            env_id, envs.single_observation_space, envs.single_action_space
        )
        stack = family.frame_stack(envs)
    finally:
        envs.close()
    return {"env_family": family.name, "frame_stack": stack if stack > 1 else 0, **fields}


def reward_threshold(env_id: str) -> float | None:
    return family_for(env_id).reward_threshold(env_id)


def check_env_matches(envs: gym.vector.VectorEnv, obs_shape: tuple, obs_dtype: str) -> None:
    """Refuse an env whose observations differ from what the run spec says."""
    space = envs.single_observation_space
    if tuple(space.shape) != tuple(obs_shape) or wire_obs_dtype(space.dtype) != obs_dtype:
        raise EnvSpecError(
            f"env observations {space.shape} {space.dtype} != run spec {obs_shape} {obs_dtype}"
        )


__all__ = [
    "FAMILIES",
    "EnvFamily",
    "EnvSpecError",
    "check_env_matches",
    "describe",
    "family_for",
    "make_vec_env",
    "reward_threshold",
]
