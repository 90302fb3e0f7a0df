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

A Dict observation space (``RunSpec.obs_keys``) makes ``obs`` a map {key: array}, each
key [T+1, N, *its shape] in its own dtype, on the wire as ``obs/<key>`` (a
frame-stacked key as ``obs/<key>/frames`` and ``obs/<key>/stack_idx``). ``map_obs``
applies a function to whichever form an observation has.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from protocol import frames as framing
from protocol.spec import RunSpec, obs_name

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


# An observation (a step's [N, ...], or a rollout's [T+1, N, ...]): one array, or one
# per key of a Dict space.
Obs = Any  # np.ndarray | PackedObs | dict[str, np.ndarray | PackedObs], or torch's


def map_obs(fn: Callable[[Any], Any], obs: Obs) -> Obs:
    """``fn`` applied to the array of a Box observation or to each key's of a Dict one."""
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, dict) else fn(obs)


def obs_rows(obs: Obs) -> int:
    """The length of an observation's first axis (N envs for a step)."""
    return len(next(iter(obs.values())) if isinstance(obs, dict) else obs)


def packed_names(key: str | None) -> tuple[str, str]:
    """The frames and stack_idx arrays of a frame-stacked part (a Dict's ``key``)."""
    if key is None:
        return PACKED_OBS_ARRAYS
    return f"{obs_name(key)}/frames", f"{obs_name(key)}/stack_idx"


def obs_arrays(spec: RunSpec) -> tuple[str, ...]:
    """The names the observations of one rollout of ``spec`` travel under."""
    names: list[str] = []
    for part in spec.obs_parts:
        names += packed_names(part.key) if part.frame_stack > 1 else [part.name]
    return tuple(names)


def wire_obs(spec: RunSpec, raw: Any) -> Obs:
    """An env's observation as it travels: each array in its part's wire dtype
    (float64 vectors as float32), a Dict's keys as the spec lists them."""
    parts = spec.obs_parts
    if parts[0].key is None:
        return np.asarray(raw, dtype=parts[0].dtype)
    return {p.key: np.asarray(raw[p.key], dtype=p.dtype) for p in parts}


def _obs_to_arrays(obs: Obs) -> dict[str, np.ndarray]:
    """A rollout's observations under their wire names."""
    out: dict[str, np.ndarray] = {}
    for key, value in obs.items() if isinstance(obs, dict) else [(None, obs)]:
        if isinstance(value, PackedObs):
            frames, idx = packed_names(key)
            out.update({frames: value.frames, idx: value.stack_idx})
        else:
            out[obs_name(key)] = value
    return out


def _obs_from_arrays(arrays: Mapping[str, np.ndarray]) -> Obs:
    """The inverse of ``_obs_to_arrays`` on a checked message's arrays."""
    if "obs" in arrays:
        return arrays["obs"]
    if "frames" in arrays:
        return PackedObs(arrays["frames"], arrays["stack_idx"])
    keys = dict.fromkeys(name.split("/")[1] for name in arrays if name.startswith("obs/"))
    out: dict[str, np.ndarray | PackedObs] = {}
    for key in keys:
        name = obs_name(key)
        if name in arrays:
            out[key] = arrays[name]
        else:
            frames, idx = packed_names(key)
            out[key] = PackedObs(arrays[frames], arrays[idx])
    return out


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
    obs = {p.name: (p.dtype, (t + 1, n, *p.shape)) for p in spec.obs_parts}
    return {
        **state,
        **obs,
        "actions": (spec.action_dtype, (t, n, *act_tail)),
        "logp": ("<f4", (t, n)),
        "rewards": ("<f4", (t, n)),
        "terminated": ("|b1", (t, n)),
        "truncated": ("|b1", (t, n)),
        "valid": ("|b1", (t, n)),
    }


@dataclass
class Rollout:
    obs: Obs  # [T+1, N, *obs_shape], packed, or a Dict's {key: [T+1, N, *shape]}
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
        obs = _obs_from_arrays(arrays)
        rest = {k: v for k, v in arrays.items() if k != "obs" and not k.startswith("obs/")}
        empty = {k: np.zeros(0, dtype=d) for k, d in EPISODE_DTYPES.items()}
        return cls(obs=obs, **rest, **empty)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Rollout:
        """From the arrays of a (checked) Experience message; no copy."""
        return cls(
            obs=_obs_from_arrays(arrays),
            core_state=arrays.get(CORE_STATE),
            **{name: arrays[name] for name in ROLLOUT_ARRAYS if name != "obs"},
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays under their wire names, as they are held (``obs`` whole or
        packed, a Dict's keys each; no ``core_state`` in a feed-forward run)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "obs"}
        if self.core_state is None:
            del out[CORE_STATE]
        return {**_obs_to_arrays(self.obs), **out}

    def gradient_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a Gradient message carries of this rollout (beside ``grad/...``)."""
        return {name: getattr(self, name) for name in GRADIENT_ROLLOUT_ARRAYS}

    def wire_arrays(self, spec: RunSpec) -> dict[str, np.ndarray]:
        """The arrays an Experience message of ``spec`` carries: frame-stacked
        observations (or Dict keys) packed so that each frame travels once."""
        stacked = {p.key for p in spec.obs_parts if p.frame_stack > 1}
        if not stacked:
            return self.arrays()

        def pack(key: str | None, value: Any) -> Any:
            if key not in stacked or isinstance(value, PackedObs):
                return value
            return PackedObs(*framing.pack(value))

        obs = (
            {k: pack(k, v) for k, v in self.obs.items()}
            if isinstance(self.obs, dict)
            else pack(None, self.obs)
        )
        return Rollout(**{**vars(self), "obs": obs}).arrays()

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
            elif f.name == "obs" and isinstance(parts[0], dict):
                out["obs"] = {k: _concat_obs([p[k] for p in parts]) for k in parts[0]}
            elif f.name == "obs":
                out["obs"] = _concat_obs(parts)
            else:
                out[f.name] = np.concatenate(parts, axis=step_axis.get(f.name, 0))
        return Rollout(**out)


def _concat_obs(parts: Sequence[np.ndarray | PackedObs]) -> np.ndarray | PackedObs:
    if isinstance(parts[0], PackedObs):
        return PackedObs.concat(parts)
    return np.concatenate(parts, axis=1)
