"""Running the updates a batcher releases: the same for the networked learner and the
serial mode.

    updater = Updater(trainer, stats, log, ack=outbox.ack, publish=..., dropped=intake.drop_late)
    updater.run_released(batcher, live_ids)   # train on everything released now, in a row

Gradients are applied one by one; rollouts are trained on together. Counts, acks every
sender with the version its next rollout should use (the new one, or the same one when
the update was skipped), and publishes the weights after an applied update. What the
barrier finds too old at release is the intake's to count (``dropped``) and acked
untrained. No sockets: ``ack`` and ``publish`` are the caller's.

Threads: ``take``, ``prepare`` and ``finish`` run on the learner's loop; ``compute`` may
run on the training thread (learner/pipeline.py) and is the only step that touches the
network. The reward statistics (--reward-norm) are read in ``prepare``, on the loop,
where the intake writes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.batch import Batch
from learner.batching import Batcher, Release, Submission
from learner.reward_scale import RewardScale
from learner.stats import RunStats
from learner.trainer import Trainer, UpdateStats
from protocol.rollout import Rollout

AckFn = Callable[..., None]  # ack(route, seq, version, *, trained)


@dataclass
class Done:
    """What one release's training produced, for the bookkeeping that follows it."""

    release: Release
    results: list[tuple[list[Submission], UpdateStats]]
    # The weights after the last applied update (copied where it ran), else None.
    weights: tuple[int, dict[str, np.ndarray]] | None
    lags: list[int] = field(default_factory=list)  # each item's lag when its update started


class Updater:
    """Three steps per release: ``prepare`` (the batch on the device), ``compute`` (the
    update; the only step that touches the network) and ``finish`` (stats, acks,
    weights). Serial mode runs them in a row (``run_released``); the server runs
    ``compute`` on its training thread (learner/pipeline.py)."""

    def __init__(
        self,
        trainer: Trainer,
        stats: RunStats,
        log,
        *,
        ack: AckFn | None = None,
        publish: Callable[[int, dict[str, np.ndarray]], None] | None = None,
        dropped: Callable[[Submission], None] | None = None,
        reward_scale: RewardScale | None = None,
        budget: int | None = None,
    ) -> None:
        self.trainer, self.stats, self.log = trainer, stats, log
        self.ack = ack
        self.publish = publish
        self.dropped = dropped
        self.reward_scale = reward_scale
        self.budget = budget  # --max-env-steps: what the schedules anneal over

    def take(self, batcher: Batcher, live: set[str]) -> Release | None:
        release = batcher.take(live, self.trainer.version, time.monotonic())
        for sub in batcher.take_dropped():  # too old for the barrier: acked untrained
            if self.ack is not None:
                self.ack(sub.route, sub.seq, self.trainer.version, trained=False)
            if self.dropped is not None:
                self.dropped(sub)
        if release is not None and release.reason:
            self.log.warning(
                "barrier_released",
                reason=release.reason,
                missing=release.missing[:16],
                version=self.trainer.version,
                rollouts=len(release.items),
            )
        return release

    def run_released(self, batcher: Batcher, live: set[str]) -> None:
        while (release := self.take(batcher, live)) is not None:
            self.finish(self.compute(release, self.prepare(release)))

    def prepare(self, release: Release) -> Batch | None:
        self.trainer.set_progress(self.stats.env_steps, self.budget)
        if not isinstance(release.items[0].payload, Rollout):
            return None  # gradients: nothing to assemble, each is applied as it is
        return self.trainer.prepare([s.payload for s in release.items], self.reward_scale)

    def compute(self, release: Release, batch: Batch | None) -> Done:
        items = release.items
        # The lag the loss sees: behind the version this update starts from (more than
        # at arrival when the batch queued behind other updates).
        lags = [self.trainer.version - s.version for s in items]
        if batch is not None:
            batch = batch.with_lags(lags, [s.payload.num_envs for s in items])
            results = [(items, self.trainer.train_batch(batch))]
        else:
            results = []
            for sub in items:
                g = sub.payload  # a checked Gradient message
                result = self.trainer.apply_gradient(
                    g.arrays,
                    transitions=g.env_steps,
                    policy_loss=g.policy_loss,
                    value_loss=g.value_loss,
                    entropy=g.entropy,
                )
                results.append(([sub], result))
        weights = None
        if self.publish is not None and any(r.applied for _, r in results):
            weights = (self.trainer.version, self.trainer.weights())
        return Done(release, results, weights, lags)

    def finish(self, done: Done) -> None:
        for lag in done.lags:
            self.stats.add_train_lag(lag)
        for items, result in done.results:
            self._after(result, items)
        if done.weights is not None and self.publish is not None:
            self.publish(*done.weights)

    def _after(self, result: UpdateStats, items: list[Submission]) -> None:
        self.stats.batches += len(items)
        if self.ack is not None:
            for sub in items:
                self.ack(sub.route, sub.seq, result.version, trained=result.applied)
        self.stats.trained_steps += result.transitions
        if not result.applied:
            self.stats.skipped_updates += 1
            self.log.warning("update_skipped", reason=result.skipped, version=result.version)
            return
        self.stats.add_update(
            result.grad_norm, result.policy_loss, result.value_loss, result.entropy, result.extras
        )
