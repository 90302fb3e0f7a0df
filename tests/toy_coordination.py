"""A toy coordination mode, written as a user would add one: sync, one version ahead.

Under ``sync`` an actor sends its rollout, then waits for the barrier's release and the
weights it names before collecting again: the actors idle while the learner trains.
Here an actor collects its next rollout (with the weights it holds) while its last one
waits in the barrier, and the barrier takes rollouts up to one version old: acting and
learning overlap, and rollouts are trained on one version late (the one-step lag of
Cleanba, Huang et al. 2023), never more. Still a barrier: one rollout per live actor per
update, so a fast actor cannot outrun a slow one.

    actor:   send r1 (v0) | collect r2 with v0 | wait for r1's Ack | send r2 | collect r3 with v1
    learner: barrier {r1 of each actor} -> v1, Ack r1s | barrier {r2 of each} -> v2, Ack r2s

An actor that starts its next rollout before the new weights reach it (they follow the
Ack on another socket) sends one two versions old: it is dropped and acked at once, and
the actor sends the one it collected meanwhile with the newer weights.

One module (this file: the mode, and A2C run in it, since an algorithm names its mode)
and one registry call, ``register()``, are all it takes;
tests/test_coordination_home.py trains it through a real learner and two real actors.
Every process of such a run registers it (a mode in core/coordination/__init__.py is
registered wherever that package is imported; a test's toy must be, in each process):
``python -m tests.toy_coordination learner|actor ARGS`` runs that role's own main with
the toy registered.
"""

from __future__ import annotations

import dataclasses
import sys

from core import algos, coordination
from core.coordination import Coordination

TOY = Coordination(
    "sync-ahead",
    "a barrier of rollouts at most one version old; actors collect while it gathers",
    sends_gradients=False,
    barrier=True,
    queue_limit=None,
    max_lag=1,  # the rollout collected while the last update ran
    pipeline_depth=1,  # a barrier: the next is gathered once this update is done
    update_each_rollout=False,
    waits_for_release=False,  # the overlap: collect while the last rollout waits
    ack_patience=8,  # as sync's: a rollout waits in the barrier for the others'
)
ALGO = "a2c-ahead"


def register() -> None:
    """The registry call: the mode, then A2C run in it (no flag picks a mode: the
    algorithm names it). Undo with ``unregister``."""
    coordination.register(TOY)
    a2c = algos.get("a2c")
    algos.register(dataclasses.replace(a2c, name=ALGO, coordination=TOY.name))


def unregister() -> None:
    del algos.ALGORITHMS[ALGO]
    del coordination.MODES[TOY.name]


def main(argv: list[str]) -> int:
    role, *args = argv
    register()
    if role == "learner":
        from learner.__main__ import main as role_main
    elif role == "actor":
        from actor.__main__ import main as role_main
    else:
        raise SystemExit(f"usage: python -m tests.toy_coordination learner|actor ARGS ({role}?)")
    return role_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
