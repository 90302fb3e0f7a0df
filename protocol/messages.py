"""Message types of the actor-learner protocol, schema version 1.

A message is a multipart ZeroMQ message:

    frame 0     msgpack map  {"v": SCHEMA_VERSION, "type": str, "fields": {...},
                              "arrays": [[name, dtype, shape], ...]}
    frame 1..n  the raw bytes of each array, C order, in the order "arrays" lists them

Each class below names its type, its scalar fields (with their Python types) and the
arrays it may carry. The codec enforces exactly this: unknown types, missing or extra
fields, fields of the wrong type, and arrays not listed here are decode errors.

Array names and shapes (T = rollout length, N = envs per actor, K = finished episodes):

    Experience  obs          [T+1, N, *obs_shape]  observation before each step, plus the
                                                   one after the last step (bootstrap)
                actions      [T, N] int64 (Discrete) or [T, N, *act_shape] float32 (Box)
                logp         [T, N] float32        log-prob of the action under the
                                                   behaviour policy (for off-policy
                                                   corrections; A3C ignores it)
                rewards      [T, N] float32
                terminated   [T, N] bool
                truncated    [T, N] bool
                valid        [T, N] bool           False for gymnasium's next-step
                                                   autoreset steps, which are not
                                                   transitions
                ep_returns   [K] float64           episodes that finished in this rollout
                ep_lengths   [K] int64
    Gradient    grad/<param> shape of the parameter, float32
                ep_returns, ep_lengths as above
    Weights     <param>      shape of the parameter, float32

Directions: actor -> learner on the learner's ROUTER (Hello, Experience, Gradient,
Heartbeat, WeightsRequest, Bye); learner -> one actor on the ROUTER (Welcome, Weights,
Pong, Ack, Error, Shutdown); learner -> all actors on the PUB socket (Weights, Shutdown).

No sockets here; see codec.py for bytes and sockets.py for socket options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

SCHEMA_VERSION = 1

# Array dtypes allowed on the wire, as numpy's little-endian type strings. Anything else
# (objects, structured or void types, big-endian) is refused by the codec.
DTYPES: frozenset[str] = frozenset({"|b1", "|u1", "<i4", "<i8", "<f2", "<f4", "<f8"})


@dataclass(frozen=True)
class Message:
    """Base of every message. ``FIELDS`` maps field name to its Python type."""

    TYPE: ClassVar[str] = ""
    FIELDS: ClassVar[dict[str, type]] = {}
    # Fixed array names this type may carry; PREFIX allows a family such as "grad/...".
    ARRAYS: ClassVar[frozenset[str]] = frozenset()
    ARRAY_PREFIX: ClassVar[str | None] = None

    def scalar_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}


@dataclass(frozen=True)
class ArrayMessage(Message):
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Hello(Message):
    """An actor asks to join. ``num_envs`` 0 means "as the learner says";
    ``temperature`` 0 means "as the learner says"."""

    TYPE: ClassVar[str] = "hello"
    FIELDS: ClassVar[dict[str, type]] = {
        "actor_id": str,
        "incarnation": str,
        "hostname": str,
        "pid": int,
        "num_envs": int,
        "temperature": float,
    }
    actor_id: str
    incarnation: str
    hostname: str
    pid: int
    num_envs: int = 0
    temperature: float = 0.0


@dataclass(frozen=True)
class Welcome(Message):
    """The learner accepts an actor: the run settings (a ``RunSpec`` as a dict), the
    port of the weights PUB socket on the same host, and this actor's exploration
    temperature and env seed. Current weights follow at once as a ``Weights``."""

    TYPE: ClassVar[str] = "welcome"
    FIELDS: ClassVar[dict[str, type]] = {
        "learner_id": str,
        "run": dict,
        "pub_port": int,
        "temperature": float,
        "seed": int,
    }
    learner_id: str
    run: dict
    pub_port: int
    temperature: float
    seed: int


@dataclass(frozen=True)
class Weights(ArrayMessage):
    TYPE: ClassVar[str] = "weights"
    FIELDS: ClassVar[dict[str, type]] = {"learner_id": str, "version": int}
    ARRAY_PREFIX: ClassVar[str | None] = ""
    learner_id: str = ""
    version: int = 0


_ROLLOUT_FIELDS: dict[str, type] = {
    "actor_id": str,
    "incarnation": str,
    "seq": int,
    "learner_id": str,
    "policy_version": int,
}
_EPISODE_ARRAYS = frozenset({"ep_returns", "ep_lengths"})


@dataclass(frozen=True)
class Experience(ArrayMessage):
    TYPE: ClassVar[str] = "experience"
    FIELDS: ClassVar[dict[str, type]] = dict(_ROLLOUT_FIELDS)
    ARRAYS: ClassVar[frozenset[str]] = (
        frozenset({"obs", "actions", "logp", "rewards", "terminated", "truncated", "valid"})
        | _EPISODE_ARRAYS
    )
    actor_id: str = ""
    incarnation: str = ""
    seq: int = 0
    learner_id: str = ""
    policy_version: int = 0


@dataclass(frozen=True)
class Gradient(ArrayMessage):
    """Gradients an actor computed on its own rollout (gradient-parallel A3C), with the
    rollout's size and loss terms so the learner can log them."""

    TYPE: ClassVar[str] = "gradient"
    FIELDS: ClassVar[dict[str, type]] = {
        **_ROLLOUT_FIELDS,
        "env_steps": int,
        "policy_loss": float,
        "value_loss": float,
        "entropy": float,
    }
    ARRAYS: ClassVar[frozenset[str]] = _EPISODE_ARRAYS
    ARRAY_PREFIX: ClassVar[str | None] = "grad/"
    actor_id: str = ""
    incarnation: str = ""
    seq: int = 0
    learner_id: str = ""
    policy_version: int = 0
    env_steps: int = 0
    policy_loss: float = 0.0
    value_loss: float = 0.0
    entropy: float = 0.0


