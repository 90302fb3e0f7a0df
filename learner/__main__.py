"""``python -m learner``: parse, set up logs, build the trainer and the server, run,
write the summary. The shell around learner/server.py and learner/trainer.py."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core import logs
from core.cli import build_parser, parse_config
from core.envs import EnvSpecError, describe_spaces, reward_threshold
from learner.auth import load_learner_keys
from learner.checkpoint import CheckpointConfig, Checkpointer
from learner.config import LearnerConfig
from learner.local import LocalActors
from learner.server import LearnerServer, Outcome
from learner.stats import RunStats
from learner.trainer import Trainer, TrainerConfig
from protocol import sockets
from protocol.spec import RunSpec


def build_spec(cfg: LearnerConfig) -> RunSpec:
    return RunSpec(
        env_id=cfg.env,
        algo=cfg.algo,
        num_envs=cfg.envs,
        rollout_len=cfg.rollout_len,
        hidden=cfg.hidden,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        value_coef=cfg.value_coef,
        entropy_coef=cfg.entropy_coef,
        max_grad_norm=cfg.max_grad_norm,
        max_policy_lag=cfg.max_policy_lag,
        max_in_flight=cfg.max_in_flight,
        heartbeat_s=cfg.heartbeat_s,
        **describe_spaces(cfg.env),
    )


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available here")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        LearnerConfig,
        prog="python -m learner",
        description="The learner: trains an actor-critic network on experience (or gradients) "
        "streamed by actors over ZeroMQ, and broadcasts the weights.",
    )
    cfg = parse_config(LearnerConfig, parser, argv)
    if not sockets.is_loopback(cfg.host) and not cfg.keys and not cfg.insecure:
        parser.error(
            f"--host {cfg.host} is not loopback: pass --keys DIR (encrypted, authenticated) "
            "or --insecure (anyone who can reach the port can send data and read weights)"
        )
    try:
        spec = build_spec(cfg)
        device = pick_device(cfg.device)
    except (EnvSpecError, ValueError) as exc:
        parser.error(str(exc))
    run_dir = Path(cfg.run_dir or f"runs/{cfg.algo}-{cfg.env}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    log = logs.configure("learner", run_dir / "learner.jsonl", level=cfg.log_level)
    torch.set_num_threads(cfg.torch_threads)
    target = cfg.target_return if cfg.target_return is not None else reward_threshold(cfg.env)
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    settings["lr"] = cfg.learning_rate  # the per-algorithm default made explicit
    log.info(
        "learner_config",
        **{**settings, "run_dir": str(run_dir)},
        device_used=str(device),
        solve_at=target,
    )
    if not sockets.is_loopback(cfg.host) and not cfg.keys:
        log.warning(
            "insecure_bind",
            host=cfg.host,
            detail="no CurveZMQ keys: traffic is neither encrypted nor authenticated",
        )

    curve, authorized = None, {}
    if cfg.keys:
        try:
            curve, authorized = load_learner_keys(Path(cfg.keys))
        except (OSError, ValueError) as exc:
            parser.error(f"--keys {cfg.keys}: {exc}")
        log.info("curve_enabled", keys=cfg.keys, authorized=sorted(authorized.values()))
    trainer = Trainer(
        spec,
        TrainerConfig(
            lr=cfg.learning_rate,
            optimizer=cfg.optimizer,
            max_grad_norm=cfg.max_grad_norm,
            normalize_advantages=cfg.normalize_advantages,
            is_clip=cfg.is_clip,
            seed=cfg.seed,
        ),
        device,
    )
    stats = RunStats()
    rng = np.random.default_rng(cfg.seed)
    ckpt = Checkpointer(CheckpointConfig(run_dir / "checkpoints", keep=cfg.keep_checkpoints))
    trained_s = 0.0
    if cfg.resume:
        found = ckpt.load_latest(log)
        if found is None:
            log.warning("resume_found_nothing", directory=str(ckpt.cfg.directory))
        else:
            path, state = found
            trainer.load_state_dict(state["trainer"])
            stats.restore(state["counters"])
            torch.set_rng_state(state["torch_rng"])
            rng.bit_generator.state = state["numpy_rng"]
            trained_s = float(state["counters"].get("wall_s", 0.0))
            log.info(
                "resumed",
                path=str(path),
                version=trainer.version,
                env_steps=stats.env_steps,
                updates=stats.updates,
                wall_s=trained_s,
            )

    stop = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    server: LearnerServer | None = None

    def save_checkpoint() -> None:
        assert server is not None
        state = {
            "trainer": trainer.state_dict(),
            "counters": {**stats.counters(), "wall_s": server.wall_s},
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": rng.bit_generator.state,
            "config": json.loads(json.dumps(vars(cfg))),
        }
        path = ckpt.save(state, step=stats.env_steps)
        log.info(
            "checkpoint_saved", path=str(path), version=trainer.version, env_steps=stats.env_steps
        )

    server = LearnerServer(
        cfg,
        spec,
        trainer,
        stats,
        log,
        target,
        lambda: stop["requested"],
        checkpoint=save_checkpoint,
        curve=curve,
        authorized=authorized,
        trained_s=trained_s,
    )
    # Local actors use the keys of the authorised actors whose directories sit beside
    # the learner's (the layout `make keys` writes).
    keys_root = Path(cfg.keys).parent if cfg.keys else None
    actor_keys = (
        [keys_root / n for n in sorted(authorized.values()) if (keys_root / n).is_dir()]
        if keys_root
        else []
    )
    if cfg.keys and cfg.actors and not actor_keys:
        parser.error(
            f"--actors {cfg.actors} with --keys: no actor key directories beside {cfg.keys}"
        )
    local_host = (
        "127.0.0.1" if sockets.is_loopback(cfg.host) or cfg.host in ("0.0.0.0", "*") else cfg.host
    )
    actors = LocalActors(
        cfg.actors,
        sockets.tcp(local_host, server.port),
        run_dir,
        log_level=cfg.log_level,
        keys_dirs=actor_keys,
    )
    if cfg.actors:
        server.local_actors_alive = lambda: actors.any_alive(log)
    outcome = Outcome(False, "crashed")
    try:
        actors.start()
        outcome = server.run()
    except Exception:
        log.exception("learner_crashed")
        raise
    finally:
        wall_s = server.wall_s
        server.shutdown(outcome.reason)
        actors.stop()
        save_checkpoint_final(save_checkpoint, log)
    summary = {
        "solved": outcome.solved,
        "wall_s": round(wall_s, 3),
        "env_steps": stats.env_steps,
        "episodes": stats.episodes,
        "updates": stats.updates,
        "mean_return_100": stats.mean_return_100,
        "algo": cfg.algo,
        "env": cfg.env,
        "seed": cfg.seed,
        "actors": cfg.actors or len(server.registry.ids_seen),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("run_finished", reason=outcome.reason, **summary, run_dir=str(run_dir))
    print(
        f"{'SOLVED' if outcome.solved else 'NOT SOLVED'} ({outcome.reason}) {cfg.algo} {cfg.env} seed={cfg.seed}: "
        f"wall {wall_s:.2f}s, {stats.env_steps} env steps, {stats.episodes} episodes, {stats.updates} updates, "
        f"mean return (100) {stats.mean_return_100 if stats.mean_return_100 is None else round(stats.mean_return_100, 1)}; "
        f"run dir {run_dir}",
        file=sys.stderr,
    )
    return 0


def save_checkpoint_final(save, log) -> None:
    try:
        save()
    except Exception as exc:  # noqa: BLE001 - a failed final checkpoint must not hide the summary
        log.error("checkpoint_failed", error=str(exc))


if __name__ == "__main__":
    sys.exit(main())
