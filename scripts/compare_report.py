"""The report of a comparison: report.md (the table per algorithm, one row per run,
how each number is computed), runs.json and runs.csv, and four plots (median and
min-max band over seeds). Aggregating is aggregate.py's; running, compare.py's.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from scripts import runlog
from scripts.aggregate import (
    CARTPOLE,
    FAILED,
    RunResult,
    algo_row,
    group,
    num,
    run_figures,
    spread_text,
)
from scripts.report import markdown_table

TIMEOUT_MARGIN_S = 60.0  # start-up, shutdown and the final checkpoint on top of --max-seconds
KILL_GRACE_S = 10.0  # between SIGTERM and SIGKILL of a run that overran


def format_table(rows: list[dict], thresholds: tuple[float, ...] = CARTPOLE) -> str:
    """The markdown table, one row per algorithm."""
    head = ["algo"] + [f"solved {t:g}" for t in thresholds]
    for t in thresholds:
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
        cells = [row["algo"]] + [f"{row[f'reached_{t:g}']}/{n}" for t in thresholds]
        for t in thresholds:
            cells += [
                spread_text(row[f"env_steps_to_{t:g}"]),
                spread_text(row[f"episodes_to_{t:g}"]),
                spread_text(row[f"wall_s_to_{t:g}"], 1),
            ]
        final = row["final_return"]
        gn = row["grad_norm"]
        cells += [
            num(final and final[0], 1),
            "–" if gn is None else f"{gn[0]:.2f} ± {gn[1]:.2f}",
            num(row["return_var"]),
            num(row["policy_lag"], 2),
            spread_text(row["dropped_stale"]),
            f"{row['capped']}/{n}",
            f"{row['crashed']}/{n}",
        ]
        cells_by_algo.append(cells)
    return markdown_table(head, cells_by_algo)


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


def plot_all(
    by_algo: dict[str, list[RunResult]], out: Path, thresholds: tuple[float, ...] = CARTPOLE
) -> list[str]:
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
            for t in thresholds:
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


def write_raw(
    runs: list[RunResult], out: Path, header: dict, thresholds: tuple[float, ...] = CARTPOLE
) -> None:
    """runs.json (everything, progress series included) and runs.csv (one row per run)."""
    rows = []
    for r in runs:
        d = asdict(r)
        d["milestones"] = [{"threshold": t, **m} for t, m in sorted(r.milestones.items())]
        rows.append(d)
    (out / "runs.json").write_text(
        json.dumps({**header, "thresholds": list(thresholds), "runs": rows}, indent=1) + "\n"
    )
    fields = ["algo", "seed", "outcome", "returncode", "elapsed_s", *runlog.SUMMARY_FIELDS]
    fields += [f"{k}_to_{t:g}" for t in thresholds for k in runlog.MILESTONE_FIELDS]
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
                    for t in thresholds
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


def format_runs(
    runs: list[RunResult], out: Path, thresholds: tuple[float, ...] = CARTPOLE
) -> list[str]:
    """One row per run, failed runs in bold, then the failed runs named."""
    head = ["algo", "seed", "outcome", "wall s", "env steps", "episodes", "final mean return"]
    head += [f"{t:g} reached at (steps, s)" for t in thresholds] + ["run dir"]
    rows = []
    for r in runs:
        s = r.summary
        marks = [
            f"{num(r.milestones[t].get('env_steps'))}, {num(r.milestones[t].get('wall_s'), 1)}"
            if t in r.milestones
            else "–"
            for t in thresholds
        ]
        run_dir = Path(r.run_dir)
        where = run_dir.name if run_dir.parent == out else str(run_dir)
        cells = [r.algo, str(r.seed), f"**{r.outcome}**" if r.outcome in FAILED else r.outcome]
        cells += [num(s.get("wall_s"), 1), num(s.get("env_steps")), num(s.get("episodes"))]
        cells += [num(s.get("mean_return_100"), 1), *marks, f"`{where}`"]
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
    thresholds: tuple[float, ...] = CARTPOLE,
) -> str:
    """report.md, runs.json, runs.csv and the plots; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    by_algo = group(runs, algos)
    table = format_table([algo_row(a, rs, thresholds) for a, rs in by_algo.items()], thresholds)
    info = runlog.machine_info()
    write_raw(
        runs, out, {"command": command, "learner_command": learner_cmd, "machine": info}, thresholds
    )
    images = plot_all(by_algo, out, thresholds)
    env = next((r.config["env"] for r in runs if r.config and "env" in r.config), "CartPole-v1")
    lines = [f"# {', '.join(algos)} on {env}", ""]
    lines += format_header(runs, command, learner_cmd, info)
    lines += [f"- **{note}**"] if note else []
    lines += ["", "## Results", "", table, "", "## Runs", "", *format_runs(runs, out, thresholds)]
    lines += ["", "## Plots", "", *(f"![{name}]({name})\n" for name in images)]
    lines += ["## How each number is computed", "", NOTES, ""]
    (out / "report.md").write_text("\n".join(lines))
    return table
