"""What a comparison's runs add up to: each run as its logs left it (``load_run``), and
an algorithm's row over its runs (``algo_row``): how many reached each report return,
after how many env steps, episodes and seconds, and how the gradient norm, the return
variance and the policy lag behaved. No running (compare.py) and no writing
(compare_report.py); reading a run's logs is runlog.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts import runlog

# The returns whose first crossing the report times, per env: for CartPole (and its
# memory variant), v0's and v1's "solved"; for the others, about halfway and the threshold (Acrobot -100,
# LunarLander 200, Pendulum -200, its preset's target). compare.py passes the
# env's to everything that reports.
ENV_THRESHOLDS = {
    "CartPole-v1": (195.0, 475.0),
    "Acrobot-v1": (-200.0, -100.0),
    "LunarLander-v3": (100.0, 200.0),
    "Pendulum-v1": (-500.0, -200.0),
    # The memory task (core/envs/memory.py): a feed-forward policy peaks near 50.
    "zmq_a3c/CartPoleNoVel-v1": (195.0, 475.0),
}
CARTPOLE = ENV_THRESHOLDS["CartPole-v1"]
CAPPED = ("max_seconds", "max_env_steps", "timeout")
FAILED = ("timeout", "crashed", "signal")


@dataclass(frozen=True)
class RunResult:
    algo: str
    seed: int
    run_dir: str
    outcome: str  # the learner's reason (solved, max_seconds, ...), or timeout / crashed
    returncode: int | None
    elapsed_s: float  # process start to exit, start-up included
    summary: dict
    milestones: dict[float, dict]
    progress: dict[str, list]
    config: dict | None


def load_run(
    run_dir: Path,
    algo: str,
    seed: int,
    *,
    returncode: int | None,
    timed_out: bool = False,
    elapsed_s: float = 0.0,
) -> RunResult:
    """What a finished (or killed, or crashed) run left in ``run_dir``."""
    events = runlog.read_events(run_dir / "learner.jsonl")
    done = runlog.finished(events)
    summary = runlog.read_summary(run_dir) or runlog.summary_from_events(events)
    if timed_out:
        outcome = "timeout"
    elif returncode != 0 or done is None:
        outcome = "crashed"
    else:
        outcome = str(done.get("reason", "unknown"))
    if outcome in FAILED:
        summary = {**summary, "solved": False}
    return RunResult(
        algo=algo,
        seed=seed,
        run_dir=str(run_dir),
        outcome=outcome,
        returncode=returncode,
        elapsed_s=round(elapsed_s, 2),
        summary=summary,
        milestones=runlog.milestones(events),
        progress=runlog.progress_series(events),
        config=runlog.learner_config(events),
    )


def describe(result: RunResult) -> str:
    """The one line printed when a run finishes."""
    s = result.summary
    head = f"{result.algo} seed={result.seed}: {result.outcome.upper() if result.outcome in FAILED else result.outcome}"
    if result.outcome == "crashed":
        head += f" (exit {result.returncode}, see {result.run_dir}/console.log)"
    if result.outcome == "timeout":
        head += f" (killed after {result.elapsed_s:.0f} s)"
    body = f"wall {num(s.get('wall_s'), 1)} s, {num(s.get('env_steps'))} env steps, mean return {num(s.get('mean_return_100'), 1)}"
    marks = [
        f"{t:g} at {num(m.get('env_steps'))} steps / {num(m.get('wall_s'), 1)} s"
        for t, m in sorted(result.milestones.items())
    ]
    return f"{head}; {body}" + (f"; {'; '.join(marks)}" if marks else "")


def spread(values: list) -> tuple[float, float, float] | None:
    """(median, min, max) of the values that are not None, or None if there are none."""
    xs = [float(v) for v in values if v is not None]
    return (float(np.median(xs)), min(xs), max(xs)) if xs else None


def pooled(runs: list[RunResult], field: str) -> list[float]:
    """Every non-null value of a progress field over all the runs, in one list."""
    return [float(v) for r in runs for v in r.progress.get(field, []) if v is not None]


def last_value(series: list) -> float | None:
    values = [v for v in series if v is not None]
    return values[-1] if values else None


def run_figures(run: RunResult) -> dict:
    """Per-run training figures (the columns of runs.csv beyond the summary)."""
    norms = pooled([run], "grad_norm")
    stds = pooled([run], "return_std_100")
    lags = pooled([run], "policy_lag_mean")
    return {
        "grad_norm_mean": float(np.mean(norms)) if norms else None,
        "return_var_mean": float(np.mean(np.square(stds))) if stds else None,
        "policy_lag_mean": float(np.mean(lags)) if lags else None,
        "dropped_stale": last_value(run.progress.get("dropped_stale", [])),
    }


def algo_row(algo: str, runs: list[RunResult], thresholds: tuple[float, ...] = CARTPOLE) -> dict:
    """The table row of one algorithm over its runs (all seeds, failed ones included in
    ``runs`` and the final returns; a failed run's milestones count for nothing: what a
    run that crashed, timed out or was stopped reached before is not a solve)."""
    row: dict = {"algo": algo, "runs": len(runs)}
    for t in thresholds:
        reached = [r.milestones[t] for r in runs if t in r.milestones and r.outcome not in FAILED]
        row[f"reached_{t:g}"] = len(reached)
        for key in runlog.MILESTONE_FIELDS:
            row[f"{key}_to_{t:g}"] = spread([m.get(key) for m in reached])
    row["final_return"] = spread([r.summary.get("mean_return_100") for r in runs])
    norms = pooled(runs, "grad_norm")
    row["grad_norm"] = (float(np.mean(norms)), float(np.std(norms))) if norms else None
    stds = pooled(runs, "return_std_100")
    row["return_var"] = float(np.mean(np.square(stds))) if stds else None
    lags = pooled(runs, "policy_lag_mean")
    row["policy_lag"] = float(np.mean(lags)) if lags else None
    row["dropped_stale"] = spread([run_figures(r)["dropped_stale"] for r in runs])
    row["capped"] = sum(r.outcome in CAPPED for r in runs)
    row["crashed"] = sum(r.outcome == "crashed" for r in runs)
    return row


def group(runs: list[RunResult], algos: tuple[str, ...]) -> dict[str, list[RunResult]]:
    return {a: [r for r in runs if r.algo == a] for a in algos}


def num(x: float | None, nd: int = 0) -> str:
    """Compact numbers for tables: 1.27M, 77.1k, 4.7."""
    if x is None:
        return "–"
    if nd == 0 and abs(x) >= 1e6:
        return f"{x / 1e6:.2f}M"
    if nd == 0 and abs(x) >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:.{nd}f}"


def spread_text(s: tuple[float, float, float] | None, nd: int = 0) -> str:
    return "–" if s is None else f"{num(s[0], nd)} [{num(s[1], nd)}–{num(s[2], nd)}]"
