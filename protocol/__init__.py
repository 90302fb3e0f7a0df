"""The wire contract between actors and the learner.

Everything that crosses a socket is defined here and nowhere else:

- ``messages``: the message types, their fields and arrays, and ``SCHEMA_VERSION``.
- ``codec``: how a message becomes ZeroMQ frames and back, with the structural checks
  every received message passes before anything else touches it.
- ``rollout``: the rollout's arrays (names, dtypes, shapes) derived from the RunSpec,
  and the typed ``Rollout`` both roles use.
- ``checks``: the content checks that need the run's settings (shapes that match the
  environment, actions inside the action space, finite values).
- ``spec``: ``RunSpec``, the run settings the learner hands every actor on join.
- ``sockets``: socket options and endpoint helpers both sides use (size limits,
  linger, heartbeats, CurveZMQ).

A peer in another language can be written from these files alone. Nothing here imports
torch, gymnasium or pickle.
"""

from protocol.codec import DecodeError, decode, encode
from protocol.messages import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "DecodeError", "decode", "encode"]
