"""The fair comparison of the algorithms: every algorithm runs every seed with the
same learner flags (and the env's preset, with its table for the algorithm), one
learner at a time, and the report says how many env steps, episodes and seconds each
needed to reach the env's two report returns (CartPole: 195 and 475), and how the
gradient norm, the return variance and the policy lag behaved over training.

    python scripts/compare.py --seeds 1 --max-seconds 20     # or: python -m scripts.compare

Writes into --out: report.md, runs.json, runs.csv and four PNG plots, beside one run
directory per (algo, seed). This module runs the learners; aggregate.py adds the runs
up, compare_report.py writes the report, runlog.py reads a run's logs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file (`python scripts/compare.py`): make the repository's packages
    # importable the way `python -m scripts.compare` finds them.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import algos  # noqa: E402
from core.cli import arg, build_parser, parse_config  # noqa: E402
from scripts.aggregate import ENV_THRESHOLDS, FAILED, RunResult, describe, load_run  # noqa: E402
from scripts.compare_report import KILL_GRACE_S, TIMEOUT_MARGIN_S, write_report  # noqa: E402
from scripts.procs import ROOT, fresh_run_dir, stop_process  # noqa: E402

# Every registered algorithm, in table order (core/algos is the one list).
ALGOS = tuple(algos.ALGORITHMS)
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
    cmd += [
        "--milestones=" + ",".join(f"{t:g}" for t in ENV_THRESHOLDS[cfg.env])
    ]  # "=": values may be negative
    cmd += ["--max-seconds", f"{cfg.max_seconds:g}", "--log-interval-s", "0.5"]
    if cfg.envs is not None:
        cmd += ["--envs", str(cfg.envs)]
    if cfg.rollout_len is not None:
        cmd += ["--rollout-len", str(cfg.rollout_len)]
    return cmd + cfg.extra_args


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


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        CompareConfig, prog="python scripts/compare.py", description=__doc__.split("\n\n")[0]
    )
    cfg = parse_config(CompareConfig, parser, argv)
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
            run_dir = fresh_run_dir(out / f"{algo}-seed{seed}")
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
    table = write_report(
        runs,
        cfg.algos,
        out,
        command=command,
        learner_cmd=learner_cmd,
        note=note,
        thresholds=ENV_THRESHOLDS[cfg.env],
    )
    print(f"\n{table}\n\nreport: {out / 'report.md'}")
    failed = [f"{r.algo} seed {r.seed}: {r.outcome}" for r in runs if r.outcome in FAILED]
    if failed:
        print(f"failed runs: {', '.join(failed)}", file=sys.stderr)
    return 130 if note else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
