"""The intake (learner/intake.py): one decision per rollout or gradient, and everything it
implies done once. Pure: records, messages and versions go in, no sockets."""

from __future__ import annotations

import numpy as np
import pytest

from learner.batching import Submission
from learner.intake import Intake
from learner.registry import ActorRecord
from learner.reward_scale import RewardScale
from learner.stats import RunStats
from protocol.messages import Experience, Gradient
from tests.conftest import CARTPOLE, experience_arrays

N = CARTPOLE.num_envs
T = CARTPOLE.rollout_len


def record(actor_id: str = "a") -> ActorRecord:
    return ActorRecord(
        actor_id=actor_id, incarnation="i1", routing_id=actor_id.encode(), hostname="h",
        pid=1, num_envs=N, temperature=1.0, seed=1, last_seen=0.0,
    )  # fmt: skip


def running(seed: int = 0) -> dict[str, np.ndarray]:
    """A rollout in which no episode ends: any number of them chain."""
    a = experience_arrays(CARTPOLE, N, seed)
    a["terminated"][:] = False
    a["valid"][:] = True
    a["rewards"][:] = 1.0
    a["ep_returns"], a["ep_lengths"] = np.zeros(0, "<f8"), np.zeros(0, "<i8")
    return a


def experience(seq: int, version: int = 0, arrays=None, learner_id: str = "L") -> Experience:
    return Experience(
        actor_id="a", incarnation="i1", seq=seq, learner_id=learner_id, policy_version=version,
        arrays=running(seq) if arrays is None else arrays,
    )  # fmt: skip


def intake(max_lag: int = 2, reward_scale: RewardScale | None = None) -> Intake:
    return Intake(CARTPOLE, "L", max_lag, {}, RunStats(), reward_scale)


def test_an_accepted_rollout_is_counted_once_and_offered_with_its_steps():
    it, rec = intake(), record()
    d = it.take(rec, experience(1), version=1)
    assert d.kind == "accepted" and d.lag == 1 and not d.ack_untrained
    assert d.steps == T * N == it.stats.env_steps == rec.env_steps
    sub = d.submission
    assert isinstance(sub, Submission) and (sub.actor_id, sub.seq, sub.version) == ("a", 1, 0)
    assert sub.steps == d.steps and sub.payload.rewards.shape == (T, N)
    assert it.stats.dropped_stale == 0 and it.stats.progress(1.0, 1.0)["policy_lag_max"] == 1


def test_a_stale_rollout_counts_its_steps_as_dropped_and_its_episodes_still_count():
    it, rec = intake(max_lag=2), record()
    d = it.take(rec, experience(1, version=0, arrays=experience_arrays(CARTPOLE, N)), version=3)
    assert d.kind == "stale" and d.lag == 3 and d.ack_untrained and d.submission is None
    assert it.stats.dropped_stale == 1 and it.stats.dropped_steps == d.steps == T * N - 1
    assert it.stats.env_steps == d.steps  # it arrived whole: its steps happened
    assert d.episodes == 1 and it.stats.episodes == 1  # derived from the data all the same


def test_a_refused_rollout_counts_nothing_breaks_the_chain_and_is_acked_untrained():
    it, rec = intake(), record()
    assert it.take(rec, experience(1), version=0).kind == "accepted"
    bad = running(2)
    bad["logp"][0, 0] = np.nan
    d = it.take(rec, experience(2, arrays=bad), version=0)
    assert (d.kind, d.reason) == ("refused", "not_finite") and d.ack_untrained
    assert it.stats.env_steps == T * N and rec.chain.breaks == 1
    # The refused one used its sequence number: the next is no gap, a replay is refused.
    assert it.take(rec, experience(3), version=0).gap == 0
    assert it.take(rec, experience(3), version=0).reason == "replayed_seq"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"incarnation": "i0"}, "wrong_incarnation"),
        ({"policy_version": 9}, "future_version"),
    ],
)
def test_identity_and_version_are_judged_before_the_content(change, reason):
    import dataclasses

    it, rec = intake(), record()
    d = it.take(rec, dataclasses.replace(experience(1), **change), version=0)
    assert (d.kind, d.reason) == ("refused", reason) and it.stats.env_steps == 0


