"""Running the updates a batcher releases: the same for the networked learner and the
serial mode.

    updater = Updater(spec, trainer, stats, log, ack=outbox.ack, publish=outbox.publish_weights)
    updater.run_released(batcher, live_ids)   # train on everything released now

Dispatches on the coordination mode (gradients are applied one by one; rollouts are
trained on together), counts, acks every sender with the version its next rollout
should use (the new one, or the same one when the update was skipped), and publishes
the weights after an applied update. No sockets: ``ack`` and ``publish`` are the
caller's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from learner.batching import AsyncQueue, Release, Submission, SyncBarrier
from learner.stats import RunStats
from learner.trainer import Trainer, UpdateStats
from protocol.spec import RunSpec

AckFn = Callable[..., None]  # ack(route, seq, version, *, trained)


class Updater:
    def __init__(
        self,
        spec: RunSpec,
        trainer: Trainer,
        stats: RunStats,
        log,
        *,
        ack: AckFn | None = None,
        publish: Callable[[], None] | None = None,
        debug_delay_s: float = 0.0,
    ) -> None:
        self.spec, self.trainer, self.stats, self.log = spec, trainer, stats, log
        self.ack = ack
        self.publish = publish
        self.debug_delay_s = debug_delay_s

    def run_released(self, batcher: SyncBarrier | AsyncQueue, live: set[str]) -> None:
        while (release := batcher.take(live, self.trainer.version, time.monotonic())) is not None:
            if release.reason:
                self.log.warning(
                    "barrier_released",
                    reason=release.reason,
                    missing=release.missing[:16],
                    version=self.trainer.version,
                    rollouts=len(release.items),
                )
            self.update(release)

    def update(self, release: Release) -> None:
        items = release.items
        if not self.spec.sends_gradients:
            self._after(self.trainer.train_on([s.payload for s in items]), items)
            return
        for sub in items:
            g = sub.payload  # a checked Gradient message
            result = self.trainer.apply_gradient(
                g.arrays,
                transitions=g.env_steps,
                policy_loss=g.policy_loss,
                value_loss=g.value_loss,
                entropy=g.entropy,
            )
            self._after(result, [sub])

    def _after(self, result: UpdateStats, items: list[Submission]) -> None:
        if self.debug_delay_s:
            time.sleep(self.debug_delay_s)
        self.stats.batches += len(items)
        if self.ack is not None:
            for sub in items:
                self.ack(sub.route, sub.seq, self.trainer.version, trained=result.applied)
        self.stats.trained_steps += result.transitions
        if not result.applied:
            self.stats.skipped_updates += 1
            self.log.warning("update_skipped", reason=result.skipped, version=self.trainer.version)
            return
        self.stats.add_update(
            result.grad_norm, result.policy_loss, result.value_loss, result.entropy
        )
        if self.publish is not None:
            self.publish()
