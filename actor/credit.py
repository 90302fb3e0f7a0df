"""The actor's flow-control bookkeeping: which rollouts await the learner's Ack, and
(sync) which version the learner released us to. Pure: no sockets, times passed in.

    credit = Credit()
    credit.sent(seq, version, now)        # after each send
    credit.acked(seq, version)            # an Ack from the current learner
    credit.pong(version, held, now)       # a Pong from the current learner
    credit.expire(now, limit)             # seqs whose Ack never came (credit returned)
    credit.in_flight                      # against RunSpec.max_in_flight
    credit.waiting_for_release()          # sync: the last rollout is not yet released
    credit.release_version                # sync: the version to collect with next
"""

from __future__ import annotations


class Credit:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new session (a Welcome): nothing in flight, nothing released."""
        self.unacked: dict[int, float] = {}  # seq -> when sent
        self.last_seq: int | None = None  # the last rollout sent
        self.last_version = -1  # the policy version it was collected with
        self.release_version: int | None = None  # what its Ack (or a newer Pong) named
        self.learner_version = -1  # the newest version the learner reported in a Pong
        self.named_version = -1  # ... in a Pong or an Ack: what an async actor catches up to

    @property
    def in_flight(self) -> int:
        return len(self.unacked)

    def sent(self, seq: int, version: int, now: float) -> None:
        self.unacked[seq] = now
        self.last_seq, self.last_version, self.release_version = seq, version, None

    def acked(self, seq: int, version: int) -> None:
        self.unacked.pop(seq, None)
        self.named_version = max(self.named_version, version)
        if seq == self.last_seq:
            self.release_version = version

    def pong(self, version: int, held: list[int] = (), now: float | None = None) -> None:
        """The learner is at ``version`` and still holds the rollouts ``held`` (queued or
        in an update): their Acks are late, not lost, so their wait starts again."""
        self.learner_version = max(self.learner_version, version)
        self.named_version = max(self.named_version, version)
        if now is not None:
            for seq in held:
                if seq in self.unacked:
                    self.unacked[seq] = now

    def waiting_for_release(self) -> bool:
        """sync: the last rollout is neither acked nor overtaken. A Pong reporting a
        newer version than the rollout's stands in for a lost Ack (the barrier moved
        on)."""
        if self.last_seq is None or self.last_seq not in self.unacked:
            return False
        if self.learner_version > self.last_version:
            self.acked(self.last_seq, self.learner_version)
            return False
        return True

    def expire(self, now: float, limit_s: float) -> list[int]:
        """Forget rollouts unacknowledged for longer than ``limit_s`` (the learner
        dropped them under load): their credit comes back. Returns their seqs."""
        gone = [k for k, t in self.unacked.items() if now - t > limit_s]
        for k in gone:
            del self.unacked[k]
        return gone
