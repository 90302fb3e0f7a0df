"""The rollout: the one definition of what an actor collects and a learner trains on.

A rollout of T steps from N environments, time-major:

    obs          [T+1, N, *obs_shape]  obs_dtype  observation before each step, plus the
                                                  one after the last step (bootstrap)
    actions      [T, N]               int64      Discrete
                 [T, N, *act_shape]   float32    Box (the sample, before any clipping)
                 [T, N, *act_shape]   int64      MultiDiscrete (indices from 0 per
                                                 component), MultiBinary (0 or 1)
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
    core_state   [N, S]               float32    recurrent runs only (RunSpec.core_state_size
                                                 S > 0): the core's state per env before
                                                 obs[0]; the learner unrolls from it, zeroing
                                                 an env's state before obs[t+1] wherever
                                                 step t is not valid (an episode restarts)
    ep_returns   [K]                  float64    episodes that finished in this rollout, as
    ep_lengths   [K]                  int64      the actor counted them: a claim the learner
                                                 checks against the rewards and flags
                                                 (learner/episodes.py), never a figure it uses

``layout`` derives names, dtypes and shapes from a ``RunSpec``; the actor allocates from
it, the Experience message carries exactly these arrays (``wire_arrays``), the content
checks compare against it, and the learner reads the typed ``Rollout``. Numpy only:
torch tensors are made in core/batch.py.

Frame-stacked runs (``RunSpec.frame_stack``) send ``obs`` as distinct frames plus
indices (protocol/frames.py); the learner's ``Rollout`` then holds a ``PackedObs``,
which core/batch.py unpacks on the training device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

from protocol import frames as framing
from protocol.spec import RunSpec

EPISODE_ARRAYS = ("ep_returns", "ep_lengths")
STEP_ARRAYS = ("actions", "logp", "rewards", "terminated", "truncated", "valid")
ROLLOUT_ARRAYS = ("obs", *STEP_ARRAYS, *EPISODE_ARRAYS)
EPISODE_DTYPES = {"ep_returns": "<f8", "ep_lengths": "<i8"}
# What a Gradient carries of its rollout beside the gradients: enough for the learner to
# derive the episodes and count the env steps itself (learner/episodes.py), a few kB.
GRADIENT_ROLLOUT_ARRAYS = ("rewards", "terminated", "truncated", "valid", *EPISODE_ARRAYS)
PACKED_OBS_ARRAYS = ("frames", "stack_idx")
# A recurrent core's state at the rollout's start, [N, S]: env-major, one row per env.
CORE_STATE = "core_state"


def obs_arrays(spec: RunSpec) -> tuple[str, ...]:
    """The names the observations of one rollout of ``spec`` travel under."""
    return PACKED_OBS_ARRAYS if spec.frame_stack > 1 else ("obs",)


def wire_names(spec: RunSpec) -> frozenset[str]:
    """Exactly the arrays an Experience of ``spec`` carries."""
    state = (CORE_STATE,) if spec.core_state_size else ()
    return frozenset((*obs_arrays(spec), *STEP_ARRAYS, *state, *EPISODE_ARRAYS))


def max_envs(spec: RunSpec, max_frame_bytes: int) -> int:
    """The most envs one actor may run for a rollout of ``spec`` to fit: every array is
    one ZeroMQ frame, and a frame over the receiver's limit is cut off by ZeroMQ. The
    largest is the observations; a packed rollout whose every stack is sent whole is as
    large as the unpacked one, so that is the bound."""
    per_env = max(
        math.prod(shape) * np.dtype(dtype).itemsize  # one env's share of each array
        for dtype, shape in layout(spec, 1).values()
    )
    return max_frame_bytes // per_env


def too_large(spec: RunSpec, num_envs: int, max_frame_bytes: int) -> str:
    """'' if a rollout of ``num_envs`` envs fits, else a message saying which flag to
    change."""
    fit = max_envs(spec, max_frame_bytes)
    if num_envs <= fit:
        return ""
    mb = max_frame_bytes / 2**20
    return (
        f"a rollout of {num_envs} envs x {spec.rollout_len} steps of {list(spec.obs_shape)} "
        f"observations can exceed the {mb:g} MiB frame limit; use --envs {max(fit, 1)} or "
        "fewer, a shorter --rollout-len, or raise the learner's --max-frame-bytes"
    )


@dataclass(frozen=True)
class PackedObs:
    """Observations [T+1, N, S, *frame] as distinct frames and indices (frames.py)."""

    frames: np.ndarray  # [M, *frame]
    stack_idx: np.ndarray  # [T+1, N, S] int32

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.stack_idx.shape, *self.frames.shape[1:])

    def unpack(self) -> np.ndarray:
        return framing.unpack(self.frames, self.stack_idx)

    @staticmethod
    def concat(parts: Sequence[PackedObs]) -> PackedObs:
        """Side by side on the env axis: the frames one after another, each part's
        indices moved past the frames before it."""
        offsets = np.cumsum([0] + [len(p.frames) for p in parts[:-1]])
        return PackedObs(
            frames=np.concatenate([p.frames for p in parts]),
            stack_idx=np.concatenate(
                [p.stack_idx + np.int32(o) for p, o in zip(parts, offsets, strict=True)], axis=1
            ),
        )


def layout(spec: RunSpec, num_envs: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype, shape)} of the fixed-shape arrays of one rollout of ``spec`` from
    ``num_envs`` envs (the episode arrays have a data-dependent length K): the per-step
    arrays, and a recurrent run's ``core_state``."""
    t, n = spec.rollout_len, num_envs
    act_tail = () if spec.action_kind == "discrete" else tuple(spec.action_shape)
    state = {CORE_STATE: ("<f4", (n, spec.core_state_size))} if spec.core_state_size else {}
    return {
        **state,
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
    obs: np.ndarray | PackedObs  # [T+1, N, *obs_shape]
    actions: np.ndarray  # [T, N] or [T, N, *act_shape]
    logp: np.ndarray  # [T, N]
    rewards: np.ndarray  # [T, N]
    terminated: np.ndarray  # [T, N]
    truncated: np.ndarray  # [T, N]
    valid: np.ndarray  # [T, N]
    ep_returns: np.ndarray  # [K]
    ep_lengths: np.ndarray  # [K]
    core_state: np.ndarray | None = None  # [N, S], recurrent runs only

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
        obs = (
            PackedObs(arrays["frames"], arrays["stack_idx"])
            if "frames" in arrays
            else arrays["obs"]
        )
        return cls(
            obs=obs,
            core_state=arrays.get(CORE_STATE),
            **{name: arrays[name] for name in ROLLOUT_ARRAYS if name != "obs"},
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as they are held (``obs`` whole, or packed; no ``core_state``
        in a feed-forward run)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.core_state is None:
            del out[CORE_STATE]
        if isinstance(self.obs, PackedObs):
            del out["obs"]
            out.update(frames=self.obs.frames, stack_idx=self.obs.stack_idx)
        return out

    def gradient_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a Gradient message carries of this rollout (beside ``grad/...``)."""
        return {name: getattr(self, name) for name in GRADIENT_ROLLOUT_ARRAYS}

    def wire_arrays(self, spec: RunSpec) -> dict[str, np.ndarray]:
        """The arrays an Experience message of ``spec`` carries: frame-stacked
        observations packed so that each frame travels once."""
        if spec.frame_stack > 1 and not isinstance(self.obs, PackedObs):
            frames, stack_idx = framing.pack(self.obs)
            return Rollout(**{**vars(self), "obs": PackedObs(frames, stack_idx)}).arrays()
        return self.arrays()

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
        [T, N1 + N2 + ...] (core states [N1 + N2 + ..., S]); episodes one after
        another."""
        if len(rollouts) == 1:
            return rollouts[0]
        step_axis = {name: 1 for name in ("obs", *STEP_ARRAYS)}
        out = {}
        for f in fields(Rollout):
            parts = [getattr(r, f.name) for r in rollouts]
            if f.name == CORE_STATE and parts[0] is None:
                out[f.name] = None
            elif f.name == "obs" and isinstance(parts[0], PackedObs):
                out["obs"] = PackedObs.concat(parts)
            else:
                out[f.name] = np.concatenate(parts, axis=step_axis.get(f.name, 0))
        return Rollout(**out)
