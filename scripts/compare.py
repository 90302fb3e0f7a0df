"""The fair comparison of the algorithms: every algorithm runs every seed with the
same learner flags (and the env's preset, with its table for the algorithm), one
learner at a time, and the report says how many env steps, episodes and seconds each
needed to reach the env's two report returns (CartPole: 195 and 475), and how the
gradient norm, the return variance and the policy lag behaved over training.

    python scripts/compare.py --seeds 1 --max-seconds 20     # or: python -m scripts.compare

Writes into --out: report.md, runs.json, runs.csv and four PNG plots, beside one run
directory per (algo, seed). Reading the logs is scripts/runlog.py; this module runs the
learners, aggregates and writes the report.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    # Run as a file (`python scripts/compare.py`): make the repository's packages
    # importable the way `python -m scripts.compare` finds them.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import algos  # noqa: E402
from core.cli import arg, build_parser, parse_config  # noqa: E402
from scripts import runlog  # noqa: E402
from scripts.procs import ROOT, stop_process  # noqa: E402
from scripts.report import markdown_table  # noqa: E402

# Every registered algorithm, in table order (core/algos is the one list).
ALGOS = tuple(algos.ALGORITHMS)
# The returns whose first crossing the report times, per env: for CartPole, v0's and
# v1's "solved"; for the others, about halfway and the threshold (Acrobot -100,
# LunarLander 200, Pendulum -200, its preset's target). main() sets THRESHOLDS
# from --env.
ENV_THRESHOLDS = {
    "CartPole-v1": (195.0, 475.0),
    "Acrobot-v1": (-200.0, -100.0),
    "LunarLander-v3": (100.0, 200.0),
    "Pendulum-v1": (-500.0, -200.0),
}
THRESHOLDS = ENV_THRESHOLDS["CartPole-v1"]
TIMEOUT_MARGIN_S = 60.0  # start-up, shutdown and the final checkpoint on top of --max-seconds
KILL_GRACE_S = 10.0  # between SIGTERM and SIGKILL of a run that overran
CAPPED = ("max_seconds", "max_env_steps", "timeout")
FAILED = ("timeout", "crashed", "signal")
# Flags this script sets per run; --extra may not override them.
OWN_FLAGS = ("--env", "--algo", "--seed", "--actors", "--run-dir", "--port", "--milestones")
OWN_FLAGS += ("--max-seconds", "--log-interval-s", "--envs", "--rollout-len")


@dataclass(frozen=True)
class CompareConfig:
    algos: tuple[str, ...] = arg(ALGOS, "algorithms to compare, in table order")
    env: str = arg(
        "CartPole-v1",
        "environment, one of " + ", ".join(ENV_THRESHOLDS),
        choices=tuple(ENV_THRESHOLDS),
    )
    seeds: tuple[int, ...] = arg((1, 2, 3, 4, 5), "seeds; every algorithm runs every seed")
    actors: int = arg(2, "local actor processes per run")
    envs: int | None = arg(
        None, "environments per actor, passed to every run alike; the learner's default when unset"
    )
    rollout_len: int | None = arg(
        None, "rollout length T, passed to every run alike; the learner's default when unset"
    )
    max_seconds: float = arg(
        90.0,
        f"training seconds per run (learner --max-seconds); a run is killed {TIMEOUT_MARGIN_S:g} s after that",
    )
    out: str = arg("", "output directory; default: runs/compare-<YYYYmmdd-HHMMSS>")
    extra: str = arg("", "extra learner flags for every run, as one shell-quoted string")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.algos) - set(ALGOS))
        if not self.algos or unknown:
            raise ValueError(f"--algos: choose from {','.join(ALGOS)} (got {unknown or 'none'})")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("--seeds: give at least one seed, each once")
        if self.actors < 1 or self.max_seconds <= 0:
            raise ValueError(
                "--actors must be >= 1 and --max-seconds > 0: runs start their own actors and must end"
            )
        clash = [f for f in self.extra_args if f.split("=")[0] in OWN_FLAGS]
        if clash:
            raise ValueError(
                f"--extra may not set {clash[0]}: compare.py sets it (per run, or with its own flag)"
            )

    @property
    def extra_args(self) -> list[str]:
        return shlex.split(self.extra)

    @property
    def timeout_s(self) -> float:
        return self.max_seconds + TIMEOUT_MARGIN_S


def learner_command(
    cfg: CompareConfig, algo: str, seed: int | str, run_dir: Path | str
) -> list[str]:
    """The learner's command line; only --algo, --seed and --run-dir differ between runs."""
    cmd = [sys.executable, "-m", "learner", "--env", cfg.env, "--algo", algo, "--seed", str(seed)]
    cmd += ["--actors", str(cfg.actors), "--run-dir", str(run_dir), "--port", "0"]
    cmd += ["--milestones=" + ",".join(f"{t:g}" for t in THRESHOLDS)]  # "=": values may be negative
    cmd += ["--max-seconds", f"{cfg.max_seconds:g}", "--log-interval-s", "0.5"]
    if cfg.envs is not None:
        cmd += ["--envs", str(cfg.envs)]
    if cfg.rollout_len is not None:
        cmd += ["--rollout-len", str(cfg.rollout_len)]
    return cmd + cfg.extra_args


