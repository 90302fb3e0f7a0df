"""Episodes as the learner derives them from the data, and the actors' claims checked
against them. Pure: no sockets, no torch.

The learner does not take an actor's word for how its episodes went. Every rollout (and
every gradient, which carries its rollout's rewards and flags) goes through the sending
actor's ``EpisodeChain``, which carries each env's running return and length from one
rollout to the next:

    chain = EpisodeChain(num_envs)               # one per actor record (per Welcome:
                                                 # an actor builds fresh envs on each)
    chain.break_()                               # a rollout lost or refused: whatever
                                                 # was running is no longer whole
    episodes = chain.observe(rewards, terminated, truncated, valid)
    check_claims(episodes, ep_returns, ep_lengths)   # raises InvalidMessage("false_claim")

An episode counts toward the run's returns (and so toward "solved") only when the chain
saw every one of its steps. One that ends after a break is counted as
``unseen_start``; one that an env error cut short (an invalid step while it ran) as
``cut``. Neither is invented into a return.

What the learner cannot derive (that the rewards are the env's) it cannot check here;
``--confirm-episodes`` (learner/confirm.py) has the learner play the policy itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocol.checks import InvalidMessage

# Both sides sum the same float32 rewards into float64 in step order, so an honest claim
# is equal to the bit; the tolerance only forgives a different summation order.
RETURN_RTOL = 1e-6


@dataclass(frozen=True)
class Episodes:
    """The episodes that ended in one rollout."""

    returns: np.ndarray  # [W] float64, episodes whose every step was seen
    lengths: np.ndarray  # [W] int64
    unseen_lengths: np.ndarray  # [U] int64, steps seen of episodes that began before a break
    cut: int  # episodes an env error ended without an end flag (env reset mid-episode)

    @property
    def ended(self) -> int:
        """Episodes with an end flag in this rollout: the number an actor must claim."""
        return len(self.returns) + len(self.unseen_lengths)


class EpisodeChain:
    """The episodes in progress in one actor's N envs, as far as the learner has seen."""

    def __init__(self, num_envs: int) -> None:
        self.ret = np.zeros(num_envs, dtype=np.float64)  # [N]
        self.length = np.zeros(num_envs, dtype=np.int64)  # [N]
        # The running episode's first step was seen. A fresh actor's envs are fresh: true.
        self.seen = np.ones(num_envs, dtype=bool)  # [N]
        # The last step seen ended an episode: the next step must be its reset.
        self.ended = np.zeros(num_envs, dtype=bool)  # [N]
        # Nothing observed yet: a gap before the first rollout (rollouts refused before
        # the actor re-joined and built fresh envs) leaves nothing running to break.
        self.fresh = True
        # How many times steps went missing: what else carries state across this
        # chain's rollouts (learner/reward_scale.py) starts over when it changes.
        self.breaks = 0

    def break_(self) -> None:
        """Steps are missing (a lost or refused rollout): nothing running is whole."""
        self.breaks += 1
        self.ret[:] = 0.0
        self.length[:] = 0
        self.seen[:] = False
        self.ended[:] = False
        self.fresh = False

    def observe(
        self,
        rewards: np.ndarray,  # [T, N] float32
        terminated: np.ndarray,  # [T, N] bool
        truncated: np.ndarray,  # [T, N] bool
        valid: np.ndarray,  # [T, N] bool
    ) -> Episodes:
        """Carry the chain through one rollout whose steps passed ``checks.check_steps``.
        Raises ``InvalidMessage("bad_flags")`` when the rollout cannot follow the
        previous one (a transition where the reset after an episode end must be)."""
        if (self.ended & valid[0]).any():
            raise InvalidMessage("bad_flags", "a transition right after an episode end (the reset)")
        self.fresh = False
        done = (terminated | truncated) & valid  # [T, N]
        returns, lengths, unseen = [], [], []
        cut = 0
        for t in range(rewards.shape[0]):
            v = valid[t]
            if not v.all():
                # Not a transition: the reset after an end, or after an env error (then
                # an episode was running, and is lost). The env starts afresh after it.
                fresh = ~v
                cut += int((self.length[fresh] > 0).sum())
                self.ret[fresh] = 0.0
                self.length[fresh] = 0
                self.seen[fresh] = True
            self.ret += np.where(v, rewards[t], 0.0)
            self.length += v
            d = done[t]
            if d.any():
                whole, part = d & self.seen, d & ~self.seen
                returns.append(self.ret[whole])
                lengths.append(self.length[whole])
                unseen.append(self.length[part])
                self.ret[d] = 0.0
                self.length[d] = 0
                self.seen[d] = True
        self.ended = done[-1].copy()
        return Episodes(
            returns=np.concatenate(returns) if returns else np.zeros(0, np.float64),
            lengths=np.concatenate(lengths) if lengths else np.zeros(0, np.int64),
            unseen_lengths=np.concatenate(unseen) if unseen else np.zeros(0, np.int64),
            cut=cut,
        )


def check_claims(
    episodes: Episodes, claimed_returns: np.ndarray, claimed_lengths: np.ndarray
) -> None:
    """The actor's ``ep_returns``/``ep_lengths`` must be the episodes the data shows, in
    any order: one per end flag; each whole episode's length and return exactly; an
    episode begun before a break at least as long as the part seen of it.
    Raises ``InvalidMessage("false_claim")``."""
    k = len(claimed_returns)
    if k != episodes.ended:
        raise InvalidMessage("false_claim", f"{k} episodes claimed, the flags end {episodes.ended}")
    if k == 0:
        return
    # Greedy matching on (length, return) sorted: each derived whole episode takes the
    # first unmatched claim of its length whose return is within tolerance; for sorted
    # sequences and one tolerance this finds a matching whenever one exists.
    order = np.lexsort((claimed_returns, claimed_lengths))
    c_len, c_ret = claimed_lengths[order], claimed_returns[order]
    used = np.zeros(k, dtype=bool)
    d_order = np.lexsort((episodes.returns, episodes.lengths))
    j = 0
    for i in d_order:
        want_len, want_ret = int(episodes.lengths[i]), float(episodes.returns[i])
        tol = RETURN_RTOL * max(1.0, abs(want_ret))
        while j < k and (
            c_len[j] < want_len or (c_len[j] == want_len and c_ret[j] < want_ret - tol)
        ):
            j += 1
        if j == k or c_len[j] != want_len or c_ret[j] > want_ret + tol:
            raise InvalidMessage(
                "false_claim",
                f"an episode of {want_len} steps returning {want_ret:.6g} is not among the claims",
            )
        used[j] = True
        j += 1
    # The rest stand for episodes begun before a break: each at least as long as seen.
    rest = np.sort(c_len[~used])
    seen = np.sort(episodes.unseen_lengths)
    if (rest < seen).any():
        raise InvalidMessage("false_claim", "an episode claimed shorter than the steps it ran")
