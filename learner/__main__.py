"""``python -m learner``: parse, set up logs and the console (learner/console.py),
build (learner/build.py), run, write the summary. Nothing else happens here."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from core import cluster, logs, procs
from learner import console
from learner.build import Parts, build, finish
from learner.flags import parse
from learner.outcome import Outcome
from learner.serial import run_serial
from learner.spec import BuildError
from protocol import address, sockets


def main(argv: Sequence[str] | None = None) -> int:
    cfg, parser = parse(argv)
    if not sockets.is_loopback(cfg.host) and not cfg.keys and not cfg.insecure:
        parser.error(
            f"--host {cfg.host} is not loopback: pass --keys DIR (encrypted, authenticated) "
            "or --insecure (anyone who can reach the port can send data and read weights)"
        )
    run_dir = Path(cfg.run_dir or f"runs/{cfg.algo}-{cfg.env}-{time.strftime('%Y%m%d-%H%M%S')}")
    mode = console.choose_mode(cfg.console)
    terminal = console.terminal() if mode == "live" else None
    # The first things written are checked here, so that a run directory or address
    # file nobody can write fails at once with its name (a cluster job's first line),
    # not with a traceback later.
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.address_file:
            Path(cfg.address_file).parent.mkdir(parents=True, exist_ok=True)
        # The console shows progress its own way (a live view or a short line): the
        # log's console lines leave it out; learner.jsonl keeps it.
        log = logs.configure(
            "learner",
            run_dir / "learner.jsonl",
            level=cfg.log_level,
            console=mode,
            terminal=terminal,
            hide=("progress",),
            **cluster.ids(),
        )
    except OSError as exc:
        parser.error(
            f"--run-dir {run_dir} (or --address-file): cannot write there: "
            f"{type(exc).__name__}: {exc}"
        )
    torch.set_num_threads(cfg.torch_threads)
    stop = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        parts = build(cfg, run_dir, log, lambda: stop["requested"])
    except BuildError as exc:
        log.error("learner_config_refused", error=str(exc))
        parser.error(str(exc))
    resolved = cfg.resolved()
    (run_dir / "config.json").write_text(
        json.dumps({"config": resolved, "spec": parts.spec.to_dict()}, indent=2) + "\n"
    )
    log.info(
        "learner_config",
        **{**resolved, "run_dir": str(run_dir)},
        device_used=str(parts.device),
        solve_at=parts.target,
        encoder_used=parts.spec.model["encoder"],
    )
    if not sockets.is_loopback(cfg.host) and not cfg.keys:
        log.warning(
            "insecure_bind",
            host=cfg.host,
            detail="no CurveZMQ keys: traffic is neither encrypted nor authenticated",
        )
    view = console.Console(
        env=cfg.env,
        algo=cfg.algo,
        target=parts.target,
        max_env_steps=cfg.max_env_steps,
        max_seconds=cfg.max_seconds,
        mode=mode,
        terminal=terminal,
    )
    tap = console.ProgressTap(view)
    logging.getLogger().addHandler(tap)
    try:
        outcome, wall_s = run(parts, log, lambda: stop["requested"])
        summary = finish(parts, outcome, wall_s)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("run_finished", reason=outcome.reason, **summary, run_dir=str(run_dir))
    finally:
        logging.getLogger().removeHandler(tap)
        view.close()
    mean = summary["mean_return_100"]
    print(
        f"{'SOLVED' if outcome.solved else 'NOT SOLVED'} ({outcome.reason}) {cfg.algo} {cfg.env} "
        f"seed={cfg.seed}: wall {summary['wall_s']:.2f}s, {summary['env_steps']} env steps, "
        f"{summary['episodes']} episodes, {summary['updates']} updates, "
        f"mean return (100) {mean if mean is None else round(mean, 1)}{_confirmed(summary)}; "
        f"run dir {run_dir}",
        file=sys.stderr,
    )
    return cfg.signal_exit_code if outcome.reason == "signal" else 0


def _confirmed(summary: dict) -> str:
    """The learner's own figure beside the actors' on the closing line."""
    if not summary.get("confirm_attempts"):
        return ""
    mean = summary.get("confirm_mean_return")
    verdict = "confirmed" if summary.get("confirm_passed") else "not confirmed"
    return (
        f", {verdict} by the learner's own {summary.get('confirm_episodes')} episodes "
        f"(mean {mean if mean is None else round(mean, 1)})"
    )


def run(parts: Parts, log, stop_requested) -> tuple[Outcome, float]:
    """Run until an outcome; always shut down and write the final checkpoint. Returns
    the outcome and the training seconds."""
    outcome = Outcome(False, "crashed")
    cfg = parts.cfg
    try:
        if parts.server is None:
            outcome = run_serial(parts, stop_requested)
        else:
            server = parts.server
            host = cfg.host
            advertised = address.advertised_host(host, cfg.advertise_host)
            local = "127.0.0.1" if sockets.is_loopback(host) or host in ("0.0.0.0", "*") else host
            assert parts.actors is not None
            parts.actors.announce(_where(server, local))
            if cfg.address_file:
                where = _where(server, advertised)
                address.write(Path(cfg.address_file), where)
                log.info("address_written", path=cfg.address_file, **where.to_dict())
            outcome = server.run()
    except Exception:
        log.exception("learner_crashed")
        raise
    finally:
        if parts.server is not None:
            # First of all: actors that look now must not find a learner that is leaving.
            if cfg.address_file:
                address.remove(Path(cfg.address_file), parts.server.learner_id)
            if parts.actors is not None:
                parts.actors.withdraw(parts.server.learner_id)
        wall_s = parts.wall_s()
        parts.close()  # the threads that play the policy; TensorBoard flushed
        if parts.server is not None:
            # Actors leave only when the run is over. After a crash, or a stop that a
            # supervisor will follow with a new learner (--signal-exit-code), they keep
            # re-joining until the next learner resumes.
            interrupted = outcome.reason == "signal" and cfg.signal_exit_code != 0
            over = outcome.reason != "crashed" and not interrupted
            parts.server.shutdown(outcome.reason, tell_actors=over)
        if parts.actors is not None:
            parts.actors.stop()
        try:
            parts.save_checkpoint(wall_s)
        except Exception as exc:  # noqa: BLE001 - a failed final checkpoint must not hide the summary
            log.error("checkpoint_failed", error=str(exc))
    return outcome, wall_s


def _where(server, host: str) -> address.LearnerAddress:
    return address.LearnerAddress(
        router=sockets.tcp(host, server.port),
        pub=sockets.tcp(host, server.pub_port),
        learner_id=server.learner_id,
        pid=os.getpid(),
        host=socket.gethostname(),
    )


if __name__ == "__main__":
    code = main()
    procs.spare_teardown()
    sys.exit(code)
