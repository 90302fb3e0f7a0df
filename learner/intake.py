"""The intake: what becomes of a rollout or gradient an admitted actor sent, decided in
one place and shared by the networked learner and ``--serial``. Pure: no sockets, no
clock, no torch.

    intake = Intake(spec, learner_id, max_lag, shapes, stats, reward_scale)
    decision = intake.take(record, msg, version)     # msg: Experience or Gradient
    "accepted": batcher.offer(decision.submission)
    "refused":  the sender is told why (counted, logged, maybe quarantined by the
                server), and acked untrained so its credit comes back
    "stale":    acked untrained: it collects again with newer weights
    "foreign":  collected for an earlier learner: dropped silently (the actor re-joins)
    intake.drop_late(sub)                            # a barrier found it too old

What a decision implies is done here, once, so the counts agree by construction:
``env_steps`` counts every transition that arrived whole (accepted or stale), of which
``trained_steps`` (the updater's) and ``dropped_steps`` (here) are the two fates;
episodes are derived from the data through the sender's ``EpisodeChain``
(learner/episodes.py) and its claims checked against them; the reward statistics of
``--reward-norm`` see each accepted or stale rollout in the actor's order; the lag at
arrival is recorded. Order matters and is fixed here: identity, sequence number and
version first (a rollout that then fails the content checks still used its sequence
number), then the content checks, then the episode chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import coordination
from learner.admission import judge_batch
from learner.batching import Submission
from learner.episodes import EpisodeChain, check_claims
from learner.registry import ActorRecord
from learner.reward_scale import RewardScale
from learner.stats import RunStats
from protocol import checks
from protocol.messages import Experience, Gradient
from protocol.rollout import Rollout
from protocol.spec import RunSpec

KINDS = ("accepted", "refused", "stale", "foreign")


@dataclass(frozen=True)
class Decision:
    kind: str  # one of KINDS
    reason: str = ""  # "refused": the rejection reason (a closed set: protocol.checks)
    detail: str = ""
    steps: int = 0  # valid transitions in it (0 unless it passed the checks)
    lag: int = 0  # versions behind the learner at arrival
    gap: int = 0  # sequence numbers skipped before this one (lost rollouts)
    episodes: int = 0  # whole episodes it completed
    submission: Submission | None = None  # "accepted": what the batcher takes

    @property
    def ack_untrained(self) -> bool:
        """The sender gets an Ack with ``trained=False`` now (its credit comes back)."""
        return self.kind in ("refused", "stale")


class Intake:
    def __init__(
        self,
        spec: RunSpec,
        learner_id: str,
        max_lag: int,
        shapes: dict[str, tuple[int, ...]],
        stats: RunStats,
        reward_scale: RewardScale | None = None,
    ) -> None:
        self.spec = spec
        self.mode = coordination.get(spec.coordination)
        self.learner_id = learner_id
        self.max_lag = max_lag  # the mode's lag rule as it applies in this run
        self.shapes = shapes  # parameter shapes, for checking gradients
        self.stats = stats
        self.reward_scale = reward_scale

    def take(self, rec: ActorRecord, msg: Experience | Gradient, version: int) -> Decision:
        if not isinstance(msg, wants := self.mode.message):
            return Decision("refused", "unexpected_type", f"this run takes {wants.TYPE}")
        verdict = judge_batch(rec, msg, self.learner_id, version, self.max_lag)
        if verdict.kind == "foreign":
            self.stats.dropped_foreign += 1
            return Decision("foreign")
        if rec.chain is None:
            rec.chain = EpisodeChain(rec.num_envs)
        try:
            if verdict.kind == "reject":
                raise checks.InvalidMessage(verdict.reason, verdict.detail)
            if isinstance(msg, Experience):
                steps = checks.check_experience(msg, self.spec, rec.num_envs)
            else:
                steps = checks.check_gradient(msg, self.shapes, self.spec, rec.num_envs)
            if verdict.gap and not rec.chain.fresh:  # steps missing from the chain
                rec.chain.break_()
            a = msg.arrays
            episodes = rec.chain.observe(a["rewards"], a["terminated"], a["truncated"], a["valid"])
            check_claims(episodes, a["ep_returns"], a["ep_lengths"])
        except checks.InvalidMessage as exc:
            rec.chain.break_()  # the steps of a refused rollout are missing from the chain
            return Decision("refused", exc.reason, exc.detail, gap=verdict.gap)
        if self.reward_scale is not None:
            self.reward_scale.observe(
                rec.chain, a["rewards"], a["terminated"], a["truncated"], a["valid"]
            )
        self.stats.env_steps += steps
        rec.env_steps += steps
        self.stats.add_episodes(episodes)
        whole = len(episodes.returns)
        if verdict.kind == "stale":
            self.stats.dropped_stale += 1
            self.stats.dropped_steps += steps
            return Decision("stale", steps=steps, lag=verdict.lag, gap=verdict.gap, episodes=whole)
        self.stats.add_lag(verdict.lag)
        payload = Rollout.from_arrays(a) if isinstance(msg, Experience) else msg
        sub = Submission(rec.actor_id, rec.routing_id, msg.seq, msg.policy_version, payload, steps)
        return Decision(
            "accepted",
            steps=steps,
            lag=verdict.lag,
            gap=verdict.gap,
            episodes=whole,
            submission=sub,
        )

    def drop_late(self, sub: Submission) -> None:
        """A submission the batcher dropped as too old at release (it waited while the
        update that made it so ran): stale like one judged so at arrival."""
        self.stats.dropped_stale += 1
        self.stats.dropped_steps += sub.steps
