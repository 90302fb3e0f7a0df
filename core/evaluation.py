"""Playing a policy for whole episodes in this process: no sockets, no training.

    played = play(spec, weights, episodes=10, seed=7)
    played.returns, played.lengths, played.complete

The learner uses it to confirm a "solved" with its own eyes (``--confirm-episodes``,
learner/confirm.py): the returns here come from an env the learner built and stepped,
not from any actor. One env, episodes one after another (several envs in parallel would
favour short episodes among the first N to finish).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from core.envs import make_vec_env
from core.models import ModelConfig
from core.policy import Policy
from protocol.spec import RunSpec


@dataclass(frozen=True)
class Played:
    returns: list[float]
    lengths: list[int]
    steps: int
    complete: bool  # all the episodes asked for were played (not cut by a step budget)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.returns)) if self.returns else None

    @property
    def std(self) -> float | None:
        return float(np.std(self.returns)) if self.returns else None


def play(
    spec: RunSpec,
    weights: Mapping[str, np.ndarray],
    *,
    episodes: int,
    seed: int,
    temperature: float = 1.0,
    max_steps: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Played:
    """Play ``episodes`` whole episodes with the policy of ``weights``, sampling actions
    as the actors do. Stops early (``complete`` False) after ``max_steps`` env steps or
    when ``should_stop()`` says so (checked every step)."""
    policy = Policy(ModelConfig.from_spec(spec), temperature=temperature, seed=seed)
    policy.load(weights, version=0)
    obs_dtype = np.dtype(spec.obs_dtype)
    envs = make_vec_env(spec.env_id, 1, spec.env_kwargs, spec.env_family)
    returns: list[float] = []
    lengths: list[int] = []
    steps = 0
    try:
        obs, _ = envs.reset(seed=seed)
        ret, length = 0.0, 0
        while len(returns) < episodes:
            if (max_steps is not None and steps >= max_steps) or (should_stop and should_stop()):
                break
            actions, _ = policy.act(np.asarray(obs, dtype=obs_dtype))  # [1, ...]
            obs, reward, terminated, truncated, _ = envs.step(policy.to_env(actions))
            ret += float(reward[0])
            length += 1
            steps += 1
            if terminated[0] or truncated[0]:
                returns.append(ret)
                lengths.append(length)
                ret, length = 0.0, 0
                # An explicit reset rather than the vector env's autoreset step.
                obs, _ = envs.reset(seed=seed + len(returns))
    finally:
        envs.close()
    return Played(returns, lengths, steps, complete=len(returns) == episodes)
