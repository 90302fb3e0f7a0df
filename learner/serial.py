"""Serial mode (``--serial``): the learner and ``--actors`` actors in one process, no
sockets. For debugging an algorithm and for tests of the learning maths.

    for each round:
        each actor: take the current weights, collect a rollout, [the mode sends
                    gradients: compute them], offer it to the batcher; the mode
                    updates after each rollout (async, gradients): train on it at once
        train on whatever the batcher releases (the same batcher, updater, trainer and
        stats as the networked learner), then check the stopping rules

Actors are built by core/acting.py from the same run spec a networked actor gets, with
the same seeds, so a serial run is what a networked run does without the timing: fully
repeatable for a given seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core import coordination
from core.acting import Acting, build_acting
from learner.admission import actor_seed
from learner.batching import Submission, make_batcher
from learner.build import Parts
from learner.episodes import EpisodeChain, check_claims
from learner.outcome import Outcome, stopping_rule
from learner.updates import Updater


def run_serial(parts: Parts, stop_requested: Callable[[], bool]) -> Outcome:
    cfg, spec, trainer, stats, log = parts.cfg, parts.spec, parts.trainer, parts.stats, parts.log
    mode = coordination.get(spec.coordination)
    batcher = make_batcher(
        mode,
        min_actors=cfg.actors,
        min_actors_wait_s=cfg.min_actors_wait_s,
        barrier_timeout_s=cfg.barrier_timeout_s,
        max_batches_per_update=cfg.max_batches_per_update,
        max_lag=mode.lag_bound(cfg.policy_lag_bound),
        gather=cfg.async_gather,
    )
    updater = Updater(spec, trainer, stats, log, budget=cfg.max_env_steps)
    # The local actors' names, so the seeds are those of a networked run's actors.
    ids = [f"local-{i}" for i in range(cfg.actors)]
    actors: list[Acting] = []
    # Episodes derived from the data as the networked learner does (learner/episodes.py).
    chains = {actor_id: EpisodeChain(spec.num_envs) for actor_id in ids}

    def latest() -> tuple[int, dict]:
        return trainer.version, trainer.weights()

    try:
        for i, actor_id in enumerate(ids):
            actors.append(
                build_acting(
                    spec,
                    num_envs=spec.num_envs,
                    seed=actor_seed(cfg.seed, actor_id),
                    temperature=cfg.temperatures[i % len(cfg.temperatures)],
                )
            )
        log.info("serial_started", actors=len(actors), algo=spec.algo, env=spec.env_id)
        parts.serial_t0 = time.monotonic()
        next_progress = last_checkpoint = time.monotonic()
        seq = 0
        while True:
            for actor_id, acting in zip(ids, actors, strict=True):
                if trainer.version > acting.policy.version:
                    acting.policy.load(trainer.weights(), trainer.version)
                rollout = acting.collect()
                stats.env_steps += rollout.transitions
                episodes = chains[actor_id].observe(
                    rollout.rewards, rollout.terminated, rollout.truncated, rollout.valid
                )
                check_claims(episodes, rollout.ep_returns, rollout.ep_lengths)  # a bug if not
                trainer.observe_rewards(
                    chains[actor_id],
                    rollout.rewards,
                    rollout.terminated,
                    rollout.truncated,
                    rollout.valid,
                )
                stats.add_episodes(episodes)
                stats.add_lag(trainer.version - acting.policy.version)
                seq += 1
                payload = acting.gradient_message(rollout) if mode.sends_gradients else rollout
                sub = Submission(actor_id, b"", seq, acting.policy.version, payload)
                batcher.offer(sub, time.monotonic())
                if mode.update_each_rollout:
                    updater.run_released(batcher, set(ids))
            updater.run_released(batcher, set(ids))
            now = time.monotonic()
            parts.reporter.tick(parts.wall_s(), stats.env_steps, latest)
            if now >= next_progress:
                fields = {
                    **stats.progress(now, parts.wall_s()),
                    "actors": len(actors),
                    "version": trainer.version,
                }
                parts.reporter.progress(fields, now)
                next_progress = now + cfg.log_interval_s
            if cfg.checkpoint_every_s and now - last_checkpoint >= cfg.checkpoint_every_s:
                parts.save_checkpoint(parts.wall_s())
                last_checkpoint = now
            outcome = stopping_rule(
                cfg,
                stats,
                parts.target,
                parts.wall_s(),
                started=True,
                stop_requested=stop_requested,
                confirm=parts.confirm,
                weights=latest,
            )
            if outcome is not None:
                return outcome
    finally:
        for acting in actors:
            acting.close()
