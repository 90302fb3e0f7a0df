"""Rollouts as torch tensors on the training device: what a loss consumes.

    batch = Batch.from_rollouts([rollout_a, rollout_b], device)   # [T, Na + Nb, ...]
    terms = algo.loss(model, batch, cfg)

Observations keep their wire dtype (uint8 images stay uint8 until the model's encoder
scales them, on the device); everything else is as protocol/rollout.py defines it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from protocol.rollout import Rollout


def _tensor(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    # Arrays decoded from frames are read-only views of them. No copy is made for that
    # (on the CPU none is needed, on a GPU the transfer is the copy): torch only warns
    # that it could write through, and no loss writes to its batch.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
    return tensor.to(device, non_blocking=True)


@dataclass(frozen=True)
class Batch:
    obs: torch.Tensor  # [T+1, N, *obs_shape]
    actions: torch.Tensor  # [T, N] or [T, N, *act_shape]
    behaviour_logp: torch.Tensor  # [T, N]
    rewards: torch.Tensor  # [T, N]
    terminated: torch.Tensor  # [T, N] bool
    truncated: torch.Tensor  # [T, N] bool
    valid: torch.Tensor  # [T, N] bool

    @classmethod
    def from_rollouts(cls, rollouts: Sequence[Rollout], device: torch.device) -> Batch:
        r = Rollout.concat(rollouts)
        return cls(
            obs=_tensor(r.obs, device),
            actions=_tensor(r.actions, device),
            behaviour_logp=_tensor(r.logp, device),
            rewards=_tensor(r.rewards, device),
            terminated=_tensor(r.terminated, device),
            truncated=_tensor(r.truncated, device),
            valid=_tensor(r.valid, device),
        )

    @property
    def transitions(self) -> int:
        return int(self.valid.sum())
