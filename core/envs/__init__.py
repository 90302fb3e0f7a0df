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
    keys = fields.get("obs_keys")
    if not keys:
        return {"env_family": family.name, "frame_stack": stack if stack > 1 else 0, **fields}
    stacks = stack if isinstance(stack, dict) else {}
    if not isinstance(stack, dict) and stack > 1 or stacks.keys() - keys.keys():
        raise EnvSpecError(
            f"{env_id}: a Dict observation's env names its stacked keys in "
            f"metadata['frame_stack'] as {{key: frames}}, got {stack!r}"
        )
    for key, frames in stacks.items():
        keys[key]["frame_stack"] = frames if frames > 1 else 0
    return {"env_family": family.name, **fields}


def default_env_groups(env_id: str, family: str | None = None) -> int:
    """How many groups an actor's envs are split into (core/collector.py) unless it
    says: the family's ``env_groups`` (2 for ale-py, whose vector env steps in its own
    threads while the policy computes; 1 otherwise)."""
    return int(getattr(family_for(env_id, family), "env_groups", 1))


def reward_threshold(env_id: str) -> float | None:
    return family_for(env_id).reward_threshold(env_id)


def check_env_matches(envs: gym.vector.VectorEnv, spec: Any) -> None:
    """Refuse an env whose observations differ from what the run spec says (each key of
    a Dict observation: its shape and wire dtype)."""
    space = envs.single_observation_space
    for part in spec.obs_parts:
        sub = space if part.key is None else getattr(space, "spaces", {}).get(part.key)
        shape = tuple(getattr(sub, "shape", None) or ())
        dtype = wire_obs_dtype(sub.dtype) if getattr(sub, "dtype", None) is not None else None
        if shape != part.shape or dtype != part.dtype:
            raise EnvSpecError(
                f"env observations ({part.name}) {shape} {dtype} != run spec "
                f"{list(part.shape)} {part.dtype}"
            )
    if spec.obs_keys and set(getattr(space, "spaces", {})) != set(spec.obs_keys):
        raise EnvSpecError(f"env observation keys differ from the run spec's {list(spec.obs_keys)}")


__all__ = [
    "FAMILIES",
    "EnvFamily",
    "EnvSpecError",
    "check_env_matches",
    "default_env_groups",
    "describe",
    "family_for",
    "make_vec_env",
    "reward_threshold",
]
