"""RunSpec: the settings a learner hands each actor in ``Welcome``.

An actor needs only the learner's address; everything it must agree on with the
learner arrives here: the environment (id, family, spaces, observation dtype), the
rollout shape, the network, how it coordinates with the learner, and, for actors that
compute gradients, the loss settings. Nothing crosses the wire that no actor reads: the
learner's own settings (optimizer, gradient clipping, staleness bound) stay on the
learner. ``from_dict`` checks a received spec as strictly as the codec checks a header,
so an actor never builds an environment from a malformed one.

The protocol does not know the algorithms, the networks or the coordination modes:
``algo`` and ``coordination`` are names, ``loss`` and ``model`` maps, each resolved or
checked by its table (core/algos, core/models, core/coordination). A new network
setting (another encoder, a recurrent core's kind) is a key of ``model`` and needs no
change here; what the protocol must know of a recurrent core is only the size of the
state each rollout carries (``core_state_size``), so that it can check it. ``coordination`` is
what the actor's loop depends on, so a receiver must know the name: ``from_dict`` takes
the names it can run. The built-in ones are documented below, for a peer written from
this file, and are the default; a process with the coordination table passes the
table's names (protocol cannot import it and must stay importable alone), so a mode
registered there crosses the wire with no change here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

# The built-in ways actors and the learner take turns (core/coordination has their
# objects; a receiver with that table may accept more):
#   sync       collect with version V, send, wait until the learner released the
#              barrier (Ack), load the weights the Ack names, repeat (A2C)
#   async      collect and send continuously with the newest weights held (A3C, IMPALA)
#   gradients  like async, but the actor computes the loss and sends gradients
COORDINATIONS = ("sync", "async", "gradients")
# discrete: Discrete(n); box: Box; multi_discrete: MultiDiscrete (one choice per
# component, each from its own range); multi_binary: MultiBinary (one bit per component).
ACTION_KINDS = ("discrete", "box", "multi_discrete", "multi_binary")
# Actions on the wire: an index per component for the integer kinds (0-based; the env's
# MultiDiscrete ``start`` is added back by the actor), the sample itself for box.
INTEGER_ACTIONS = ("discrete", "multi_discrete", "multi_binary")
# Observation dtypes an env may produce on the wire: float32 vectors, uint8 images.
OBS_DTYPES = ("<f4", "|u1")
# Largest observation (values per step and env) and action space a spec may describe.
MAX_ELEMENTS = 1 << 22
# Dict observations: how many keys, and what a key may be called (it names wire arrays,
# ``obs/<key>``, and the network's modules, so no '/' and no '.').
MAX_OBS_KEYS = 64
OBS_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Largest recurrent state per env (an LSTM of 32768 units keeps 65536 values).
MAX_CORE_STATE = 1 << 16


def component_sizes(low: Sequence[float], high: Sequence[float]) -> tuple[int, ...]:
    """MultiDiscrete: each component's number of choices, from its smallest and largest
    value (the spec's ``action_low`` and ``action_high``)."""
    return tuple(int(hi - lo) + 1 for lo, hi in zip(low, high, strict=True))


class SpecError(ValueError):
    """A RunSpec with a missing, extra or out-of-range field."""


@dataclass(frozen=True)
class ObsPart:
    """One array of an observation: the whole observation of a Box space (``key``
    None, on the wire as ``obs``), or one key of a Dict space (``obs/<key>``). A part
    that is a stack of ``frame_stack`` frames on its first axis travels as distinct
    frames plus indices (protocol/frames.py)."""

    key: str | None
    shape: tuple[int, ...]
    dtype: str
    frame_stack: int = 0

    @property
    def name(self) -> str:
        return obs_name(self.key)


def obs_name(key: str | None) -> str:
    """The wire name of a Box observation (``key`` None) or of a Dict's key."""
    return "obs" if key is None else f"obs/{key}"


def _check_obs_part(part: ObsPart) -> None:
    what = "obs_shape" if part.key is None else f"observation key {part.key!r}"
    if part.dtype not in OBS_DTYPES:
        raise SpecError(f"{what}: dtype must be one of {OBS_DTYPES}")
    if not part.shape or any(d < 1 for d in part.shape) or len(part.shape) > 6:
        raise SpecError(f"{what} must have 1 to 6 positive dims")
    if math.prod(part.shape) > MAX_ELEMENTS:
        raise SpecError(f"{what}: an observation may hold at most {MAX_ELEMENTS} values")
    if part.frame_stack and not (
        2 <= part.frame_stack <= 64 and len(part.shape) >= 2 and part.shape[0] == part.frame_stack
    ):
        raise SpecError(f"{what}: frame_stack must be 0, or 2 to 64 and the first dimension")


def _dict_part(key: Any, entry: Any) -> ObsPart:
    """One entry of RunSpec.obs_keys, checked as strictly as a field."""
    if not isinstance(key, str) or not OBS_KEY.fullmatch(key):
        raise SpecError("observation keys must be 1 to 64 letters, digits, '_' or '-'")
    if not isinstance(entry, dict) or set(entry) != {"shape", "dtype", "frame_stack"}:
        raise SpecError(f"observation key {key!r} needs exactly shape, dtype and frame_stack")
    shape, dtype, stack = entry["shape"], entry["dtype"], entry["frame_stack"]
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise SpecError(f"observation key {key!r}: shape must be a list of integers")
    if not isinstance(dtype, str) or not isinstance(stack, int) or isinstance(stack, bool):
        raise SpecError(f"observation key {key!r}: dtype is a string, frame_stack an integer")
    return ObsPart(key, tuple(shape), dtype, stack)


@dataclass(frozen=True)
class RunSpec:
    env_id: str
    algo: str
    num_envs: int
    rollout_len: int
    obs_shape: tuple[int, ...]
    action_kind: str
    # Discrete: number of actions. Otherwise unused (0).
    action_n: int
    # Box: action shape and bounds, flattened. MultiDiscrete: the shape of its nvec, and
    # the smallest and largest value of each component (start, start + nvec - 1).
    # MultiBinary: its shape, no bounds. Discrete: empty.
    action_shape: tuple[int, ...] = ()
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    obs_dtype: str = "<f4"
    env_family: str = "gymnasium"
    env_kwargs: dict = field(default_factory=dict)
    coordination: str = "async"
    # The algorithm's loss settings (its config dataclass as a map); only actors that
    # compute gradients read them, with the algorithm's own checks.
    loss: dict = field(default_factory=dict)
    # The network, as core/models' map: {"encoder": "mlp" | "cnn", "hidden": [64, 64],
    # "obs_norm": false}; what is missing takes the table's default, and the receiver's
    # table refuses keys and values it does not know. With obs_norm, the running mean
    # and variance travel with the weights (``obs_norm.mean``, ``obs_norm.var``).
    model: dict = field(default_factory=dict)
    # Observations that are stacks of this many frames along their first axis (Atari:
    # 4 x 84 x 84); each frame then crosses the wire once (protocol/frames.py). 0: not
    # stacked, observations travel whole.
    frame_stack: int = 0
    # A Dict observation space: {key: {"shape": [...], "dtype": "<f4" | "|u1",
    # "frame_stack": 0 | S}} for each of its keys (each a Box), in the env's key order.
    # Each key travels as its own array, ``obs/<key>`` (or its frames and indices), and
    # obs_shape is then [] (obs_dtype and frame_stack describe nothing and stay default).
    obs_keys: dict = field(default_factory=dict)
    # A recurrent core's state, in float32 values per env: each Experience carries the
    # state its envs were in at the rollout's first step (``core_state`` [N, size]),
    # from which the learner unrolls the core. 0: a feed-forward network, no state.
    core_state_size: int = 0
    max_in_flight: int = 1
    heartbeat_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.algo or len(self.algo) > 64:
            raise SpecError("algo must be a name of 1 to 64 characters")
        if not self.coordination or len(self.coordination) > 64:
            raise SpecError("coordination must be a name of 1 to 64 characters")
        if self.action_kind not in ACTION_KINDS:
            raise SpecError(f"action_kind must be one of {ACTION_KINDS}")
        if not 1 <= self.num_envs <= 65536:
            raise SpecError("num_envs must be in [1, 65536]")
        if not 1 <= self.rollout_len <= 65536:
            raise SpecError("rollout_len must be in [1, 65536]")
        self._check_observations()
        if self.action_kind == "discrete" and not 2 <= self.action_n <= MAX_ELEMENTS:
            raise SpecError(f"a discrete action space needs 2 <= action_n <= {MAX_ELEMENTS}")
        if self.action_kind != "discrete":
            self._check_action_shape()
        if not 0 <= self.core_state_size <= MAX_CORE_STATE:
            raise SpecError(f"core_state_size must be in [0, {MAX_CORE_STATE}]")
        if not 1 <= self.max_in_flight <= 1024:
            raise SpecError("max_in_flight must be in [1, 1024]")
        if not self.heartbeat_s > 0:
            raise SpecError("heartbeat_s must be > 0")

    def _check_observations(self) -> None:
        if self.obs_keys:
            if len(self.obs_keys) > MAX_OBS_KEYS:
                raise SpecError(f"a Dict observation may have at most {MAX_OBS_KEYS} keys")
            if self.obs_shape or self.frame_stack or self.obs_dtype != "<f4":
                raise SpecError("a Dict observation's obs_shape is [], its keys say the rest")
        elif not self.obs_shape:
            raise SpecError("obs_shape must have 1 to 6 positive dims")
        parts = self.obs_parts
        for part in parts:
            _check_obs_part(part)
        if sum(math.prod(p.shape) for p in parts) > MAX_ELEMENTS:
            raise SpecError(f"an observation may hold at most {MAX_ELEMENTS} values")

    @property
    def obs_parts(self) -> tuple[ObsPart, ...]:
        """The arrays an observation is made of: one for a Box space, one per key of a
        Dict space."""
        if not self.obs_keys:
            return (ObsPart(None, tuple(self.obs_shape), self.obs_dtype, self.frame_stack),)
        return tuple(_dict_part(k, v) for k, v in self.obs_keys.items())

    def _check_action_shape(self) -> None:
        kind = self.action_kind.replace("_", " ")
        size = math.prod(self.action_shape) if self.action_shape else 0
        if any(d < 1 for d in self.action_shape) or not 1 <= size <= MAX_ELEMENTS:
            raise SpecError(f"a {kind} action space needs an action_shape of positive dims")
        if self.action_kind == "multi_binary":
            if self.action_low or self.action_high:
                raise SpecError("a multi binary action space has no bounds")
            return
        if len(self.action_low) != size or len(self.action_high) != size:
            raise SpecError(f"a {kind} action space needs low/high matching its shape")
        bounds = (*self.action_low, *self.action_high)
        if any(math.isnan(b) for b in bounds) or any(
            lo > hi for lo, hi in zip(self.action_low, self.action_high, strict=True)
        ):
            raise SpecError("action bounds must be numbers with low <= high")
        if self.action_kind == "multi_discrete":
            if any(not float(b).is_integer() or abs(b) > 2**53 for b in bounds):
                raise SpecError("multi discrete bounds must be integers")
            if sum(self.action_nvec) > MAX_ELEMENTS:
                raise SpecError(f"a multi discrete space may offer at most {MAX_ELEMENTS} choices")

    @property
    def action_nvec(self) -> tuple[int, ...]:
        """MultiDiscrete: the number of choices of each component (flattened)."""
        return component_sizes(self.action_low, self.action_high)

    @property
    def action_dtype(self) -> str:
        return "<i8" if self.action_kind in INTEGER_ACTIONS else "<f4"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Any, coordinations: Collection[str] = COORDINATIONS) -> RunSpec:
        """A received spec, checked; ``coordinations``: the modes the receiver can run."""
        if not isinstance(d, dict):
            raise SpecError("run spec is not a map")
        names = {f.name: f for f in dataclasses.fields(cls)}
        extra = d.keys() - names.keys()
        if extra:
            raise SpecError(f"unknown run spec fields {sorted(map(str, extra))[:8]}")
        kwargs: dict[str, Any] = {}
        for name, f in names.items():
            if name not in d:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise SpecError(f"run spec lacks {name}")
                continue
            kwargs[name] = _coerce(name, f.type, d[name])
        spec = cls(**kwargs)
        if spec.coordination not in coordinations:
            raise SpecError(f"coordination must be one of {tuple(coordinations)}")
        return spec


def _coerce(name: str, typ: Any, value: Any) -> Any:
    typ = str(typ)
    if typ == "str":
        ok = isinstance(value, str)
    elif typ == "bool":
        ok = isinstance(value, bool)
    elif typ == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ == "float":
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
        value = float(value) if ok else value
    elif typ == "dict":
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    elif typ.startswith("tuple[int"):
        ok = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        value = tuple(value) if ok else value
    elif typ.startswith("tuple[float"):
        ok = isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        )
        value = tuple(float(v) for v in value) if ok else value
    else:  # pragma: no cover - a field type this function does not know is a bug here
        raise TypeError(f"RunSpec field {name} has unsupported type {typ}")
    if not ok:
        raise SpecError(f"run spec field {name} has the wrong type")
    return value
