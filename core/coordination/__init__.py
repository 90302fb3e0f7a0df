"""The coordination table: name -> how actors and the learner take turns (see base.py for
the contract and the loops that use it).

| name      | actors send | learner batches                  | lag rule         | actor waits for  |
|-----------|-------------|----------------------------------|------------------|------------------|
| sync      | rollouts    | barrier: one per live actor      | current version  | release, weights |
| async     | rollouts    | queue (--max-batches-per-update) | --max-policy-lag | credit only      |
| gradients | gradients   | queue: one at a time             | --max-policy-lag | credit only      |

An algorithm names the mode it runs in (core/algos). A new mode: one ``register`` line
below (and a module beside this one if the mode needs code of its own), and its tests.

The protocol cannot import this table (protocol/ stands alone, for a peer written from
it): protocol/spec.py documents the built-in names for such a peer and checks a
received spec against them by default; a process that runs this table passes
``names()`` to ``RunSpec.from_dict`` instead, so a registered mode crosses the wire with
no protocol edit. tests/test_coordination_home.py checks that the built-ins here are the
names protocol documents.
"""

from __future__ import annotations

from core.coordination.base import Coordination

MODES: dict[str, Coordination] = {}


def register(mode: Coordination) -> Coordination:
    """Add ``mode`` to the table (a test may register its own); returns it."""
    if mode.name in MODES:
        raise ValueError(f"coordination {mode.name!r} is already registered")
    MODES[mode.name] = mode
    return mode


def get(name: str) -> Coordination:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown coordination {name!r}; known: {', '.join(MODES)}") from None


def names() -> tuple[str, ...]:
    """The registered modes' names: what a run spec's ``coordination`` may say here."""
    return tuple(MODES)


register(
    Coordination(
        "sync",
        "one update on a rollout from every live actor; actors wait for its weights",
        sends_gradients=False,
        barrier=True,
        queue_limit=None,
        max_lag=0,  # only the current version: every actor waited for it
        pipeline_depth=1,
        update_each_rollout=False,
        waits_for_release=True,
        # A rollout may wait in the barrier for the others: up to --barrier-timeout-s,
        # 10 s, and before the first update up to --min-actors-wait-s, 30 s; 8 x the
        # actor's --learner-timeout (5 s) outlasts both.
        ack_patience=8,
    )
)
register(
    Coordination(
        "async",
        "actors send rollouts continuously; updates on what has queued",
        sends_gradients=False,
        barrier=False,
        queue_limit=None,
        max_lag=None,
        pipeline_depth=2,
        update_each_rollout=True,
        waits_for_release=False,
        ack_patience=1,
    )
)
register(
    Coordination(
        "gradients",
        "actors compute the loss and send gradients; each applied as it arrives",
        sends_gradients=True,
        barrier=False,
        queue_limit=1,
        max_lag=None,
        pipeline_depth=2,
        update_each_rollout=True,
        waits_for_release=False,
        ack_patience=1,
    )
)

__all__ = ["MODES", "Coordination", "get", "names", "register"]
