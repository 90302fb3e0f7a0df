"""--resume: the newest checkpoint that loads, checked against the current settings
(learner/resume.py says what may change), loaded into the trainer, the counters and
the reward scale. Refused with the reason when nothing loads or the network would not
fit; the wiring (learner/build.py) turns that into a BuildError (learner/spec.py).
"""

from __future__ import annotations

import torch

from learner.checkpoint import Checkpointer
from learner.config import LearnerConfig
from learner.resume import IncompatibleResume, compare
from learner.reward_scale import RewardScale
from learner.stats import RunStats
from learner.trainer import Trainer
from protocol.spec import RunSpec


class ResumeRefused(ValueError):
    """This run cannot resume from what its checkpoint directory holds."""


def restore(
    checkpointer: Checkpointer,
    trainer: Trainer,
    stats: RunStats,
    reward_scale: RewardScale | None,
    spec: RunSpec,
    cfg: LearnerConfig,
    log,
) -> float:
    """Load the newest checkpoint that loads; the training seconds it had done (0.0
    when there is none to resume from)."""
    found = checkpointer.load_latest(log)
    if found is None and checkpointer.skipped:
        # Checkpoints are there but none loads (corrupt, or an older format): starting
        # over would silently lose the run, and pruning would delete them.
        reasons = "; ".join(f"{p.name}: {why}" for p, why in checkpointer.skipped[:3])
        raise ResumeRefused(
            f"--resume: no checkpoint in {checkpointer.cfg.directory} loads ({reasons}); "
            "move them away to start over"
        )
    if found is None:
        log.warning("resume_found_nothing", directory=str(checkpointer.cfg.directory))
        return 0.0
    path, state = found
    for skipped, why in checkpointer.skipped:
        # Newer than the one that loaded and unreadable: out of the way, so that it takes
        # no place among the --keep-checkpoints this run prunes to, nor comes first again.
        aside = checkpointer.set_aside(skipped)
        log.warning("checkpoint_set_aside", path=str(skipped), to=str(aside), reason=why)
    try:
        changed = compare(
            state.get("spec", {}), state.get("config", {}), spec.to_dict(), cfg.resolved()
        )
    except IncompatibleResume as exc:
        raise ResumeRefused(f"--resume from {path}: {exc}") from None
    trainer.load_state_dict(state["trainer"])
    if reward_scale is not None:
        # Checkpoints before 2026-12-02 kept the scale inside the trainer's state.
        saved = state.get("reward_scale", state["trainer"].get("reward_scale"))
        if saved is not None:
            reward_scale.load_state_dict(saved)
    # The optimizer state carries the old learning rate: set the current one explicitly.
    trainer.set_lr(cfg.learning_rate)
    stats.restore(state["counters"])
    trainer.set_progress(stats.env_steps, cfg.max_env_steps)  # the schedules
    torch.set_rng_state(state["torch_rng"])
    trained_s = float(state["counters"].get("wall_s", 0.0))
    if changed:
        log.info(
            "resume_settings_changed",
            **{k: [old, new] for k, (old, new) in changed.items()},
        )
    log.info(
        "resumed",
        path=str(path),
        version=trainer.version,
        env_steps=stats.env_steps,
        updates=stats.updates,
        wall_s=trained_s,
        lr=trainer.lr,
    )
    return trained_s
