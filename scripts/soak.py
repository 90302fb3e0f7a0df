"""Soak test: a learner and actors under random faults for a given duration.

    python -m scripts.soak --seconds 60            (make soak SOAK_SECONDS=60)

Everything runs on 127.0.0.1. Every few seconds one fault is injected at random:
an actor SIGKILLed and restarted with the same id, an actor frozen (SIGSTOP) for a
while then thawed, an actor stopped with SIGTERM and restarted; once, half way, the
learner is SIGKILLed and restarted with --resume on the same port. At the end the
learner is stopped with SIGTERM and the report says: learner RSS over time, env
steps trained, checkpoints written and loaded, faults injected and survived, and
unhandled exceptions (which must be 0). Exit status 0 only if the run held up.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import algos  # noqa: E402
from scripts.procs import Proc, free_port_pair, start_actor  # noqa: E402
from scripts.runlog import event_time  # noqa: E402

FAULTS = ("kill_restart", "freeze_thaw", "term_restart")


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def learner(run_dir: Path, port: int, algo: str, seed: int, resume: bool) -> Proc:
    args = [
        "-m",
        "learner",
        "--run-dir",
        str(run_dir),
        "--port",
        str(port),
        "--algo",
        algo,
        "--seed",
        str(seed),
        "--actors",
        "0",
        "--target-return",
        "1e9",
        "--checkpoint-every-s",
        "2",
        "--heartbeat-s",
        "0.25",
        "--actor-timeout-s",
        "2",
        "--log-interval-s",
        "1",
    ]
    if resume:
        args += ["--resume"]
    tag = "resumed" if resume else "first"
    return Proc(args, run_dir / "learner.jsonl", run_dir / f"learner-{tag}.stderr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the fault phase")
    parser.add_argument("--actors", type=int, default=3, help="actor processes")
    parser.add_argument("--algo", default="a3c", choices=tuple(algos.ALGORITHMS))
    parser.add_argument(
        "--seed", type=int, default=1, help="seed for the learner and the fault schedule"
    )
    parser.add_argument(
        "--fault-every", type=float, default=4.0, help="mean seconds between faults"
    )
    parser.add_argument("--out", default="", help="run directory (default runs/soak-<time>)")
    args = parser.parse_args(argv)
    if args.seconds < 10 or args.actors < 1:
        parser.error("--seconds must be >= 10 and --actors >= 1")

    rng = random.Random(args.seed)
    out = Path(args.out or f"runs/soak-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    port = free_port_pair()
    endpoint = f"tcp://127.0.0.1:{port}"
    lrn = learner(out, port, args.algo, args.seed, resume=False)
    actors: dict[str, Proc] = {}
    spawned: list[Proc] = []
    injected: dict[str, int] = {f: 0 for f in (*FAULTS, "learner_kill_resume")}
    rss: list[tuple[float, float]] = []
    frozen: dict[str, float] = {}
    terminated: list[int | None] = []  # each SIGTERMed actor's exit code (must be 0)

    def spawn(name: str) -> None:
        p = start_actor(out, endpoint, name, "--learner-timeout", "2")
        actors[name] = p
        spawned.append(p)

    t_start = time.monotonic()
    try:
        lrn.wait_for("learner_listening", 60)
        for i in range(args.actors):
            spawn(f"soak-{i}")
        lrn.wait_for("progress", 90, where=lambda e: e["updates"] > 0)
        t0 = time.monotonic()
        next_fault = t0 + rng.expovariate(1 / args.fault_every)
        learner_restart_at = t0 + args.seconds / 2
        while (now := time.monotonic()) - t0 < args.seconds:
            value = rss_mb(lrn.popen.pid)
            if value is not None:
                rss.append((round(now - t0, 1), round(value, 1)))
            for name, until in list(frozen.items()):
                if now >= until:
                    actors[name].signal(signal.SIGCONT)
                    del frozen[name]
            if learner_restart_at and now >= learner_restart_at:
                lrn.signal(signal.SIGKILL)
                lrn.wait_exit(10)
                lrn = learner(out, port, args.algo, args.seed, resume=True)
                injected["learner_kill_resume"] += 1
                learner_restart_at = 0.0
            elif now >= next_fault:
                candidates = [n for n in actors if n not in frozen]
                if candidates:
                    name, fault = rng.choice(candidates), rng.choice(FAULTS)
                    injected[fault] += 1
                    if fault == "kill_restart":
                        actors[name].signal(signal.SIGKILL)
                        actors[name].wait_exit(10)
                        spawn(name)
                    elif fault == "freeze_thaw":
                        actors[name].signal(signal.SIGSTOP)
                        frozen[name] = now + rng.uniform(1.0, 4.0)
                    else:
                        actors[name].signal(signal.SIGTERM)
                        try:
                            terminated.append(actors[name].wait_exit(10))
                        except subprocess.TimeoutExpired:
                            terminated.append(None)  # stop() in finally kills it
                        spawn(name)
                next_fault = now + rng.expovariate(1 / args.fault_every)
            time.sleep(0.5)
        for name in frozen:
            actors[name].signal(signal.SIGCONT)
        # Recovery: every actor (thawed, restarted) back in and the learner training.
        fault_end = time.time()

        def after_faults(e: dict) -> bool:
            stamp = event_time(e)
            # Past the learner's actor timeout (2 s), a killed actor's old record has
            # expired, so the count is of live actors only.
            return stamp > fault_end + 3 and e["actors"] == args.actors and e["steps_per_s"] > 0

        lrn.wait_for("progress", 90, where=after_faults)
        lrn.signal(signal.SIGTERM)
        learner_code = lrn.wait_exit(60)
        # Actors leave on the learner's Shutdown. One restarted just before it may not
        # have joined yet and so never hears it; by design it would wait for the learner
        # to come back, so it is asked to stop with SIGINT and must exit 0 promptly.
        actor_codes, signalled = {}, []
        deadline = time.monotonic() + 15
        for n, p in actors.items():
            try:
                actor_codes[n] = p.wait_exit(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signalled.append(n)
                p.signal(signal.SIGINT)
                actor_codes[n] = p.wait_exit(5)
    finally:
        for p in [*spawned, lrn]:
            p.stop()

    events = lrn.events()
    count = {
        name: sum(1 for e in events if e.get("event") == name)
        for name in (
            "checkpoint_saved",
            "resumed",
            "actor_lost",
            "actor_joined",
            "actor_restarted",
            "handler_error",
            "learner_crashed",
            "checkpoint_unreadable",
        )
    }
    summary = json.loads((out / "summary.json").read_text())
    tracebacks = [
        p.name for p in out.glob("*.stderr") if "Traceback" in p.read_text(errors="replace")
    ]
    unhandled = count["handler_error"] + count["learner_crashed"] + len(tracebacks)
    report = {
        "seconds": args.seconds,
        "wall_s_total": round(time.monotonic() - t_start, 1),
        "algo": args.algo,
        "actors": args.actors,
        "faults_injected": injected,
        "learner_exit_code": learner_code,
        "actor_exit_codes": actor_codes,
        "sigterm_exit_codes": terminated,
        "actors_stopped_by_sigint": signalled,
        "env_steps": summary["env_steps"],
        "updates": summary["updates"],
        "checkpoints_written": count["checkpoint_saved"],
        "checkpoints_loaded": count["resumed"],
        "actor_lost_events": count["actor_lost"],
        "actor_joins": count["actor_joined"],
        "unhandled_exceptions": unhandled,
        "stderr_with_tracebacks": tracebacks,
        "learner_rss_mb": {
            "min": min(v for _, v in rss),
            "max": max(v for _, v in rss),
            "samples": rss,
        },
    }
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    ok = (
        unhandled == 0
        and learner_code == 0
        and all(c == 0 for c in actor_codes.values())
        and all(c == 0 for c in terminated)
        and count["resumed"] == 1
        and summary["updates"] > 0
    )
    print(
        f"soak {'PASSED' if ok else 'FAILED'}: {args.seconds:.0f}s, {args.actors} {args.algo} actors, run dir {out}"
    )
    print(f"  faults injected (all survived: {ok}): {injected}")
    print(
        f"  env steps {summary['env_steps']}, updates {summary['updates']}, checkpoints written "
        f"{count['checkpoint_saved']}, loaded {count['resumed']}, actor_lost {count['actor_lost']}, "
        f"joins {count['actor_joined']}"
    )
    print(
        f"  learner RSS MB min {report['learner_rss_mb']['min']} max {report['learner_rss_mb']['max']}; "
        f"over time (s, MB): {rss[:: max(1, len(rss) // 12)]}"
    )
    print(
        f"  unhandled exceptions: {unhandled}; learner exit {learner_code}; actor exits {actor_codes};"
        f" exits after SIGTERM mid-run {terminated or 'none'};"
        f" stopped by SIGINT (not yet joined at shutdown): {signalled or 'none'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
