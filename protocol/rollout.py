"""The rollout: the one definition of what an actor collects and a learner trains on.

A rollout of T steps from N environments, time-major:

    obs          [T+1, N, *obs_shape]  obs_dtype  observation before each step, plus the
                                                  one after the last step (bootstrap)
    actions      [T, N]               int64      Discrete
                 [T, N, *act_shape]   float32    Box (the sample, before any clipping)
    logp         [T, N]               float32    log-prob of the action under the
                                                 behaviour policy (off-policy corrections)
    rewards      [T, N]               float32
    terminated   [T, N]               bool       the episode ended in a terminal state at
                                                 step t: no bootstrap
    truncated    [T, N]               bool       the episode was cut (time limit) at step t:
                                                 bootstrap from V(obs[t+1]), which under
                                                 next-step autoreset is the final real
                                                 observation of that episode
    valid        [T, N]               bool       False for gymnasium's next-step autoreset
                                                 steps, which are not transitions
    ep_returns   [K]                  float64    episodes that finished in this rollout
    ep_lengths   [K]                  int64

``layout`` derives names, dtypes and shapes from a ``RunSpec``; the actor allocates from
it, the Experience message carries exactly these arrays, the content checks compare
against it, and the learner reads the typed ``Rollout``. Numpy only: torch tensors are
made in core/batch.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

from protocol.spec import RunSpec

EPISODE_ARRAYS = ("ep_returns", "ep_lengths")
STEP_ARRAYS = ("actions", "logp", "rewards", "terminated", "truncated", "valid")
ROLLOUT_ARRAYS = ("obs", *STEP_ARRAYS, *EPISODE_ARRAYS)
EPISODE_DTYPES = {"ep_returns": "<f8", "ep_lengths": "<i8"}


def layout(spec: RunSpec, num_envs: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype, shape)} of the per-step arrays of one rollout of ``spec`` from
    ``num_envs`` envs (the episode arrays have a data-dependent length K)."""
    t, n = spec.rollout_len, num_envs
    act_tail = () if spec.action_kind == "discrete" else tuple(spec.action_shape)
    return {
        "obs": (spec.obs_dtype, (t + 1, n, *spec.obs_shape)),
        "actions": (spec.action_dtype, (t, n, *act_tail)),
        "logp": ("<f4", (t, n)),
        "rewards": ("<f4", (t, n)),
        "terminated": ("|b1", (t, n)),
        "truncated": ("|b1", (t, n)),
        "valid": ("|b1", (t, n)),
    }


@dataclass
class Rollout:
    obs: np.ndarray  # [T+1, N, *obs_shape]
    actions: np.ndarray  # [T, N] or [T, N, *act_shape]
    logp: np.ndarray  # [T, N]
    rewards: np.ndarray  # [T, N]
    terminated: np.ndarray  # [T, N]
    truncated: np.ndarray  # [T, N]
    valid: np.ndarray  # [T, N]
    ep_returns: np.ndarray  # [K]
    ep_lengths: np.ndarray  # [K]

    @classmethod
    def allocate(cls, spec: RunSpec, num_envs: int) -> Rollout:
        """Fresh arrays for one rollout (flags False, no episodes yet)."""
        arrays = {
            name: np.zeros(shape, dtype=dtype)
            for name, (dtype, shape) in layout(spec, num_envs).items()
        }
        empty = {k: np.zeros(0, dtype=d) for k, d in EPISODE_DTYPES.items()}
        return cls(**arrays, **empty)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Rollout:
        """From the arrays of a (checked) Experience message; no copy."""
        return cls(**{name: arrays[name] for name in ROLLOUT_ARRAYS})

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays an Experience message carries."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_envs(self) -> int:
        return self.rewards.shape[1]

    @property
    def transitions(self) -> int:
        return int(self.valid.sum())

    @staticmethod
    def concat(rollouts: Sequence[Rollout]) -> Rollout:
        """Rollouts of the same length side by side on the env axis:
        [T, N1 + N2 + ...]; episodes one after another."""
        if len(rollouts) == 1:
            return rollouts[0]
        step_axis = {name: 1 for name in ("obs", *STEP_ARRAYS)}
        out = {}
        for f in fields(Rollout):
            parts = [getattr(r, f.name) for r in rollouts]
            out[f.name] = np.concatenate(parts, axis=step_axis.get(f.name, 0))
        return Rollout(**out)
