"""Content checks for decoded messages, against the run's settings.

The codec guarantees structure (types, fields, dtypes from the whitelist, sizes that
match shapes). These functions check meaning: shapes that match the environment and
the rollout length, actions inside the action space, finite and bounded numbers,
gradients and weights that match the network. Each failure raises ``InvalidMessage``
with a short ``reason`` that the learner logs and counts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from protocol import frames as framing
from protocol.messages import Experience, Gradient, Weights
from protocol.rollout import (
    CORE_STATE,
    EPISODE_DTYPES,
    GRADIENT_ROLLOUT_ARRAYS,
    layout,
    obs_arrays,
    packed_names,
    wire_names,
)
from protocol.spec import ObsPart, RunSpec

# Rewards beyond this magnitude are treated as corrupt input, not as a signal.
MAX_ABS_REWARD = 1e6
# A recurrent state beyond this magnitude is corrupt: an LSTM's hidden state stays in
# (-1, 1) and its cell state grows by at most 1 per step from where the actor reset it.
MAX_ABS_CORE_STATE = 1e6
# Float observations beyond this are corrupt: no env's state is this large, and the
# running variance of --obs-norm (float32, of squares) must not overflow on one.
MAX_ABS_OBS = 1e10
MAX_EPISODES_PER_BATCH = 1 << 20


class InvalidMessage(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _expect(arr: np.ndarray, name: str, dtype: str, shape: tuple[int, ...]) -> None:
    if arr.dtype.str != dtype:
        raise InvalidMessage("bad_dtype", f"{name} must be {dtype}, got {arr.dtype.str}")
    if arr.shape != shape:
        raise InvalidMessage("bad_shape", f"{name} must be {list(shape)}, got {list(arr.shape)}")


def _finite(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        raise InvalidMessage("not_finite", name)


def check_episodes(arrays: Mapping[str, np.ndarray]) -> None:
    rets, lens = arrays.get("ep_returns"), arrays.get("ep_lengths")
    if rets is None or lens is None:
        raise InvalidMessage("missing_array", "ep_returns and ep_lengths are required")
    k = rets.shape[0] if rets.ndim == 1 else -1
    if k > MAX_EPISODES_PER_BATCH:
        raise InvalidMessage("bad_shape", "too many episodes")
    _expect(rets, "ep_returns", EPISODE_DTYPES["ep_returns"], (k,))
    _expect(lens, "ep_lengths", EPISODE_DTYPES["ep_lengths"], (k,))
    _finite(rets, "ep_returns")
    if (lens < 1).any():
        raise InvalidMessage("out_of_range", "ep_lengths must be >= 1")


def check_experience(msg: Experience, spec: RunSpec, num_envs: int) -> int:
    """Raise ``InvalidMessage`` unless ``msg`` is a rollout of this run (the layout of
    protocol/rollout.py); return the number of valid transitions in it."""
    a = msg.arrays
    want = wire_names(spec)
    missing, extra = want - a.keys(), a.keys() - want
    if missing:
        raise InvalidMessage("missing_array", ",".join(sorted(missing)))
    if extra:  # e.g. whole observations in a frame-stacked run, or the other way round
        raise InvalidMessage("unexpected_array", ",".join(sorted(extra)))
    stacked = {p.name: p for p in spec.obs_parts if p.frame_stack > 1}
    for name, (dtype, shape) in layout(spec, num_envs).items():
        if name in stacked:
            _check_packed_obs(a, stacked[name], shape)
        else:
            _expect(a[name], name, dtype, shape)
    _check_actions(a["actions"], spec)
    for name in obs_arrays(spec):
        if a[name].dtype.kind == "f":
            _finite(a[name], name)
            if np.abs(a[name]).max(initial=0.0) > MAX_ABS_OBS:
                raise InvalidMessage("out_of_range", f"|{name}| > {MAX_ABS_OBS:g}")
    _finite(a["logp"], "logp")
    if CORE_STATE in a:
        _finite(a[CORE_STATE], CORE_STATE)
        if np.abs(a[CORE_STATE]).max(initial=0.0) > MAX_ABS_CORE_STATE:
            raise InvalidMessage("out_of_range", f"|{CORE_STATE}| > {MAX_ABS_CORE_STATE:g}")
    check_steps(a)
    check_episodes(a)
    return int(a["valid"].sum())


def _check_actions(acts: np.ndarray, spec: RunSpec) -> None:
    """Inside the action space: an index that is not would crash the loss."""
    if not acts.size:
        return
    if spec.action_kind == "box":
        _finite(acts, "actions")
        return
    if spec.action_kind == "discrete":
        below, above = acts < 0, acts >= spec.action_n
        detail = f"[0, {spec.action_n})"
    elif spec.action_kind == "multi_binary":
        below, above = acts < 0, acts > 1
        detail = "{0, 1}"
    else:  # multi_discrete: each component its own range, as indices from 0
        nvec = np.asarray(spec.action_nvec, np.int64).reshape(spec.action_shape)
        below, above = acts < 0, acts >= nvec
        detail = "[0, nvec) per component"
    if below.any() or above.any():
        raise InvalidMessage("out_of_range", f"actions must be in {detail}")


def check_steps(a: Mapping[str, np.ndarray]) -> None:
    """Rewards and flags as the collector (core/collector.py) writes them under
    gymnasium's next-step autoreset: a step that is not a transition (``valid`` False)
    carries no reward and no episode end, and the step after an episode end is the
    reset, never a transition, and only an episode end is followed by a reset. Anything
    else is not a rollout any env produced."""
    rew, term, trunc, valid = (a[k] for k in ("rewards", "terminated", "truncated", "valid"))
    _finite(rew, "rewards")
    if np.abs(rew).max(initial=0.0) > MAX_ABS_REWARD:
        raise InvalidMessage("out_of_range", f"|reward| > {MAX_ABS_REWARD:g}")
    done = term | trunc  # [T, N]
    if (done & ~valid).any():
        raise InvalidMessage("bad_flags", "an episode end on a step that is not a transition")
    if (rew[~valid] != 0).any():
        raise InvalidMessage("bad_flags", "a reward on a step that is not a transition")
    if (done[:-1] & valid[1:]).any():
        raise InvalidMessage("bad_flags", "a transition right after an episode end (the reset)")
    if (valid[:-1] & ~done[:-1] & ~valid[1:]).any():
        # A reset comes only after an end (an env error ends the running episodes as
        # truncated first): a value estimate would bootstrap across it.
        raise InvalidMessage(
            "bad_flags", "a step that is not a transition after one that did not end"
        )


def _check_packed_obs(a: Mapping[str, np.ndarray], part: ObsPart, obs_shape: tuple) -> None:
    """frames [M, *frame] in the part's dtype, M bounded by whole stacks everywhere;
    stack_idx [T+1, N, S] int32 pointing into them."""
    t1, n, s = obs_shape[:3]
    frames_name, idx_name = packed_names(part.key)
    frames, idx = a[frames_name], a[idx_name]
    m = frames.shape[0] if frames.ndim == len(obs_shape) - 2 else -1
    if m > framing.max_frames(t1 - 1, n, s):
        raise InvalidMessage("bad_shape", f"{frames_name}: more frames than whole stacks need")
    _expect(frames, frames_name, part.dtype, (m, *obs_shape[3:]))
    _expect(idx, idx_name, framing.STACK_IDX_DTYPE, (t1, n, s))
    problem = framing.check_stack_idx(idx, m)
    if problem:
        raise InvalidMessage("out_of_range", f"{idx_name}: {problem}")


def check_params(
    arrays: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]], prefix: str = ""
) -> None:
    """Exactly the named parameters, float32, the right shapes, finite."""
    # A Gradient carries rollout arrays beside its "grad/" family; a Weights message
    # (no prefix) does not, so there a stray "ep_returns" is an unexpected parameter.
    skip = GRADIENT_ROLLOUT_ARRAYS if prefix else ()
    names = {k for k in arrays if k.startswith(prefix) and k not in skip}
    want = {prefix + k for k in shapes}
    if names != want:
        raise InvalidMessage(
            "bad_params",
            f"missing {sorted(want - names)[:4]} unexpected {sorted(names - want)[:4]}",
        )
    for name, shape in shapes.items():
        arr = arrays[prefix + name]
        _expect(arr, prefix + name, "<f4", tuple(shape))
        _finite(arr, prefix + name)


def check_gradient(
    msg: Gradient, shapes: Mapping[str, tuple[int, ...]], spec: RunSpec, num_envs: int
) -> int:
    """Gradients for exactly the network's parameters, and the rollout they came from
    (rewards and flags of a [T, N] rollout of ``spec``): return its number of
    transitions, counted from ``valid``. The actor's own ``env_steps`` and loss terms
    are claims: they must agree with the data (and be finite), and are only logged."""
    a = msg.arrays
    check_params(a, shapes, prefix="grad/")
    missing = [k for k in GRADIENT_ROLLOUT_ARRAYS if k not in a]
    if missing:
        raise InvalidMessage("missing_array", ",".join(missing))
    for name, (dtype, shape) in layout(spec, num_envs).items():
        if name in GRADIENT_ROLLOUT_ARRAYS:
            _expect(a[name], name, dtype, shape)
    check_steps(a)
    check_episodes(a)
    for name in ("policy_loss", "value_loss", "entropy"):
        if not np.isfinite(getattr(msg, name)):
            raise InvalidMessage("not_finite", name)
    steps = int(a["valid"].sum())
    if msg.env_steps != steps:
        raise InvalidMessage("false_claim", f"env_steps {msg.env_steps}, the flags hold {steps}")
    return steps


def check_weights(msg: Weights, shapes: Mapping[str, tuple[int, ...]]) -> None:
    check_params(msg.arrays, shapes)