# --- one run ---------------------------------------------------------------------------


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


def execute(cmd: list[str], run_dir: Path, timeout_s: float) -> tuple[int | None, bool, float]:
    """Run one learner (and the actors it starts) in its own process group; kill the
    group if it outlives ``timeout_s``. Returns (exit code, timed out, elapsed seconds)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    with (run_dir / "console.log").open("wb") as console:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=console, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return proc.wait(timeout=timeout_s), False, time.monotonic() - start
        except subprocess.TimeoutExpired:
            # SIGTERM first: the learner stops its actors and writes its summary.
            code = stop_process(proc, KILL_GRACE_S, group=True)
            return code, True, time.monotonic() - start
        except BaseException:  # Ctrl-C: leave no learner or actor behind
            stop_process(proc, KILL_GRACE_S, group=True)
            raise


def describe(result: RunResult) -> str:
    """The one line printed when a run finishes."""
    s = result.summary
    head = f"{result.algo} seed={result.seed}: {result.outcome.upper() if result.outcome in FAILED else result.outcome}"
    if result.outcome == "crashed":
        head += f" (exit {result.returncode}, see {result.run_dir}/console.log)"
    if result.outcome == "timeout":
        head += f" (killed after {result.elapsed_s:.0f} s)"
    body = f"wall {_num(s.get('wall_s'), 1)} s, {_num(s.get('env_steps'))} env steps, mean return {_num(s.get('mean_return_100'), 1)}"
    marks = [
        f"{t:g} at {_num(m.get('env_steps'))} steps / {_num(m.get('wall_s'), 1)} s"
        for t, m in sorted(result.milestones.items())
    ]
    return f"{head}; {body}" + (f"; {'; '.join(marks)}" if marks else "")


# --- aggregation -----------------------------------------------------------------------


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


def algo_row(algo: str, runs: list[RunResult]) -> dict:
    """The table row of one algorithm over its runs (all seeds, failed ones included)."""
    row: dict = {"algo": algo, "runs": len(runs)}
    for t in THRESHOLDS:
        reached = [r.milestones[t] for r in runs if t in r.milestones]
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


def _num(x: float | None, nd: int = 0) -> str:
    """Compact numbers for tables: 1.27M, 77.1k, 4.7."""
    if x is None:
        return "–"
    if nd == 0 and abs(x) >= 1e6:
        return f"{x / 1e6:.2f}M"
    if nd == 0 and abs(x) >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:.{nd}f}"


def _spread(s: tuple[float, float, float] | None, nd: int = 0) -> str:
    return "–" if s is None else f"{_num(s[0], nd)} [{_num(s[1], nd)}–{_num(s[2], nd)}]"


def format_table(rows: list[dict]) -> str:
    """The markdown table, one row per algorithm."""
    head = ["algo"] + [f"solved {t:g}" for t in THRESHOLDS]
    for t in THRESHOLDS:
        head += [f"env steps to {t:g}", f"episodes to {t:g}", f"wall s to {t:g}"]
    head += [
        "final mean return",
        "grad norm mean ± std",
        "return variance",
        "policy lag",
        "stale batches dropped",
        "hit cap",
        "crashed",
    ]
    cells_by_algo = []
    for row in rows:
        n = row["runs"]
        cells = [row["algo"]] + [f"{row[f'reached_{t:g}']}/{n}" for t in THRESHOLDS]
        for t in THRESHOLDS:
            cells += [
                _spread(row[f"env_steps_to_{t:g}"]),
                _spread(row[f"episodes_to_{t:g}"]),
                _spread(row[f"wall_s_to_{t:g}"], 1),
            ]
        final = row["final_return"]
        gn = row["grad_norm"]
        cells += [
            _num(final and final[0], 1),
            "–" if gn is None else f"{gn[0]:.2f} ± {gn[1]:.2f}",
            _num(row["return_var"]),
            _num(row["policy_lag"], 2),
            _spread(row["dropped_stale"]),
            f"{row['capped']}/{n}",
            f"{row['crashed']}/{n}",
        ]
        cells_by_algo.append(cells)
    return markdown_table(head, cells_by_algo)


def group(runs: list[RunResult], algos: tuple[str, ...]) -> dict[str, list[RunResult]]:
    return {a: [r for r in runs if r.algo == a] for a in algos}


# --- plots -----------------------------------------------------------------------------

GRID_POINTS = 200
# (file, x field, y field, hold a stopped run's last value)
PLOTS = (
    ("reward_vs_steps.png", "env_steps", "mean_return_100", True),
    ("reward_vs_time.png", "wall_s", "mean_return_100", True),
    ("grad_norm.png", "env_steps", "grad_norm", False),
    ("policy_lag.png", "env_steps", "policy_lag_mean", False),
)
LABELS = {
    "env_steps": "env steps",
    "wall_s": "wall clock (s since the first actor joined)",
    "mean_return_100": "mean return (last 100 episodes)",
    "grad_norm": "gradient norm before clipping (interval mean)",
    "policy_lag_mean": "mean policy lag (versions)",
}


def run_points(run: RunResult, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of one run where both are logged; the return curve also gets the final
    summary point, which the last progress event (up to 0.5 s earlier) may not show."""
    pairs = [
        (a, b)
        for a, b in zip(run.progress.get(x, []), run.progress.get(y, []), strict=True)
        if a is not None and b is not None
    ]
    end = (run.summary.get(x), run.summary.get(y))
    if y == "mean_return_100" and None not in end and (not pairs or end[0] >= pairs[-1][0]):
        pairs.append(end)
    arr = np.array(pairs, dtype=float).reshape(-1, 2)  # [points, (x, y)]
    return arr[:, 0], arr[:, 1]


