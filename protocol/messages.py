"""Message types of the actor-learner protocol (``SCHEMA_VERSION`` below).

A message is a multipart ZeroMQ message:

    frame 0     msgpack map  {"v": SCHEMA_VERSION, "type": str, "fields": {...},
                              "arrays": [[name, dtype, shape], ...]}
    frame 1..n  the raw bytes of each array, C order, in the order "arrays" lists them

Each class below names its type, its scalar fields (with their Python types) and the
arrays it may carry. The codec enforces exactly this: unknown types, missing or extra
fields, fields of the wrong type, and arrays not listed here are decode errors.

Arrays: an Experience carries exactly the arrays of one rollout, whose names, dtypes
and shapes are defined in protocol/rollout.py (from the RunSpec); a frame-stacked run's
observations travel as distinct frames plus indices (protocol/frames.py), and a recurrent
run's carries ``core_state``, its cores' state at the rollout's start, and a Dict
observation's keys travel each as ``obs/<key>`` (or its frames and indices). A Gradient carries
``grad/<param>`` float32 arrays (one per network parameter) plus the rollout's rewards,
flags and episode arrays; a Weights message carries ``<param>`` float32 arrays (with ``obs_norm.mean`` and
``obs_norm.var`` when the run normalises observations).

Directions: actor -> learner on the learner's ROUTER (Hello, Experience, Gradient,
Heartbeat, WeightsRequest, Bye); learner -> one actor on the ROUTER (Welcome, Weights,
Pong, Ack, Error, Shutdown); learner -> all actors on the PUB socket (Weights, Shutdown).

No sockets here; see codec.py for bytes and sockets.py for socket options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from protocol.rollout import (
    CORE_STATE,
    GRADIENT_ROLLOUT_ARRAYS,
    PACKED_OBS_ARRAYS,
    ROLLOUT_ARRAYS,
)

# 2: RunSpec gained coordination, loss, obs_dtype, env_family and encoder and lost the
#    learner-only fields; observations travel in the env's own dtype.
# 3: RunSpec gained frame_stack; a frame-stacked Experience carries frames + stack_idx
#    instead of obs (protocol/frames.py).
# 4: a Gradient carries its rollout's rewards and terminated/truncated/valid flags, so the
#    learner derives episodes and step counts instead of trusting the actor's.
# 5: RunSpec gained obs_norm; a Weights message of such a run also carries the
#    normaliser's obs_norm.mean and obs_norm.var (float32, the observation's shape).
# 6: RunSpec's network is one map, ``model`` (encoder, hidden, obs_norm), checked by the
#    receiver's model table (core/models), instead of three fields of its own.
# 7: RunSpec gained core_state_size (a recurrent run's Experience carries core_state, the
#    core's state per env at the rollout's start) and obs_keys (a Dict observation's
#    keys, each on the wire as obs/<key>).
# 8: Pong gained ``held``: the seqs of the actor's rollouts the learner holds (queued or
#    in an update), so an actor does not take an Ack that is only late (a long update)
#    for a lost one and send past its credit.
SCHEMA_VERSION = 8

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


@dataclass(frozen=True)
class Experience(ArrayMessage):
    TYPE: ClassVar[str] = "experience"
    FIELDS: ClassVar[dict[str, type]] = dict(_ROLLOUT_FIELDS)
    # Which of "obs" or the packed pair a message must carry, and whether it carries a
    # recurrent core's state, depends on the run spec (checks.check_experience); the
    # codec admits all of them.
    ARRAYS: ClassVar[frozenset[str]] = frozenset((*ROLLOUT_ARRAYS, *PACKED_OBS_ARRAYS, CORE_STATE))
    # A Dict observation's keys: obs/<key>, or obs/<key>/frames and obs/<key>/stack_idx.
    ARRAY_PREFIX: ClassVar[str | None] = "obs/"
    actor_id: str = ""
    incarnation: str = ""
    seq: int = 0
    learner_id: str = ""
    policy_version: int = 0


@dataclass(frozen=True)
class Gradient(ArrayMessage):
    """Gradients an actor computed on its own rollout (gradient-parallel A3C), with the
    rollout's rewards, flags and episodes (GRADIENT_ROLLOUT_ARRAYS) so the learner
    derives the episodes and the env steps itself, and the actor's own figures for the
    step count and loss terms (claims: checked, logged, never used to stop a run)."""

    TYPE: ClassVar[str] = "gradient"
    FIELDS: ClassVar[dict[str, type]] = {
        **_ROLLOUT_FIELDS,
        "env_steps": int,
        "policy_loss": float,
        "value_loss": float,
        "entropy": float,
    }
    ARRAYS: ClassVar[frozenset[str]] = frozenset(GRADIENT_ROLLOUT_ARRAYS)
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
    """The learner's answer to a heartbeat: it is alive, at this version, and holds
    these of the actor's rollouts (``held``: their seqs, queued or in an update; their
    Acks are late, not lost)."""

    TYPE: ClassVar[str] = "pong"
    FIELDS: ClassVar[dict[str, type]] = {"learner_id": str, "version": int, "held": list}
    learner_id: str
    version: int
    held: list = field(default_factory=list)


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
