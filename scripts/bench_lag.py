"""How stale the data is when many actors feed one learner (``make bench-lag``).

    python -m scripts.bench_lag [--env CartPole-v1] [--algos a3c,appo,impala]
                                [--actors 14] [--seconds 60] [--extra "..."] [--out DIR]

Each algorithm runs once with ``--actors`` local actors for ``--seconds`` of training
(no target: it does not stop when solved; no confirmation), and the report says, from
the learner's own ``progress`` events: the policy lag the loss saw (``train_lag_*``:
versions between the policy that acted and the learner's when the update started;
"-" where the learner does not log it), the lag at arrival (``policy_lag_*``: what the
``--max-policy-lag`` filter judges), the share of env steps dropped as stale, env steps
per second, updates, rollouts per update, and the final mean return. Runs one at a time;
on a 2-core machine 14 actors share the cores with the learner, which is the point: the
learner is then far faster than any one actor, the regime in which lag grew with the
actor count. Writes report.md and results.json into --out.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from scripts import runlog
from scripts.procs import ROOT, fresh_run_dir, run_process
from scripts.report import machine_lines, markdown_table, write_report


def one_run(
    runs: Path,
    env: str,
    algo: str,
    actors: int,
    seconds: float,
    extra: str,
    threshold: float | None = None,
) -> dict:
    run_dir = fresh_run_dir(runs / f"{algo}-{env.replace('/', '_')}-a{actors}")
    cmd = [sys.executable, "-m", "learner", "--env", env, "--algo", algo]
    cmd += ["--actors", str(actors), "--port", "0", "--run-dir", str(run_dir)]
    cmd += ["--max-seconds", f"{seconds:g}", "--target-return", "1e9"]
    cmd += ["--confirm-episodes", "0", "--checkpoint-every-s", "0", "--log-interval-s", "1"]
    if threshold is not None:  # when the actors' 100-episode mean first reached it
        cmd += ["--milestones", f"{threshold:g}"]
    cmd += shlex.split(extra)
    code, wall, _ = run_process(cmd, run_dir.with_suffix(".stderr"), seconds + 120)
    events = runlog.read_events(run_dir / "learner.jsonl")
    progress = runlog.named(events, "progress")
    last = progress[-1] if progress else {}

    def weighted(key: str, weight: str) -> float | None:
        pairs = [(e[key], e.get(weight) or 0) for e in progress if e.get(key) is not None]
        total = sum(w for _, w in pairs)
        if not pairs:
            return None
        if not total:  # no weights logged (an older learner): the plain mean
            return round(sum(x for x, _ in pairs) / len(pairs), 2)
        return round(sum(x * w for x, w in pairs) / total, 2)

    def highest(key: str) -> int | None:
        values = [e[key] for e in progress if e.get(key) is not None]
        return max(values) if values else None

    reached = runlog.milestones(events).get(threshold) if threshold is not None else None
    env_steps = last.get("env_steps", 0)
    wall_s = last.get("wall_s") or 0.0
    updates = last.get("updates", 0)
    batches = sum(e.get("trained_batches") or 0 for e in progress)
    return {
        "algo": algo,
        "env": env,
        "actors": actors,
        "exit": code,
        "train_lag_mean": weighted("train_lag_mean", "trained_batches"),
        "train_lag_max": highest("train_lag_max"),
        "arrival_lag_mean": weighted("policy_lag_mean", "trained_batches"),
        "arrival_lag_max": highest("policy_lag_max"),
        "dropped_share": round(last.get("dropped_steps", 0) / env_steps, 4) if env_steps else None,
        "env_steps": env_steps,
        "env_steps_per_s": round(env_steps / wall_s) if wall_s else None,
        "updates": updates,
        "rollouts_per_update": round(batches / updates, 2) if batches and updates else None,
        "final_return": last.get("mean_return_100"),
        "reached_at": reached["env_steps"] if reached else None,
        "process_wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--algos", default="a3c,appo,impala")
    p.add_argument("--actors", type=int, default=14)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--extra", default="", help="extra learner flags for every run")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="report the env steps at which the 100-episode mean first reached this (reached_at)",
    )
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-lag"))
    args = p.parse_args(argv)
    out = Path(args.out)
    results = [
        one_run(out / "runs", args.env, a, args.actors, args.seconds, args.extra, args.threshold)
        for a in args.algos.split(",")
    ]
    columns = [k for k in results[0] if k not in ("env", "actors", "exit")]
    body = "\n".join(
        [
            f"- command: `python -m scripts.bench_lag {' '.join(argv or sys.argv[1:])}`",
            f"- each run: {args.seconds:g} s of training, no target, `--confirm-episodes 0`"
            + (f", extra flags `{args.extra}`" if args.extra else ""),
            "",
            markdown_table(
                columns, [[r[c] if r[c] is not None else "-" for c in columns] for r in results]
            ),
            "",
            machine_lines(runlog.machine_info()),
        ]
    )
    title = f"Policy lag with {args.actors} actors on {args.env}"
    write_report(out, title, body, {"runs": results})
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