def on_grid(xs: np.ndarray, ys: np.ndarray, grid: np.ndarray, hold: bool) -> np.ndarray:
    """Linear interpolation on ``grid``; NaN before the first point, and after the last
    one either NaN or (``hold``) the last value."""
    if len(xs) == 0:
        return np.full(grid.shape, np.nan)
    out = np.interp(grid, xs, ys)
    out[grid < xs[0]] = np.nan
    if not hold:
        out[grid > xs[-1]] = np.nan
    return out


def band(
    runs: list[RunResult], x: str, y: str, grid: np.ndarray, hold: bool
) -> tuple[np.ndarray, ...]:
    """(median, min, max) across runs at each grid point, over the runs with a value there."""
    stack = np.stack([on_grid(*run_points(r, x, y), grid, hold) for r in runs])  # [runs, grid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return np.nanmedian(stack, axis=0), np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)


def plot_all(by_algo: dict[str, list[RunResult]], out: Path) -> list[str]:
    """Write the four PNGs into ``out``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for name, x, y, hold in PLOTS:
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
        ends = [run_points(r, x, y)[0] for runs in by_algo.values() for r in runs]
        top = max((float(e.max()) for e in ends if len(e)), default=0.0)
        grid = np.linspace(0.0, top, GRID_POINTS)
        for i, (algo, runs) in enumerate(by_algo.items()):
            if not runs or top <= 0:
                continue
            med, lo, hi = band(runs, x, y, grid, hold)
            ax.plot(grid, med, color=f"C{i}", label=f"{algo} (median of {len(runs)})")
            ax.fill_between(grid, lo, hi, color=f"C{i}", alpha=0.2, linewidth=0)
        if y == "mean_return_100":
            for t in THRESHOLDS:
                ax.axhline(t, color="grey", linestyle="--", linewidth=0.8)
                ax.annotate(
                    f"{t:g}",
                    (0, t),
                    xytext=(2, 2),
                    textcoords="offset points",
                    color="grey",
                    fontsize=8,
                )
        ax.set_xlabel(LABELS[x])
        ax.set_ylabel(LABELS[y])
        ax.set_title(f"{LABELS[y]} vs {LABELS[x].split(' (')[0]}; band: min–max over seeds")
        ax.grid(alpha=0.3)
        if top > 0:
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        names.append(name)
    return names


# --- report files ----------------------------------------------------------------------


def write_raw(runs: list[RunResult], out: Path, header: dict) -> None:
    """runs.json (everything, progress series included) and runs.csv (one row per run)."""
    rows = []
    for r in runs:
        d = asdict(r)
        d["milestones"] = [{"threshold": t, **m} for t, m in sorted(r.milestones.items())]
        rows.append(d)
    (out / "runs.json").write_text(
        json.dumps({**header, "thresholds": list(THRESHOLDS), "runs": rows}, indent=1) + "\n"
    )
    fields = ["algo", "seed", "outcome", "returncode", "elapsed_s", *runlog.SUMMARY_FIELDS]
    fields += [f"{k}_to_{t:g}" for t in THRESHOLDS for k in runlog.MILESTONE_FIELDS]
    fields += ["grad_norm_mean", "return_var_mean", "policy_lag_mean", "dropped_stale", "run_dir"]
    with (out / "runs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in runs:
            row = {
                "algo": r.algo,
                "seed": r.seed,
                "outcome": r.outcome,
                "returncode": r.returncode,
                "elapsed_s": r.elapsed_s,
                "run_dir": r.run_dir,
            }
            row.update({k: r.summary.get(k) for k in runlog.SUMMARY_FIELDS})
            row.update(
                {
                    f"{k}_to_{t:g}": r.milestones.get(t, {}).get(k)
                    for t in THRESHOLDS
                    for k in runlog.MILESTONE_FIELDS
                }
            )
            row.update(run_figures(r))
            writer.writerow(row)


NOTES = f"""\
- **solved X (k/n)**: k = runs whose learner logged `return_reached` for X, i.e. the mean
  return of the last 100 finished episodes (100 needed) reached X; n = all runs, failed ones included.
