"""How each off-policy correction holds up as the policy lag grows (``make staleness``).

    python -m scripts.staleness [--lags 0,1,2,4,8,16,32] [--algos a3c,a3c-grad,impala]
                                [--seeds 1,2,3] [--max-env-steps 500000] [--out DIR]

The knob is the learner's ``--weights-delay K``: actors always get the weights K
updates older than the learner's (a controlled, documented lag on top of the natural
one), and ``--max-policy-lag`` is lifted so nothing is dropped: what is measured is the
correction, not the filter. Each (algo, K, seed) runs CartPole-v1 with 2 local actors to
a fixed budget of env steps (it does not stop when solved): the final mean return of the
last 100 episodes, and the env steps at which it first reached 475 (or "not reached").
Writes report.md, results.json and staleness.png into --out (default docs/staleness);
the runs' own directories go under --runs (default runs/staleness).

An entry of --algos is an algorithm or one of VARIANTS (an algorithm with flags of its
own, e.g. ``appo-proximal``). A run that failed (exit not 0, or killed at 600 s) counts
for nothing in a cell and is shown as failed: it is not a correction that did not hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import median

from scripts import runlog
from scripts.procs import ROOT, fresh_run_dir, run_process
from scripts.report import machine_lines, markdown_table, write_report

TARGET = 475.0
# Labelled settings of one algorithm, runnable side by side with the plain ones.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "appo-behaviour": ("appo", ["--trust-region", "behaviour"]),
    "appo-proximal": ("appo", ["--trust-region", "proximal"]),
}


def one_run(runs: Path, algo: str, lag: int, seed: int, budget: int) -> dict:
    run_dir = fresh_run_dir(runs / f"{algo}-k{lag}-s{seed}")
    name, flags = VARIANTS.get(algo, (algo, []))
    cmd = [sys.executable, "-m", "learner", "--env", "CartPole-v1", "--algo", name, *flags]
    cmd += ["--seed", str(seed), "--actors", "2", "--port", "0", "--run-dir", str(run_dir)]
    cmd += ["--weights-delay", str(lag), "--max-policy-lag", "100000"]
    cmd += ["--max-env-steps", str(budget), "--target-return", "1e9"]
    cmd += ["--milestones", f"{TARGET:g}", "--checkpoint-every-s", "0"]
    code, wall, _ = run_process(cmd, run_dir.with_suffix(".stderr"), 600)
    events = runlog.read_events(run_dir / "learner.jsonl")
    summary = runlog.read_summary(run_dir) or runlog.summary_from_events(events)
    reached = runlog.milestones(events).get(TARGET)
    lags = [e.get("policy_lag_mean") for e in runlog.named(events, "progress")]
    lags = [x for x in lags if x is not None]
    return {
        "algo": algo,
        "lag": lag,
        "seed": seed,
        "exit": code,
        "final_return": summary.get("mean_return_100"),
        "steps_to_475": reached["env_steps"] if reached else None,
        "measured_lag_mean": round(sum(lags) / len(lags), 2) if lags else None,
        "wall_s": round(wall, 1),
    }


def cell(runs: list[dict], key: str) -> str:
    if not runs:  # this lag was not run for this algorithm
        return "-"
    failed = sum(r.get("exit") != 0 for r in runs)
    note = f", {failed} failed" if failed else ""
    values = [r[key] for r in runs if r.get("exit") == 0]
    done = [v for v in values if v is not None]
    if key == "steps_to_475":
        if not done:
            return (
                f"not reached ({len(values)} of {len(runs)} ran{note})" if failed else "not reached"
            )
        return f"{median(done) / 1e3:.0f}k ({len(done)}/{len(runs)}{note})"
    return (f"{median(done):.0f}" if done else "-") + (f" ({failed} failed)" if failed else "")


def plot(results: list[dict], algos: list[str], lags: list[int], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    xs = [max(k, 0.5) for k in lags]  # log axis: K=0 drawn at 0.5
    for algo in algos:
        finals, steps = [], []
        for k in lags:
            runs = [r for r in results if r["algo"] == algo and r["lag"] == k]
            f = [r["final_return"] for r in runs if r["final_return"] is not None]
            s = [r["steps_to_475"] for r in runs if r["steps_to_475"] is not None]
            finals.append(median(f) if f else float("nan"))
            steps.append(median(s) if len(s) * 2 > len(runs) else float("nan"))
        axes[0].plot(xs, finals, "-o", label=algo)
        axes[1].plot(xs, steps, "-o", label=algo)
    for ax, title in zip(axes, ("final mean return (median of seeds)",
                                "env steps to 475 (median; gap: most seeds never)"), strict=True):  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(k) for k in lags])
        ax.set_xlabel("--weights-delay K (updates)")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.staleness", description=__doc__)
    p.add_argument("--lags", default="0,1,2,4,8,16,32,64")
    # The report in docs/staleness: appo in both of its trust regions.
    p.add_argument("--algos", default="a3c,a3c-grad,impala,appo-behaviour,appo-proximal")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--max-env-steps", type=int, default=500_000)
    p.add_argument("--out", default=str(ROOT / "docs" / "staleness"), help="the report")
    p.add_argument("--runs", default=str(ROOT / "runs" / "staleness"), help="run directories")
    p.add_argument(
        "--results", default="", help="rebuild the report from a results.json (runs nothing)"
    )
    args = p.parse_args(argv)
    lags = [int(x) for x in args.lags.split(",")]
    algos = args.algos.split(",")
    seeds = [int(x) for x in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    if args.results:
        results = json.loads(Path(args.results).read_text())["runs"]
    else:
        for algo in algos:
            for k in lags:
                for seed in seeds:
                    r = one_run(Path(args.runs), algo, k, seed, args.max_env_steps)
                    results.append(r)
                    print(r, flush=True)
    headers = ["K", *[f"{a}: final return" for a in algos], *[f"{a}: steps to 475" for a in algos]]
    rows = []
    for k in lags:
        by = {a: [r for r in results if r["algo"] == a and r["lag"] == k] for a in algos}
        rows.append([k, *[cell(by[a], "final_return") for a in algos],
                     *[cell(by[a], "steps_to_475") for a in algos]])  # fmt: skip
    body = (
        f"`python -m scripts.staleness --lags {args.lags} --algos {args.algos} --seeds "
        f"{args.seeds} --max-env-steps {args.max_env_steps}` ({len(results)} runs, "
        f"{sum(r['wall_s'] for r in results) / 60:.0f} min)\n\n"
        "CartPole-v1, 2 actors x 16 envs, each algorithm's default settings; actors act "
        "with weights K updates old (`--weights-delay K`), nothing dropped for staleness. "
        "Median over seeds; steps to 475 counts the seeds that got there.\n\n"
        + markdown_table(headers, rows)
        + "\n\n![staleness](staleness.png)\n\n"
        + machine_lines(runlog.machine_info())
    )
    plot(results, algos, lags, out / "staleness.png")
    write_report(out, "Policy lag: how each correction holds up", body, {"runs": results})
    print(body)
    failed = [r for r in results if r.get("exit") != 0]
    if failed and not args.results:
        print(f"{len(failed)} runs failed (see results.json)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