def test_a_rollout_for_another_learner_is_dropped_silently_and_counted_apart():
    it, rec = intake(), record()
    d = it.take(rec, experience(1, learner_id="an-earlier-learner"), version=0)
    assert d.kind == "foreign" and not d.ack_untrained
    assert it.stats.dropped_foreign == 1 and it.stats.dropped_stale == 0
    assert it.stats.env_steps == 0 and rec.chain is None


def test_the_mode_decides_which_message_is_taken():
    it, rec = intake(), record()
    grad = Gradient(
        actor_id="a", incarnation="i1", seq=1, learner_id="L", policy_version=0,
        env_steps=1, policy_loss=0.0, value_loss=0.0, entropy=0.0, arrays={},
    )  # fmt: skip
    d = it.take(rec, grad, version=0)  # a sync run takes rollouts
    assert (d.kind, d.reason) == ("refused", "unexpected_type")


def test_a_gap_breaks_the_chain_so_a_half_seen_episode_is_not_counted_whole():
    it, rec = intake(), record()
    it.take(rec, experience(1), version=0)
    ends = running(3)
    ends["terminated"][0, 0] = True  # env 0's episode ends at the first step after the gap
    ends["valid"][1, 0], ends["rewards"][1, 0] = False, 0.0
    ends["ep_returns"], ends["ep_lengths"] = np.array([7.0]), np.array([7])  # at least 6
    d = it.take(rec, experience(3, arrays=ends), version=0)
    assert d.kind == "accepted" and d.gap == 1 and rec.chain.breaks == 1
    assert d.episodes == 0 and it.stats.episodes_unseen_start == 1


def test_reward_statistics_see_accepted_and_stale_rollouts_only():
    scale = RewardScale(0.99)
    it, rec = intake(max_lag=0, reward_scale=scale), record()
    it.take(rec, experience(1), version=0)  # accepted
    after_one = scale.count
    assert after_one == T * N
    it.take(rec, experience(2, version=0), version=1)  # stale: its rewards were real
    assert scale.count == 2 * T * N
    bad = running(3)
    bad["rewards"][0, 0] = np.inf
    it.take(rec, experience(3, arrays=bad), version=1)  # refused: nothing of it
    assert scale.count == 2 * T * N


def test_a_submission_the_barrier_drops_late_is_stale_like_one_judged_so_on_arrival():
    it = intake()
    it.drop_late(Submission("a", b"a", 4, 0, None, steps=12))
    assert it.stats.dropped_stale == 1 and it.stats.dropped_steps == 12


def test_every_step_that_arrived_is_either_trained_or_dropped():
    """The counts agree by construction: what the intake counts as arrived, the
    updater as trained and the intake and barrier as dropped add up."""
    import dataclasses

    import torch

    from core import algos
    from learner.batching import make_batcher
    from learner.trainer import Trainer, TrainerConfig
    from learner.updates import Updater

    spec = dataclasses.replace(CARTPOLE, algo="a3c", coordination="async")
    algo = algos.get("a3c")
    trainer = Trainer(spec, algo, algo.make_config(), TrainerConfig(), torch.device("cpu"))
    stats = RunStats()
    it = Intake(spec, "L", 1, {}, stats)
    batcher = make_batcher(
        algo.mode, min_actors=1, min_actors_wait_s=1.0, barrier_timeout_s=1.0,
        max_batches_per_update=2,
    )  # fmt: skip
    updater = Updater(trainer, stats, None, dropped=it.drop_late)
    rec = record()
    for seq, version in [(1, 0), (2, 0), (3, 0), (4, 0), (5, 3)]:
        d = it.take(rec, experience(seq, version=version), trainer.version)
        if d.submission is not None:
            batcher.offer(d.submission, 0.0)
        updater.run_released(batcher, {"a"})
    assert stats.dropped_stale >= 1 and stats.trained_steps > 0
    assert stats.env_steps == stats.trained_steps + stats.dropped_steps