- **env steps / episodes / wall s to X**: the counters in that `return_reached` event;
  median and [min–max] over the runs that reached X only (– if none did). Env steps
  and episodes count everything the actors collected and sent, including batches the
  learner then dropped as stale (see below): the honest measure of sample cost.
- **wall s**: the learner's `wall_s`, seconds since the first actor joined; process
  start-up (a few seconds of imports) is not in it. Periodic checkpoints are.
- **final mean return**: `mean_return_100` of summary.json (of the last progress event
  for a run that wrote none), median over runs.
- **grad norm mean ± std**: every progress event (one per 0.5 s) logs the mean global
  gradient norm, before clipping, of the updates in its interval; mean and standard
  deviation of those values pooled over all runs of the algorithm. A std of interval
  means is smaller than the std over single updates. a2c's update is over the rollouts
  of all actors at once, a3c's over one actor's, so a2c's gradient averages more transitions.
- **return variance**: mean over the pooled progress events of `return_std_100`², the
  variance of the last 100 episode returns at that moment.
- **policy lag**: mean over the pooled progress events of `policy_lag_mean`: learner
  versions between the weights a batch was collected with and the learner's version when
  it arrived, accepted batches only (a2c: 0 by construction). Batches over
  `--max-policy-lag` are dropped, so this is a floor of the lag the actors really had.
