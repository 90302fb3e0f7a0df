"""All the wiring of a learner in one place: from a checked LearnerConfig to the parts
that run (the run spec, the trainer, the stats, the intake, the batcher, the
housekeeping, the checkpointer, the server, the local actors). Nothing is patched onto
an object after construction.

    parts = build(cfg, run_dir, log, stop_requested)   # may raise BuildError
    outcome = parts.run()
    parts.close(outcome)                               # shutdown, final checkpoint
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from core.envs import EnvSpecError, reward_threshold
from learner.auth import load_learner_keys
from learner.batching import Batcher, make_batcher
from learner.checkpoint import CheckpointConfig, Checkpointer
from learner.config import DEFAULT_CONFIRM_EPISODES, LearnerConfig
from learner.confirm import SolveConfirmation
from learner.housekeeping import Housekeeping
from learner.intake import Intake
from learner.local import LocalActors
from learner.outcome import Outcome
from learner.playing import PeriodicEvaluation
from learner.reporting import Reporter
from learner.restore import ResumeRefused, restore
from learner.reward_scale import RewardScale
from learner.server import LearnerServer
from learner.spec import BuildError, build_spec
from learner.stats import RunStats
from learner.tensorboard import TensorBoardWriter
from learner.trainer import Trainer, TrainerConfig
from protocol.rollout import too_large
from protocol.spec import RunSpec


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise BuildError("--device cuda: CUDA is not available here")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@dataclass
class Parts:
    cfg: LearnerConfig
    spec: RunSpec
    device: torch.device
    trainer: Trainer
    stats: RunStats
    checkpointer: Checkpointer
    target: float | None
    trained_s: float
    log: object
    # --reward-norm's running scale: written by the intake, read when a batch is prepared
    reward_scale: RewardScale | None = None
    # The loop's pure parts, shared by the networked and the serial learner.
    intake: Intake | None = None
    batcher: Batcher | None = None
    house: Housekeeping | None = None
    server: LearnerServer | None = None  # None in serial mode
    confirm: SolveConfirmation | None = None  # --confirm-episodes
    reporter: Reporter | None = None  # TensorBoard, --eval-every-s
    actors: LocalActors | None = None
    serial_t0: float | None = None  # serial mode: when training started

    def close(self) -> None:
        """Stop the threads that play the policy and flush TensorBoard."""
        if self.confirm is not None:
            self.confirm.close()
        if self.reporter is not None:
            self.reporter.close()

    def wall_s(self) -> float:
        if self.server is not None:
            return self.server.wall_s
        elapsed = 0.0 if self.serial_t0 is None else time.monotonic() - self.serial_t0
        return self.trained_s + elapsed

    def save_checkpoint(self, wall_s: float) -> Path | None:
        if self.server is not None and self.server.training.alive and self.server.closed:
            # An update outlived shutdown: the network may be half-written. The last
            # periodic checkpoint stands.
            self.log.error("checkpoint_skipped", reason="an update is still running")
            return None
        state = {
            "trainer": self.trainer.state_dict(),
            **({"reward_scale": self.reward_scale.state_dict()} if self.reward_scale else {}),
            "counters": {**self.stats.counters(), "wall_s": wall_s},
            "torch_rng": torch.get_rng_state(),
            # Plain values only (lists, not tuples): what weights_only loading accepts.
            "spec": self.spec.to_dict(),
            "config": self.cfg.resolved(),
        }
        path = self.checkpointer.save(state, step=self.stats.env_steps)
        self.log.info(
            "checkpoint_saved",
            path=str(path),
            version=self.trainer.version,
            env_steps=self.stats.env_steps,
        )
        return path


def build(cfg: LearnerConfig, run_dir: Path, log, stop_requested: Callable[[], bool]) -> Parts:
    try:
        spec = build_spec(cfg)
    except (EnvSpecError, ValueError) as exc:
        raise BuildError(str(exc)) from None
    oversize = "" if cfg.serial else too_large(spec, spec.num_envs, cfg.max_frame_bytes)
    if oversize:
        raise BuildError(oversize)
    device = pick_device(cfg.device)
    curve, authorized = None, {}
    if cfg.keys:
        try:
            curve, authorized = load_learner_keys(Path(cfg.keys))
        except (OSError, ValueError) as exc:
            raise BuildError(f"--keys {cfg.keys}: {exc}") from None
        log.info("curve_enabled", keys=cfg.keys, authorized=sorted(authorized.values()))
    actors = None if cfg.serial else _local_actors(cfg, run_dir, authorized)
    with contextlib.ExitStack() as undo:  # a build that fails leaves no actor running
        if actors is not None:
            # Started now, so that their start-up overlaps the network's and the
            # optimizer's (importing torch's compiler stack alone takes ~1 s); they
            # wait for the address file written once the learner is bound (local.py).
            actors.start()
            undo.callback(actors.stop, timeout_s=1.0)
        try:
            trainer = Trainer(
                spec,
                cfg.algorithm,
                cfg.loss,
                TrainerConfig(
                    lr=cfg.learning_rate,
                    optimizer=cfg.optimizer_name,
                    max_grad_norm=cfg.max_grad_norm,
                    seed=cfg.seed,
                    log_std_init=cfg.log_std_init,
                    lr_schedule=cfg.lr_schedule,
                    clip_schedule=cfg.clip_schedule,
                ),
                device,
            )
        except ValueError as exc:  # an unknown encoder, a network the spaces cannot take
            raise BuildError(str(exc)) from None
        parts = Parts(
            cfg=cfg,
            spec=spec,
            device=device,
            trainer=trainer,
            stats=RunStats(
                losses_from="actors" if cfg.algorithm.mode.sends_gradients else "learner"
            ),
            reward_scale=RewardScale(cfg.loss.gamma) if cfg.reward_norm else None,
            checkpointer=Checkpointer(
                CheckpointConfig(run_dir / "checkpoints", keep=cfg.keep_checkpoints)
            ),
            target=cfg.target_return
            if cfg.target_return is not None
            else reward_threshold(cfg.env),
            trained_s=0.0,
            log=log,
        )
        if removed := parts.checkpointer.clear_temp():
            log.info("checkpoint_temp_removed", paths=[p.name for p in removed[:8]])
        if cfg.resume:
            try:
                parts.trained_s = restore(
                    parts.checkpointer,
                    trainer,
                    parts.stats,
                    parts.reward_scale,
                    spec,
                    cfg,
                    log,
                )
            except ResumeRefused as exc:
                raise BuildError(str(exc)) from None
        elif held := parts.checkpointer.list():
            # A fresh run here would prune by step: the earlier run's higher-step files
            # would outrank this run's, deleting each of its checkpoints at the next
            # save, and a later --resume would take the other run's.
            raise BuildError(
                f"{parts.checkpointer.cfg.directory} holds checkpoints of an earlier run "
                f"(newest {held[0].name}): pass --resume to carry it on, or another --run-dir"
            )
        confirm_episodes = cfg.confirm_episodes
        if confirm_episodes is None:  # by default wherever there is a "solved" to confirm
            confirm_episodes = DEFAULT_CONFIRM_EPISODES if parts.target is not None else 0
        elif confirm_episodes and parts.target is None:
            raise BuildError(
                f"--confirm-episodes: {cfg.env} has no reward threshold; give --target-return"
            )
        parts.reporter = Reporter(
            log,
            tensorboard=TensorBoardWriter(run_dir / "tb") if cfg.tensorboard else None,
            evaluation=PeriodicEvaluation(
                spec, every_s=cfg.eval_every_s, episodes=cfg.eval_episodes, seed=cfg.seed, log=log
            )
            if cfg.eval_every_s
            else None,
        )
        if confirm_episodes:
            parts.confirm = SolveConfirmation(
                spec,
                episodes=confirm_episodes,
                target=parts.target,
                seed=cfg.seed,
                log=log,
                report=parts.reporter.confirmation,
            )
        mode = cfg.algorithm.mode
        max_lag = mode.lag_bound(cfg.policy_lag_bound)  # one rule, at arrival and at release
        parts.intake = Intake(
            spec,
            uuid.uuid4().hex[:12],  # this learner: rollouts collected for another are foreign
            max_lag,
            {n: tuple(p.shape) for n, p in trainer.model.named_parameters()},
            parts.stats,
            parts.reward_scale,
        )
        parts.batcher = make_batcher(
            mode,
            # Serial mode knows its actors: the first update waits for all of them.
            min_actors=cfg.actors if cfg.serial else cfg.first_update_actors,
            min_actors_wait_s=cfg.min_actors_wait_s,
            barrier_timeout_s=cfg.barrier_timeout_s,
            max_batches_per_update=cfg.max_batches_per_update,
            max_lag=max_lag,
            gather=cfg.async_gather,
            max_in_flight=cfg.max_in_flight,
        )
        server: LearnerServer | None = None
        parts.house = Housekeeping(
            cfg,
            parts.stats,
            parts.reporter,
            log,
            target=parts.target,
            latest=lambda: (
                server.latest if server is not None else (trainer.version, trainer.weights())
            ),
            stop_requested=stop_requested,
            confirm=parts.confirm,
            checkpoint_from_s=parts.trained_s,
        )
        if actors is None:  # serial: nothing to undo
            return parts
        parts.actors = actors
        server = parts.server = LearnerServer(
            cfg,
            trainer,
            parts.intake,
            parts.batcher,
            parts.house,
            log,
            curve=curve,
            authorized=authorized,
            trained_s=parts.trained_s,
            local_actors_alive=(lambda: actors.any_alive(log)) if cfg.actors else None,
            checkpoint=lambda: parts.save_checkpoint(parts.wall_s()),
            reward_scale=parts.reward_scale,
        )
        undo.pop_all()  # built: the actors are the parts' now
        return parts


def _local_actors(cfg: LearnerConfig, run_dir: Path, authorized: dict) -> LocalActors:
    # Local actors use the keys of the authorised actors whose directories sit beside
    # the learner's (the layout `make keys` writes).
    keys_root = Path(cfg.keys).parent if cfg.keys else None
    actor_keys = (
        [keys_root / n for n in sorted(authorized.values()) if (keys_root / n).is_dir()]
        if keys_root
        else []
    )
    if cfg.keys and cfg.actors and not actor_keys:
        raise BuildError(
            f"--actors {cfg.actors} with --keys: no actor key directories beside {cfg.keys}"
        )
    return LocalActors(
        cfg.actors, run_dir, log_level=cfg.log_level, keys_dirs=actor_keys, insecure=cfg.insecure
    )


def finish(parts: Parts, outcome: Outcome, wall_s: float) -> dict:
    """The summary of a finished run (what summary.json holds)."""
    s = parts.stats
    return {
        "solved": outcome.solved,
        "wall_s": round(wall_s, 3),
        "env_steps": s.env_steps,
        "episodes": s.episodes,
        "updates": s.updates,
        "mean_return_100": s.mean_return_100,
        "algo": parts.cfg.algo,
        "env": parts.cfg.env,
        "seed": parts.cfg.seed,
        "actors": parts.cfg.actors
        or (len(parts.server.registry.ids_seen) if parts.server is not None else 0),
        # The learner's own evidence, beside the actors' mean_return_100 above.
        "solved_on": ("learner_played" if outcome.confirmation else "actors_returns")
        if outcome.solved
        else None,
        **(parts.confirm.summary() if parts.confirm is not None else {}),
        **(outcome.confirmation or {}),
    }
