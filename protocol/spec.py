"""RunSpec: the settings a learner hands each actor in ``Welcome``.

An actor needs only the learner's address; everything it must agree on with the
learner (environment, rollout shape, network, loss constants for gradient-parallel
A3C) arrives here. ``from_dict`` checks a received spec as strictly as the codec checks
a header, so an actor never builds an environment from a malformed one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

ALGOS = ("a2c", "a3c", "a3c-grad")
ACTION_KINDS = ("discrete", "box")


class SpecError(ValueError):
    """A RunSpec with a missing, extra or out-of-range field."""


@dataclass(frozen=True)
class RunSpec:
    env_id: str
    algo: str
    num_envs: int
    rollout_len: int
    obs_shape: tuple[int, ...]
    action_kind: str
    # Discrete: number of actions. Box: unused (0).
    action_n: int
    # Box: action shape and bounds, flattened. Discrete: empty.
    action_shape: tuple[int, ...] = ()
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    hidden: tuple[int, ...] = (64, 64)
    gamma: float = 0.99
    gae_lambda: float = 1.0
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    max_grad_norm: float = 0.5
    max_policy_lag: int = 4
    max_in_flight: int = 1
    heartbeat_s: float = 0.5
    env_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise SpecError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        if self.action_kind not in ACTION_KINDS:
            raise SpecError(f"action_kind must be one of {ACTION_KINDS}")
        if not 1 <= self.num_envs <= 65536:
            raise SpecError("num_envs must be in [1, 65536]")
        if not 1 <= self.rollout_len <= 65536:
            raise SpecError("rollout_len must be in [1, 65536]")
        if not self.obs_shape or any(d < 1 for d in self.obs_shape) or len(self.obs_shape) > 6:
            raise SpecError("obs_shape must have 1 to 6 positive dims")
        if self.action_kind == "discrete" and self.action_n < 2:
            raise SpecError("a discrete action space needs action_n >= 2")
        if self.action_kind == "box":
            size = math.prod(self.action_shape) if self.action_shape else 0
            if size < 1 or len(self.action_low) != size or len(self.action_high) != size:
                raise SpecError("a box action space needs action_shape and matching low/high")
        if not self.hidden or any(not 1 <= h <= 65536 for h in self.hidden):
            raise SpecError("hidden sizes must be in [1, 65536]")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise SpecError("gamma and gae_lambda must be in [0, 1]")
        if self.max_policy_lag < 0:
            raise SpecError("max_policy_lag must be >= 0")
        if not 1 <= self.max_in_flight <= 1024:
            raise SpecError("max_in_flight must be in [1, 1024]")
        if not self.heartbeat_s > 0:
            raise SpecError("heartbeat_s must be > 0")

    @property
    def sync(self) -> bool:
        """A2C: actors wait for the next weights after every rollout."""
        return self.algo == "a2c"

    @property
    def sends_gradients(self) -> bool:
        return self.algo == "a3c-grad"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Any) -> RunSpec:
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
        return cls(**kwargs)


def _coerce(name: str, typ: Any, value: Any) -> Any:
    typ = str(typ)
    if typ == "str":
        ok = isinstance(value, str)
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