- **stale batches dropped**: the learner's `dropped_stale` counter at its last progress
  event, median [min–max] over runs.
- **hit cap**: runs stopped by `--max-seconds` (or `--max-env-steps`) or killed at the hard
  timeout (max seconds + {TIMEOUT_MARGIN_S:g} s); **crashed**: a non-zero exit or no `run_finished` event.
- Pooled means weight each run by its length in progress events (wall time): runs that
  never solve run to the cap and weigh most.
- **Plots**: each run's points (its progress events; for the return also its final
  summary) are interpolated linearly on a {GRID_POINTS}-point grid from 0 to the largest x of
  any run. A run is missing before its first point. For the return, a run that stopped
  (solved or capped) keeps its last value to the end of the grid, so the median does not
  jump when runs finish; for the gradient norm and the policy lag it is missing after its
  end, so those medians are over the runs still going. Line: median; band: min–max.
- Runs go seed by seed (a2c, a3c, a3c-grad for seed 1, then seed 2, ...), one at a time,
  so slow drifts in machine load touch every algorithm alike.
- Raw data: `runs.json` (per run: summary, milestones, the progress series, the learner's
  settings) and `runs.csv` (one row per run: summary, milestones, per-run figures)."""


SHOWN_SETTINGS = ("envs", "rollout_len", "lr", "optimizer", "gamma", "gae_lambda")
SHOWN_SETTINGS += ("entropy_coef", "max_grad_norm", "max_policy_lag", "checkpoint_every_s")


def format_header(runs: list[RunResult], command: str, learner_cmd: str, info: dict) -> list[str]:
    """The report's opening lines: what was run, where, when."""
    config = next((r.config for r in runs if r.config), None) or {}
    # Loss settings sit under "loss" in the learner's config event.
    merged = {**(config.get("loss") or {}), **config}
    settings = ", ".join(f"{k}={merged.get(k)}" for k in SHOWN_SETTINGS) if config else "–"
    load = ", ".join(f"{x:.2f}" for x in info["loadavg"]) if info["loadavg"] else "–"
    return [
        f"- command: `{command}`",
        f"- every run: `{learner_cmd}`",
        f"- learner settings (logged by the first run): {settings}",
        f"- hard timeout per run: --max-seconds + {TIMEOUT_MARGIN_S:g} s; a run past it has "
        f"its process group sent SIGTERM, then SIGKILL {KILL_GRACE_S:g} s later, and counts "
        "as not solved",
        f"- date: {info['date']}",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['platform']}; load average "
        f"(1, 5, 15 min) at the end: {load}",
        f"- versions: python {info['python']}, torch {info['torch']}, "
        f"gymnasium {info['gymnasium']}, numpy {info['numpy']}, pyzmq {info['pyzmq']}",
    ]


