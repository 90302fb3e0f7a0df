"""Serial mode (``--serial``): the learner and ``--actors`` actors in one process, no
sockets. For debugging an algorithm and for tests of the learning maths.

    for each round:
        each actor: take the current weights, collect a rollout, make the message a
                    networked actor would send (Experience, or a Gradient where the
                    mode sends gradients), hand it to the intake; the mode updates
                    after each rollout (async, gradients): train on what is released
        train on whatever the batcher releases, then housekeeping and the stopping rules

Everything after the message is the networked learner's own: the same intake (checks,
sequence numbers, lag rule, episode chain and claims, reward statistics), batcher,
updater, trainer, stats and housekeeping. Actors are built by core/acting.py from the
same run spec a networked actor gets, with the same seeds, so a serial run is what a
networked run does without the timing: fully repeatable for a given seed. A rollout
the intake refuses here is a bug in this code base, and raises.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from core.acting import Acting, build_acting
from learner.admission import actor_seed
from learner.build import Parts
from learner.outcome import Outcome
from learner.registry import ActorRecord
from learner.updates import Updater
from protocol.messages import Experience


def run_serial(parts: Parts, stop_requested: Callable[[], bool]) -> Outcome:
    cfg, spec, trainer, log = parts.cfg, parts.spec, parts.trainer, parts.log
    intake, batcher, house = parts.intake, parts.batcher, parts.house
    assert intake is not None and batcher is not None and house is not None
    mode = intake.mode
    updater = Updater(
        trainer,
        parts.stats,
        log,
        dropped=intake.drop_late,
        reward_scale=parts.reward_scale,
        budget=cfg.max_env_steps,
    )
    # The local actors' records, named as a networked run's local actors are, so their
    # seeds and temperatures are the same.
    records = [
        ActorRecord(
            actor_id=f"local-{i}",
            incarnation="serial",
            routing_id=f"local-{i}".encode(),
            hostname=socket.gethostname(),
            pid=0,
            num_envs=spec.num_envs,
            temperature=cfg.temperatures[i % len(cfg.temperatures)],
            seed=actor_seed(cfg.seed, f"local-{i}"),
            last_seen=0.0,
        )
        for i in range(cfg.actors)
    ]
    live = {r.actor_id for r in records}
    actors: list[Acting] = []
    try:
        for rec in records:
            actors.append(
                build_acting(
                    spec, num_envs=rec.num_envs, seed=rec.seed, temperature=rec.temperature
                )
            )
        log.info("serial_started", actors=len(actors), algo=spec.algo, env=spec.env_id)
        parts.serial_t0 = time.monotonic()
        while True:
            for rec, acting in zip(records, actors, strict=True):
                if trainer.version > acting.policy.version:
                    acting.policy.load(trainer.weights(), trainer.version)
                rollout = acting.collect()
                ids = {
                    "actor_id": rec.actor_id,
                    "incarnation": rec.incarnation,
                    "seq": rec.last_seq + 1,
                    "learner_id": intake.learner_id,
                    "policy_version": acting.policy.version,
                }
                msg = (
                    acting.gradient_message(rollout, **ids)
                    if mode.sends_gradients
                    else Experience(arrays=rollout.wire_arrays(spec), **ids)
                )
                decision = intake.take(rec, msg, trainer.version)
                if decision.kind == "refused":
                    raise RuntimeError(
                        f"serial: own rollout refused: {decision.reason} {decision.detail}"
                    )
                if decision.episodes:
                    house.after_intake(parts.wall_s())
                if decision.submission is not None:
                    batcher.offer(decision.submission, time.monotonic())
                if mode.update_each_rollout:
                    updater.run_released(batcher, live)
            updater.run_released(batcher, live)
            now = time.monotonic()
            house.tick(
                now, parts.wall_s(), lambda: {"actors": len(actors), "version": trainer.version}
            )
            if house.checkpoint_due(parts.wall_s()):
                parts.save_checkpoint(parts.wall_s())
                house.checkpointed(parts.wall_s())
            outcome = house.stop(parts.wall_s(), started=True)
            if outcome is not None:
                return outcome
    finally:
        for acting in actors:
            acting.close()
