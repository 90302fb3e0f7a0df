"""What a whole run costs beyond its training: ``python -m learner`` with local actors,
timed from outside, against the training seconds it reports itself (``wall_s``: from
the first actor's join to the outcome), and where the rest went, read from the logs'
timestamps:

    to_listening   process start -> the learner bound (imports, network, optimizer)
    to_first_join  process start -> the first actor joined (its own start-up overlaps)
    after_outcome  the outcome (solved, ...) -> the process gone (shutdown, final
                   checkpoint, the actors' and the interpreter's exit)

``--source DIR`` runs another checkout's code (its PYTHONPATH) with this virtual
environment, for a before/after in one go; with two, the runs alternate A B A B so that
the machine's drift falls on both alike.

    python -m scripts.bench_startup --runs 6
    python -m scripts.bench_startup --runs 6 --source . --source /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from scripts.procs import ROOT, run_process
from scripts.runlog import event_time, machine_info, read_events

PHASES = (
    "total_s",
    "training_s",
    "overhead_s",
    "to_listening_s",
    "to_first_join_s",
    "after_outcome_s",
)


def one_run(source: Path, learner_args: list[str], timeout_s: float) -> dict:
    """One learner run from ``source``; its phases in seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "learner", *learner_args, "--run-dir", str(run_dir)]
        env = {**os.environ, "PYTHONPATH": str(source.resolve())}
        start_wall = time.time()
        code, total, _ = run_process(cmd, Path(tmp) / "stderr.log", timeout_s, cwd=source, env=env)
        if code != 0:
            why = f"took over {timeout_s}s" if code is None else f"exited {code}"
            raise SystemExit(f"a run from {source} {why}: {' '.join(cmd)}")
        events = read_events(run_dir / "learner.jsonl")
        summary = json.loads((run_dir / "summary.json").read_text())

        def first(name: str) -> float:
            found = [e for e in events if e["event"] == name]
            if not found:
                raise SystemExit(f"no {name} event in {run_dir}/learner.jsonl")
            return event_time(found[0]) - start_wall

        # The outcome is when the training seconds end: the first join plus wall_s (the
        # learner's own clock). Not run_finished, which is logged after the shutdown,
        # the final checkpoint and the local actors' exit that this phase is meant to hold.
        joined = first("actor_joined")
        outcome = joined + summary["wall_s"]
        return {
            "total_s": total,
            "training_s": summary["wall_s"],
            "overhead_s": total - summary["wall_s"],
            "to_listening_s": first("learner_listening"),
            "to_first_join_s": joined,
            "after_outcome_s": total - outcome,
            "solved": summary["solved"],
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per source")
    ap.add_argument(
        "--source",
        action="append",
        type=Path,
        help="a checkout whose code to run (repeat for a side-by-side); default: this one",
    )
    ap.add_argument(
        "--learner-args",
        default="--env CartPole-v1 --algo a3c-grad --seed 1 --actors 2 --console plain",
        help="the run timed (make run's, by default)",
    )
    ap.add_argument("--timeout-s", type=float, default=300.0, help="per run")
    ap.add_argument("--out", type=Path, help="write the runs and medians here as JSON")
    args = ap.parse_args(argv)
    sources = args.source or [ROOT]
    learner_args = args.learner_args.split()
    runs: dict[str, list[dict]] = {str(s): [] for s in sources}
    for i in range(args.runs):
        for s in sources:
            r = one_run(s, learner_args, args.timeout_s)
            runs[str(s)].append(r)
            print(
                f"run {i + 1} {s}: " + ", ".join(f"{k} {r[k]:.2f}" for k in PHASES),
                file=sys.stderr,
            )
    medians = {
        s: {k: round(statistics.median(r[k] for r in rs), 2) for k in PHASES}
        for s, rs in runs.items()
    }
    print(f"python -m learner {args.learner_args}: median of {args.runs} runs, seconds")
    print("| source | " + " | ".join(PHASES) + " |")
    print("|---|" + "---:|" * len(PHASES))
    for s, m in medians.items():
        print(f"| {s} | " + " | ".join(f"{m[k]:.2f}" for k in PHASES) + " |")
    if args.out:
        args.out.write_text(
            json.dumps({"machine": machine_info(), "runs": runs, "medians": medians}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