def format_runs(runs: list[RunResult], out: Path) -> list[str]:
    """One row per run, failed runs in bold, then the failed runs named."""
    head = ["algo", "seed", "outcome", "wall s", "env steps", "episodes", "final mean return"]
    head += [f"{t:g} reached at (steps, s)" for t in THRESHOLDS] + ["run dir"]
    rows = []
    for r in runs:
        s = r.summary
        marks = [
            f"{_num(r.milestones[t].get('env_steps'))}, {_num(r.milestones[t].get('wall_s'), 1)}"
            if t in r.milestones
            else "–"
            for t in THRESHOLDS
        ]
        run_dir = Path(r.run_dir)
        where = run_dir.name if run_dir.parent == out else str(run_dir)
        cells = [r.algo, str(r.seed), f"**{r.outcome}**" if r.outcome in FAILED else r.outcome]
        cells += [_num(s.get("wall_s"), 1), _num(s.get("env_steps")), _num(s.get("episodes"))]
        cells += [_num(s.get("mean_return_100"), 1), *marks, f"`{where}`"]
        rows.append(cells)
    failed = [
        f"{r.algo} seed {r.seed}: {r.outcome} (exit {r.returncode}; see `{r.run_dir}/console.log`)"
        for r in runs
        if r.outcome in FAILED
    ]
    table = markdown_table(head, rows)
    return [table, "", "Failed runs (counted as not solved): " + ("; ".join(failed) or "none.")]


def write_report(
    runs: list[RunResult],
    algos: tuple[str, ...],
    out: Path,
    *,
    command: str,
    learner_cmd: str,
    note: str = "",
) -> str:
    """report.md, runs.json, runs.csv and the plots; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    by_algo = group(runs, algos)
    table = format_table([algo_row(a, rs) for a, rs in by_algo.items()])
    info = runlog.machine_info()
    write_raw(runs, out, {"command": command, "learner_command": learner_cmd, "machine": info})
    images = plot_all(by_algo, out)
    env = next((r.config["env"] for r in runs if r.config and "env" in r.config), "CartPole-v1")
    lines = [f"# {', '.join(algos)} on {env}", ""]
    lines += format_header(runs, command, learner_cmd, info)
    lines += [f"- **{note}**"] if note else []
    lines += ["", "## Results", "", table, "", "## Runs", "", *format_runs(runs, out)]
    lines += ["", "## Plots", "", *(f"![{name}]({name})\n" for name in images)]
    lines += ["## How each number is computed", "", NOTES, ""]
    (out / "report.md").write_text("\n".join(lines))
    return table


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        CompareConfig, prog="python scripts/compare.py", description=__doc__.split("\n\n")[0]
    )
    cfg = parse_config(CompareConfig, parser, argv)
    global THRESHOLDS
    THRESHOLDS = ENV_THRESHOLDS[cfg.env]
    out = Path(cfg.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(
        [Path(sys.executable).name, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    )
    learner_cmd = shlex.join(learner_command(cfg, "ALGO", "SEED", out / "ALGO-seedSEED"))
    plan = [(algo, seed) for seed in cfg.seeds for algo in cfg.algos]
    print(f"{len(plan)} runs, at most {cfg.timeout_s:g} s each, into {out}", flush=True)
    runs: list[RunResult] = []
    note = ""
    try:
        for i, (algo, seed) in enumerate(plan, 1):
            run_dir = out / f"{algo}-seed{seed}"
            rc, timed_out, elapsed = execute(
                learner_command(cfg, algo, seed, run_dir), run_dir, cfg.timeout_s
            )
            runs.append(
                load_run(run_dir, algo, seed, returncode=rc, timed_out=timed_out, elapsed_s=elapsed)
            )
            print(f"[{i}/{len(plan)}] {describe(runs[-1])}", flush=True)
    except KeyboardInterrupt:
        note = f"interrupted: {len(runs)} of {len(plan)} runs finished; the report covers those"
        print(note, file=sys.stderr)
    table = write_report(runs, cfg.algos, out, command=command, learner_cmd=learner_cmd, note=note)
    print(f"\n{table}\n\nreport: {out / 'report.md'}")
    return 130 if note else 0


if __name__ == "__main__":
    sys.exit(main())
