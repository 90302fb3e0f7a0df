"""Wall clock and env steps to solve CartPole-v1: our trainer against Stable-Baselines3.

    python -m scripts.bench_solve [--seeds 1,2,3,4,5] [--max-seconds 120]
                                  [--ours-args "--algo a2c --actors 1 ..."]

Runs, one at a time and interleaved by seed (so a change in machine load hits every
system alike): ours through ``python -m learner`` and SB3 A2C and PPO with rl-zoo
settings through ``scripts/sb3_peer.py``, each in its own process. Then writes
``runs/bench-solve-<time>/report.md`` and ``results.json`` and prints the report.

What is timed: ours, the learner's ``wall_s`` (first actor joined -> mean return of
the last 100 episodes >= 475); SB3, ``model.learn()`` start -> the same criterion.
Neither counts interpreter start-up or imports; ``proc_s`` in results.json is the
whole process for reference. A run that does not solve within ``--max-seconds`` counts
as infinitely slow in the medians (so the median is honest about failures).

No project imports here (the learner runs in a subprocess), so this file also runs as
``python scripts/bench_solve.py``. Tables and report files come from scripts/report.py,
running a process from scripts/procs.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.procs import run_process  # noqa: E402
from scripts.report import machine_lines, markdown_table, write_report  # noqa: E402
from scripts.runlog import machine_info  # noqa: E402

OURS = "ours"
PEERS = ("sb3-a2c", "sb3-ppo")
# The learner's defaults are its fastest configuration (2 actors x 16 envs, T=32,
# lr 4e-3, GAE lambda 0.95); say them explicitly so the report shows what ran.
DEFAULT_OURS_ARGS = "--algo a2c --actors 2 --envs 16 --rollout-len 32 --lr 4e-3 --gae-lambda 0.95"
# Start-up allowance on top of --max-seconds before a run is killed.
GRACE_S = 90.0


# --- pure parts: medians, summary, table ---------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    """Median with None (not solved) counted as +inf; None for no values or an
    infinite median."""
    xs = sorted(math.inf if v is None else float(v) for v in values)
    if not xs:
        return None
    mid = len(xs) // 2
    m = xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
    return None if math.isinf(m) else m


def summarize(runs: Sequence[dict]) -> dict[str, dict]:
    """Per system (in first-seen order): seeds, wall_s and env_steps per seed (None
    when not solved), their medians, solved count."""
    out: dict[str, dict] = {}
    for r in runs:
        s = out.setdefault(r["system"], {"seeds": [], "wall_s": [], "env_steps": [], "solved": 0})
        s["seeds"].append(r["seed"])
        s["wall_s"].append(r["wall_s"] if r["solved"] else None)
        s["env_steps"].append(r["env_steps"] if r["solved"] else None)
        s["solved"] += bool(r["solved"])
    for s in out.values():
        s["n"] = len(s["seeds"])
        s["median_wall_s"] = median(s["wall_s"])
        s["median_env_steps"] = median(s["env_steps"])
    return out


def speedup(summary: dict[str, dict], ours: str = OURS) -> dict[str, Any] | None:
    """Best peer's median wall clock / ours (> 1: ours is faster). None when ours or
    every peer has no finite median."""
    mine = summary.get(ours, {}).get("median_wall_s")
    peers = {k: v["median_wall_s"] for k, v in summary.items() if k != ours}
    peers = {k: v for k, v in peers.items() if v is not None}
    if mine is None or not peers:
        return None
    best = min(peers, key=peers.__getitem__)
    return {
        "best_peer": best,
        "peer_median_s": peers[best],
        "ours_median_s": mine,
        "ratio": peers[best] / mine,
    }


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "—"
    return f"{v:.{digits}f}"


def solve_table(summary: dict[str, dict]) -> str:
    rows = []
    for name, s in summary.items():
        rows.append(
            [
                name,
                ", ".join(_fmt(v) for v in s["wall_s"]),
                _fmt(s["median_wall_s"], 2),
                ", ".join(_fmt(v, 0) for v in s["env_steps"]),
                _fmt(s["median_env_steps"], 0),
                f"{s['solved']}/{s['n']}",
            ]
        )
    header = [
        "system",
        "wall s per seed",
        "median wall s",
        "env steps per seed",
        "median env steps",
        "solved",
    ]
    return markdown_table(header, rows)


def speedup_line(sp: dict[str, Any] | None) -> str:
    if sp is None:
        return "Speed-up: not defined (ours or every peer has no finite median)."
    return (
        f"Speed-up in median wall clock to solve: {sp['ratio']:.2f}x "
        f"({sp['best_peer']} {sp['peer_median_s']:.2f} s / ours {sp['ours_median_s']:.2f} s)."
    )


# --- running ------------------------------------------------------------------------


def run_ours(seed: int, ours_args: str, max_seconds: float, out_dir: Path) -> dict:
    run_dir = out_dir / f"ours-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    # Our flags come last: argparse keeps the last value, so --ours-args cannot move the
    # run dir, the seed or the stopping rule.
    cmd = [sys.executable, "-m", "learner", *shlex.split(ours_args)]
    cmd += ["--seed", str(seed), "--port", "0", "--run-dir", str(run_dir)]
    cmd += ["--milestones", "475", "--max-seconds", str(max_seconds), "--checkpoint-every-s", "0"]
    code, proc_s, _ = run_process(cmd, run_dir / "console.log", max_seconds + GRACE_S)
    result = {
        "system": OURS,
        "seed": seed,
        "solved": False,
        "wall_s": None,
        "env_steps": None,
        "proc_s": round(proc_s, 2),
        "run_dir": str(run_dir),
    }
    summary_path = run_dir / "summary.json"
    if code == 0 and summary_path.is_file():
        s = json.loads(summary_path.read_text())
        result.update(solved=bool(s["solved"]), wall_s=s["wall_s"], env_steps=s["env_steps"])
    else:
        result["error"] = f"exit {code}; see {run_dir / 'console.log'}"
    return result


def run_peer(system: str, seed: int, max_seconds: float, out_dir: Path) -> dict:
    algo = system.removeprefix("sb3-")
    cmd = [sys.executable, str(ROOT / "scripts" / "sb3_peer.py"), "--algo", algo]
    cmd += ["--seed", str(seed), "--max-seconds", str(max_seconds)]
    log_path = out_dir / f"{system}-seed{seed}.log"
    code, proc_s, out = run_process(cmd, log_path, max_seconds + GRACE_S)
    result = {
        "system": system,
        "seed": seed,
        "solved": False,
        "wall_s": None,
        "env_steps": None,
        "proc_s": round(proc_s, 2),
    }
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if code == 0 and lines:
        r = json.loads(lines[-1])
        result.update(solved=bool(r["solved"]), wall_s=r["wall_s"], env_steps=r["env_steps"])
    else:
        result["error"] = f"exit {code}; see {log_path}"
    return result


def plan(systems: Sequence[str], sb3_installed: bool) -> tuple[list[str], list[str]]:
    """The systems that can run here, and notes for the report about the others."""
    if sb3_installed or not any(s in PEERS for s in systems):
        return list(systems), []
    note = (
        "Stable-Baselines3 is not installed, so the SB3 peers were not run. "
        "Install them with: pip install -e '.[bench]'"
    )
    return [s for s in systems if s not in PEERS], [note]


def _describe(r: dict) -> str:
    if r.get("error"):
        return f"{r['system']} seed {r['seed']}: FAILED ({r['error']})"
    verdict = "solved" if r["solved"] else "NOT solved"
    return (
        f"{r['system']} seed {r['seed']}: {verdict} in {r['wall_s']} s, {r['env_steps']} env steps"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scripts.bench_solve",
        description="Wall clock and env steps to solve CartPole-v1: ours vs SB3 (rl-zoo).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds")
    p.add_argument("--max-seconds", type=float, default=120.0, help="per run; unsolved after")
    p.add_argument("--ours-args", default=DEFAULT_OURS_ARGS, help="learner flags for ours")
    p.add_argument("--systems", default=",".join((OURS, *PEERS)), help="which systems to run")
    p.add_argument("--out", default=str(ROOT / "runs"), help="parent of the report directory")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - {OURS, *PEERS}
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; choose from {OURS}, {', '.join(PEERS)}")
    systems, notes = plan(systems, importlib.util.find_spec("stable_baselines3") is not None)
    for note in notes:
        print(note, file=sys.stderr)
    out_dir = Path(args.out) / f"bench-solve-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    runs = []
    for seed in seeds:
        for system in systems:
            if system == OURS:
                r = run_ours(seed, args.ours_args, args.max_seconds, out_dir)
            else:
                r = run_peer(system, seed, args.max_seconds, out_dir)
            print(_describe(r), file=sys.stderr, flush=True)
            runs.append(r)
    summary = summarize(runs)
    sp = speedup(summary)
    body = "\n\n".join(
        [
            f"CartPole-v1, solved = mean return of the last 100 episodes >= 475; "
            f"seeds {args.seeds}; at most {args.max_seconds:g} s per run; runs one at a time.",
            solve_table(summary),
            speedup_line(sp),
            f"Ours: `python -m learner {args.ours_args}` (wall clock from the first actor's "
            "join). SB3: rl-zoo hyperparameters, 1 torch thread (wall clock from "
            "`model.learn()`). — means not solved.",
            *notes,
            "Machine:\n" + machine_lines(info),
        ]
    )
    results = {
        "machine": info,
        "seeds": seeds,
        "max_seconds": args.max_seconds,
        "ours_args": args.ours_args,
        "runs": runs,
        "summary": summary,
        "speedup": sp,
        "notes": notes,
    }
    write_report(out_dir, "Time to solve CartPole-v1", body, results)
    print(body)
    print(f"\nreport: {out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
