"""Rollouts as torch tensors on the training device: what a loss consumes.

    batch = Batch.from_rollouts([rollout_a, rollout_b], device)   # [T, Na + Nb, ...]
    terms = algo.loss(model, batch, cfg)

Observations keep their wire dtype (uint8 images stay uint8 until the model's encoder
scales them, on the device); everything else is as protocol/rollout.py defines it.
Frame-stacked observations arrive packed (each frame once, protocol/frames.py): only the
frames and their indices go to the device, and the stacks are gathered there.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from protocol.rollout import Obs, PackedObs, Rollout, map_obs


def _host(parts: Sequence[np.ndarray], axis: int, pinned: bool) -> torch.Tensor:
    """The parts concatenated on ``axis`` into one CPU tensor: page-locked when the
    batch goes to a GPU (so the copy can run asynchronously), one copy in all."""
    if len(parts) == 1 and not pinned:
        # Arrays decoded from frames are read-only views of them. No copy is made for
        # that (the loss never writes to its batch); torch only warns that it could.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(np.ascontiguousarray(parts[0]))
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    dtype = torch.from_numpy(np.zeros(0, dtype=parts[0].dtype)).dtype
    out = torch.empty(shape, dtype=dtype, pin_memory=pinned)
    np.concatenate(parts, axis=axis, out=out.numpy())
    return out


def _tensors(parts: Sequence[np.ndarray], axis: int, device: torch.device) -> torch.Tensor:
    return _host(parts, axis, device.type == "cuda").to(device, non_blocking=True)


def _obs(parts: Sequence[Obs], device: torch.device) -> torch.Tensor | dict:
    if isinstance(parts[0], dict):  # a Dict observation: each key on its own
        return {key: _obs([p[key] for p in parts], device) for key in parts[0]}
    if not isinstance(parts[0], PackedObs):
        return _tensors(parts, 1, device)
    packed = PackedObs.concat(parts) if len(parts) > 1 else parts[0]
    shape = (*packed.stack_idx.shape, *packed.frames.shape[1:])  # [T+1, N, S, *frame]
    flat_idx = packed.stack_idx.reshape(-1)
    if device.type == "cpu":  # numpy's take copies whole rows: 4x torch's fancy indexing
        return torch.from_numpy(np.take(packed.frames, flat_idx, axis=0).reshape(shape))
    frames = _tensors([packed.frames], 0, device)  # [M, *frame]: only these cross to the GPU
    idx = _tensors([flat_idx], 0, device).long()
    return frames.index_select(0, idx).view(shape)  # gathered on the device


@dataclass(frozen=True)
class Batch:
    obs: torch.Tensor | dict  # [T+1, N, *obs_shape], or a Dict's {key: [T+1, N, *shape]}
    actions: torch.Tensor  # [T, N] or [T, N, *act_shape]
    behaviour_logp: torch.Tensor  # [T, N]
    rewards: torch.Tensor  # [T, N]
    terminated: torch.Tensor  # [T, N] bool
    truncated: torch.Tensor  # [T, N] bool
    valid: torch.Tensor  # [T, N] bool
    # Versions between the policy that acted and the learner's at this update, per step
    # (each rollout's value down its columns); None: unknown, taken as 0 (fresh).
    lag: torch.Tensor | None = None  # [T, N] int32
    # A recurrent network's state per env before obs[0] (protocol/rollout.py); the
    # network unrolls from it (core/models ActorCritic.unroll). None: feed-forward.
    core_state: torch.Tensor | None = None  # [N, S] float32

    @classmethod
    def from_rollouts(
        cls,
        rollouts: Sequence[Rollout],
        device: torch.device,
        lags: Sequence[int] | None = None,
    ) -> Batch:
        """Rollouts side by side on the env axis, [T, N1 + N2 + ...], on ``device``;
        ``lags``: each rollout's policy lag, if known."""

        def cat(name: str) -> torch.Tensor:
            return _tensors([getattr(r, name) for r in rollouts], 1, device)

        batch = cls(
            obs=_obs([r.obs for r in rollouts], device),
            actions=cat("actions"),
            behaviour_logp=cat("logp"),
            rewards=cat("rewards"),
            terminated=cat("terminated"),
            truncated=cat("truncated"),
            valid=cat("valid"),
            core_state=None
            if rollouts[0].core_state is None
            else _tensors([r.core_state for r in rollouts], 0, device),
        )
        return batch if lags is None else batch.with_lags(lags, [r.num_envs for r in rollouts])

    def with_lags(self, lags: Sequence[int], num_envs: Sequence[int]) -> Batch:
        """This batch with each rollout's lag (rollouts of ``num_envs`` columns each, in
        order) written down its columns."""
        per_column = np.repeat(np.asarray(lags, dtype=np.int32), num_envs)  # [N]
        t = self.valid.shape[0]
        lag = torch.from_numpy(
            np.ascontiguousarray(np.broadcast_to(per_column, (t, len(per_column))))
        )
        return dataclasses.replace(self, lag=lag.to(self.valid.device))

    def _present(self):
        return [f for f in fields(self) if getattr(self, f.name) is not None]

    def columns(self, idx: torch.Tensor) -> Batch:
        """The envs ``idx`` (whole columns: every step of each, and their core
        states): a PPO minibatch."""
        return Batch(
            **{
                f.name: map_obs(
                    lambda x, axis=int(f.name != "core_state"): x.index_select(axis, idx),
                    getattr(self, f.name),
                )
                for f in self._present()
            }
        )

    def steps_at(self, flat: torch.Tensor) -> Batch:
        """The transitions at ``flat`` (indices into the [T * N] steps, time-major) as a
        batch of one step each, [1, B]: a PPO minibatch smaller than an env column. Its
        bootstrap row repeats the observations (the loss reads values of the first row
        only; targets come precomputed for the whole batch). Feed-forward only: a
        recurrent network needs the steps before a transition to evaluate it."""
        if self.core_state is not None:
            raise ValueError("a recurrent batch is split by whole env columns, not steps")
        t, n = self.valid.shape

        def steps(obs: torch.Tensor) -> torch.Tensor:
            picked = obs[:-1].reshape(t * n, *obs.shape[2:]).index_select(0, flat)
            return torch.stack([picked, picked])  # [2, B, *obs_shape]

        out = {"obs": map_obs(steps, self.obs)}
        for f in self._present():
            if f.name != "obs":
                x = getattr(self, f.name)
                out[f.name] = x.reshape(t * n, *x.shape[2:]).index_select(0, flat).unsqueeze(0)
        return Batch(**out)

    @property
    def num_envs(self) -> int:
        return self.valid.shape[1]

    def record_stream(self, stream: torch.cuda.Stream) -> None:
        """Mark the tensors as used on ``stream`` (they were made on another one)."""
        for f in self._present():
            map_obs(lambda x: x.record_stream(stream), getattr(self, f.name))

    @property
    def transitions(self) -> int:
        return int(self.valid.sum())
