"""Stacked image observations on the wire: each frame once.

An Atari observation is a stack of the last S frames, ``obs[t, n] = [f(t-S+1), ...,
f(t)]``, so consecutive observations of one env share S-1 frames. Sent as they are, a
rollout repeats every frame S times (a 4x84x84 uint8 observation is 28 kB; a new frame
is 7 kB). The Experience message of a frame-stacked run (``RunSpec.frame_stack`` S > 1)
therefore carries, instead of ``obs``:

    frames     [M, *frame_shape]  obs_dtype  distinct frames, in the order first used
    stack_idx  [T+1, N, S]        <i4       obs[t, n, s] = frames[stack_idx[t, n, s]]

The actor builds them (``pack``): at t = 0 each env's whole stack is sent; after that,
where obs[t, n] is obs[t-1, n] shifted by one frame, only its newest frame is added and
the indices of the older ones are reused; anywhere else (a reset, an env that does not
stack as expected) the whole stack is added. That rule only compares arrays, so the
encoding is exact for any observations whatever the env does on reset. The learner
rebuilds the stacks with one gather (``unpack`` in numpy, or ``torch.index_select`` on
the training device, so only the frames cross the host-to-device link).

Bytes per transition, T steps and N envs, no resets: F * (T + S) / T + 4 * S * (T+1) / T
for a frame of F bytes; for Atari (F = 7056, S = 4) at the preset's T = 80 that is
7.4 kB against 28.2 kB stacked.
"""

from __future__ import annotations

import numpy as np

STACK_IDX_DTYPE = "<i4"


def pack(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """obs [T+1, N, S, *frame] -> (frames [M, *frame], stack_idx [T+1, N, S] int32)."""
    t1, n, s = obs.shape[:3]
    idx = np.empty((t1, n, s), dtype=STACK_IDX_DTYPE)
    idx[0] = np.arange(n * s, dtype=np.int32).reshape(n, s)
    parts = [obs[0].reshape(n * s, *obs.shape[3:])]
    count = n * s
    for t in range(1, t1):
        # shifted[n]: the stack is the previous one moved by one frame (the usual case).
        shifted = (obs[t, :, :-1] == obs[t - 1, :, 1:]).reshape(n, -1).all(axis=1)
        new = obs[t, :, -1]  # [N, *frame]
        idx[t, :, :-1] = idx[t - 1, :, 1:]
        idx[t, :, -1] = count + np.arange(n, dtype=np.int32)
        parts.append(new)
        count += n
        fresh = np.flatnonzero(~shifted)
        if fresh.size:  # whole stacks for the envs that did not shift (resets)
            k = fresh.size * (s - 1)
            idx[t, fresh, :-1] = (count + np.arange(k, dtype=np.int32)).reshape(fresh.size, s - 1)
            parts.append(obs[t, fresh, :-1].reshape(k, *obs.shape[3:]))
            count += k
    return np.concatenate(parts), idx


def unpack(frames: np.ndarray, stack_idx: np.ndarray) -> np.ndarray:
    """The inverse of ``pack``: obs [T+1, N, S, *frame] (numpy; the learner gathers on
    its device instead, see core/batch.py)."""
    return frames[stack_idx]


def max_frames(rollout_len: int, num_envs: int, stack: int) -> int:
    """The most frames a packed rollout may hold (every stack sent whole)."""
    return (rollout_len + 1) * num_envs * stack


def check_stack_idx(stack_idx: np.ndarray, num_frames: int) -> str:
    """'' if every index points into the frames, else what is wrong."""
    if stack_idx.size and (stack_idx.min() < 0 or stack_idx.max() >= num_frames):
        return f"stack_idx must be in [0, {num_frames})"
    return ""
