"""What a coordination mode is: how actors and the learner take turns, both sides in one
frozen object, found by the name a run spec carries (the table: __init__.py).

The learner's loop (learner/server.py; learner/serial.py runs it without sockets):

    mode = coordination.get(spec.coordination)
    max_lag = mode.lag_bound(cfg.policy_lag_bound)    # one rule, at arrival and at release
    batcher = make_batcher(mode, ..., max_lag=max_lag)  # learner/batching.py
    training = TrainingThread(updater, depth=mode.pipeline_depth)
    on a rollout or gradient:
        refused unless isinstance(msg, mode.message)
        stale (acked untrained) if more than max_lag versions old, else batcher.offer
    serial mode: train on what is released after each rollout if mode.update_each_rollout,
                 else once per round of rollouts

The actor's loop (actor/client.py, with core/acting.py):

    loop:
        if mode.waits_for_release: wait for the Ack of the last rollout, then for the
                                   weights that Ack names (the barrier released us)
        collect a rollout with the newest weights held
        send it as mode.message: Experience, or (mode.sends_gradients) a Gradient of the
                                 loss computed here
        an Ack missing for mode.ack_patience x --learner-timeout: the credit comes back

Only what each side does is said here; the loops that do it are the roles' own, and no
module branches on a mode's name. No sockets, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import Experience, Gradient


@dataclass(frozen=True)
class Coordination:
    name: str  # what RunSpec.coordination carries, and the log events show
    summary: str  # one line for the README and the table
    # What crosses the wire: actors compute the loss on their own rollouts and send
    # Gradient messages (the learner only applies them); else they send their rollouts
    # (Experience) and the learner computes the loss.
    sends_gradients: bool
    # The learner's batcher (learner/batching.py): True, a barrier (SyncBarrier: one
    # submission per live actor, then one update on all of them); False, a queue
    # (AsyncQueue: updates on what has arrived).
    barrier: bool
    # Queue: submissions merged into one update; None: --max-batches-per-update. A
    # gradient is of the weights it was computed on: applying them one at a time keeps
    # each update's lag that of its own gradient.
    queue_limit: int | None
    # The lag rule: how many versions behind the learner a submission may be and still
    # be trained on. None: the run's --max-policy-lag.
    max_lag: int | None
    # Releases in flight on the training thread (learner/pipeline.py): 1 where the next
    # release can only be gathered once this update is done (a barrier), 2 to prepare the
    # next batch while one trains.
    pipeline_depth: int
    # Serial mode (--serial): train after each rollout, not once per round of rollouts
    # (a queue updates as rollouts come; a barrier only when the round is in).
    update_each_rollout: bool
    # The actor waits, before collecting again, until the learner released its last
    # rollout and for the weights the release names: no rollout is ever collected with
    # old weights, and actors idle while the learner trains.
    waits_for_release: bool
    # An unacknowledged rollout's credit comes back after this many --learner-timeout:
    # more than 1 where a rollout may legitimately wait for the other actors' (a barrier).
    ack_patience: int

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64:
            raise ValueError("a coordination mode's name has 1 to 64 characters")
        if self.queue_limit is not None and (self.barrier or self.queue_limit < 1):
            raise ValueError("queue_limit is a queue's, and at least 1")
        if self.max_lag is not None and self.max_lag < 0:
            raise ValueError("max_lag must be >= 0 (or None: --max-policy-lag)")
        if self.pipeline_depth < 1 or self.ack_patience < 1:
            raise ValueError("pipeline_depth and ack_patience must be >= 1")

    @property
    def message(self) -> type[Experience] | type[Gradient]:
        """The message actors send and the learner accepts (it refuses the other)."""
        return Gradient if self.sends_gradients else Experience

    def lag_bound(self, configured: int) -> int:
        """The most versions a submission may be behind; ``configured``: --max-policy-lag."""
        return configured if self.max_lag is None else self.max_lag
