"""Serial mode (``--serial``): the learner and ``--actors`` actors in one process, no
sockets. For debugging an algorithm and for tests of the learning maths.

    for each round:
        each actor: take the newest weights (async, gradients) or the released version
                    (sync), collect a rollout, [gradients: compute them], offer it
        train on whatever the batcher releases (the same batcher, trainer and stats as
        the networked learner), then check the stopping rules

Actors are built by core/acting.py from the same run spec a networked actor gets, with
the same seeds, so a serial run is what a networked run does without the timing: fully
repeatable for a given seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.acting import build_acting
from learner.admission import actor_seed
from learner.batching import Submission, make_batcher
from learner.build import Parts
from learner.server import Outcome
from learner.trainer import UpdateStats


def run_serial(parts: Parts, stop_requested: Callable[[], bool]) -> Outcome:
    cfg, spec, trainer, stats, log = parts.cfg, parts.spec, parts.trainer, parts.stats, parts.log
    batcher = make_batcher(
        spec.coordination,
        min_actors=cfg.actors,
        min_actors_wait_s=cfg.min_actors_wait_s,
        barrier_timeout_s=cfg.barrier_timeout_s,
        max_batches_per_update=cfg.max_batches_per_update,
    )
    ids = [f"serial-{i}" for i in range(cfg.actors)]
    actors = [
        build_acting(
            spec,
            num_envs=spec.num_envs,
            seed=actor_seed(cfg.seed, actor_id),
            temperature=cfg.temperatures[i % len(cfg.temperatures)],
        )
        for i, actor_id in enumerate(ids)
    ]
    log.info("serial_started", actors=len(actors), algo=spec.algo, env=spec.env_id)
    parts.serial_t0 = time.monotonic()
    next_progress = time.monotonic()
    seq = 0
    try:
        while True:
            for actor_id, acting in zip(ids, actors, strict=True):
                acting.policy.load(trainer.weights(), trainer.version)
                rollout = acting.collect()
                stats.env_steps += rollout.transitions
                stats.add_episodes(rollout.ep_returns)
                seq += 1
                if spec.sends_gradients:
                    grads, terms = acting.gradients(rollout)
                    result = trainer.apply_gradient(
                        grads,
                        transitions=terms.transitions,
                        policy_loss=terms.policy_loss.item(),
                        value_loss=terms.value_loss.item(),
                        entropy=terms.entropy.item(),
                    )
                    _count(stats, result, log, trainer.version)
                    continue
                stats.add_lag(trainer.version - acting.policy.version)
                batcher.offer(
                    Submission(actor_id, b"", seq, acting.policy.version, rollout),
                    time.monotonic(),
                )
                if spec.coordination == "async":
                    _train(batcher, ids, trainer, stats, log)
            _train(batcher, ids, trainer, stats, log)
            now = time.monotonic()
            if now >= next_progress:
                log.info(
                    "progress",
                    **stats.progress(now, parts.wall_s()),
                    actors=len(actors),
                    version=trainer.version,
                )
                next_progress = now + cfg.log_interval_s
            outcome = _should_stop(parts, stop_requested)
            if outcome is not None:
                return outcome
    finally:
        for acting in actors:
            acting.close()


def _train(batcher, ids, trainer, stats, log) -> None:
    while (release := batcher.take(set(ids), trainer.version, time.monotonic())) is not None:
        stats.batches += len(release.items)
        result = trainer.train_on([s.payload for s in release.items])
        _count(stats, result, log, trainer.version)


def _count(stats, result: UpdateStats, log, version: int) -> None:
    stats.trained_steps += result.transitions
    if not result.applied:
        stats.skipped_updates += 1
        log.warning("update_skipped", reason=result.skipped, version=version)
        return
    stats.add_update(result.grad_norm, result.policy_loss, result.value_loss, result.entropy)


def _should_stop(parts: Parts, stop_requested: Callable[[], bool]) -> Outcome | None:
    cfg, stats = parts.cfg, parts.stats
    if stats.solved(parts.target):
        return Outcome(True, "solved")
    if stop_requested():
        return Outcome(False, "signal")
    if cfg.max_env_steps and stats.env_steps >= cfg.max_env_steps:
        return Outcome(False, "max_env_steps")
    if cfg.max_seconds and parts.wall_s() >= cfg.max_seconds:
        return Outcome(False, "max_seconds")
    return None