@dataclass(frozen=True)
class Heartbeat(Message):
    TYPE: ClassVar[str] = "heartbeat"
    FIELDS: ClassVar[dict[str, type]] = {
        "actor_id": str,
        "incarnation": str,
        "seq": int,
        "policy_version": int,
        "backpressure": int,
    }
    actor_id: str
    incarnation: str
    seq: int
    policy_version: int
    backpressure: int = 0


@dataclass(frozen=True)
class WeightsRequest(Message):
    TYPE: ClassVar[str] = "weights_request"
    FIELDS: ClassVar[dict[str, type]] = {"actor_id": str, "incarnation": str, "have_version": int}
    actor_id: str
    incarnation: str
    have_version: int


@dataclass(frozen=True)
class Pong(Message):
    """The learner's answer to a heartbeat: it is alive, and at this version."""

    TYPE: ClassVar[str] = "pong"
    FIELDS: ClassVar[dict[str, type]] = {"learner_id": str, "version": int}
    learner_id: str
    version: int


@dataclass(frozen=True)
class Ack(Message):
    """The learner is done with rollout ``seq`` of this actor (trained on it, or
    dropped it). Actors keep at most ``RunSpec.max_in_flight`` rollouts unacknowledged:
    credit-based flow control, so queues (and policy lag) stay short however much
    faster the actors are than the learner."""

    TYPE: ClassVar[str] = "ack"
    FIELDS: ClassVar[dict[str, type]] = {
        "learner_id": str,
        "seq": int,
        "version": int,
        "trained": bool,
    }
    learner_id: str
    seq: int
    version: int
    trained: bool


@dataclass(frozen=True)
class Bye(Message):
    TYPE: ClassVar[str] = "bye"
    FIELDS: ClassVar[dict[str, type]] = {"actor_id": str, "incarnation": str, "reason": str}
    actor_id: str
    incarnation: str
    reason: str


@dataclass(frozen=True)
class Shutdown(Message):
    TYPE: ClassVar[str] = "shutdown"
    FIELDS: ClassVar[dict[str, type]] = {"learner_id": str, "reason": str}
    learner_id: str
    reason: str


@dataclass(frozen=True)
class Error(Message):
    """The learner refuses something an actor sent. ``fatal`` tells the actor to exit
    (wrong schema version, not authorised); otherwise the actor may rejoin."""

    TYPE: ClassVar[str] = "error"
    FIELDS: ClassVar[dict[str, type]] = {"code": str, "detail": str, "fatal": bool}
    code: str
    detail: str
    fatal: bool


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Welcome,
        Weights,
        Experience,
        Gradient,
        Heartbeat,
        WeightsRequest,
        Pong,
        Ack,
        Bye,
        Shutdown,
        Error,
    )
}


def carries_arrays(cls: type[Message]) -> bool:
    return issubclass(cls, ArrayMessage)


def array_name_allowed(cls: type[Message], name: str) -> bool:
    if name in cls.ARRAYS:
        return True
    prefix = cls.ARRAY_PREFIX
    return prefix is not None and name.startswith(prefix) and len(name) > len(prefix)


def replace(msg: Message, **changes: Any) -> Message:
    return dataclasses.replace(msg, **changes)
