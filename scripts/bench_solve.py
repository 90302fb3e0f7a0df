"""Wall clock and env steps to solve an env: our trainer against Stable-Baselines3.

    python -m scripts.bench_solve [--env CartPole-v1] [--seeds 1,2,3,4,5]
                                  [--max-seconds S] [--peers a2c,ppo]
                                  [--ours-args "--envs 8 ..."]

Envs and their targets: ``sb3_peer.TARGETS`` (CartPole-v1 475, Acrobot-v1 -100,
LunarLander-v3 200, Pendulum-v1 -200, HalfCheetah-v5 3000). Runs, one at a time and
interleaved by seed (so a change in machine load hits every system alike): ours through
``python -m learner --env ENV --actors 2 --target-return T`` with no algorithm or tuning
flags, so the env's preset in configs/ decides (CartPole-v1's is the configuration this
bench always ran: a2c, 16 envs x 32 steps, lr 4e-3, GAE 0.95), and SB3 A2C and PPO with
rl-baselines3-zoo's settings for the env through ``scripts/sb3_peer.py``, each in its own
process. Then writes ``runs/bench-solve-<env>-<time>/report.md`` and ``results.json``
and prints the report.

What is timed, by one rule for every system: the first time the mean return of the
training episodes' last 100 reaches the target. Ours: the learner's ``return_reached``
event for the target (seconds from the first actor's join; the run goes on to confirm
the solve with the learner's own 100 episodes, reported as ``confirmed`` and not timed);
SB3: ``model.learn()`` start -> the same criterion on the raw returns. Neither counts
interpreter start-up or imports; ``proc_s`` in results.json is the whole process for
reference. Budgets: each peer has the zoo's ``n_timesteps``, ours the largest of the
peers' (``--max-env-steps``), and every system ``--max-seconds``. A run that does not
solve within them counts as infinitely slow in the medians (so the median is honest
about runs that did not learn); a run that failed (a crash, a kill at the time limit)
is shown as failed, left out of the medians, leaves the speed-up undefined, and makes
the script exit 1. Compute: ours is a learner and 2 actor processes (one torch thread
each) on the machine's cores; an SB3 peer is one process with one torch thread.

No trainer imports here (the learner runs in a subprocess), so this file also runs as
``python scripts/bench_solve.py``. Medians, summary and table: scripts/solve_summary.py; report files from scripts/report.py,
running a process from scripts/procs.py, the envs from scripts/sb3_peer.py, the zoo entries from scripts/zoo.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.procs import fresh_run_dir, run_process  # noqa: E402
from scripts.report import machine_lines, write_report  # noqa: E402
from scripts.runlog import machine_info, milestones, read_events  # noqa: E402
from scripts.sb3_peer import TARGETS  # noqa: E402
from scripts.solve_summary import (  # noqa: E402
    OURS,
    solve_table,
    speedup,
    speedup_line,
    summarize,
)
from scripts.zoo import ZOO, ZOO_COMMIT, ZOO_ENTRY  # noqa: E402

PEERS = ("sb3-a2c", "sb3-ppo")
ENVS = tuple(TARGETS)
# Default --max-seconds per env: room for the slower systems to solve on the 2-core
# machine (estimates from the presets' measurements and the zoo budgets, not limits
# anyone measured to be tight). CartPole keeps the bench's old 120 s.
MAX_SECONDS: dict[str, float] = {
    "CartPole-v1": 120.0,
    "Acrobot-v1": 300.0,
    "Pendulum-v1": 300.0,
    "LunarLander-v3": 1200.0,
    "HalfCheetah-v5": 3600.0,
}
# Start-up allowance on top of --max-seconds before a run is killed.
GRACE_S = 90.0


# --- running ------------------------------------------------------------------------


def ours_budget(env: str) -> int:
    """Ours' env-step budget: the largest the zoo gives a peer on ``env``."""
    return max(int(ZOO[env][p.removeprefix("sb3-")]["n_timesteps"]) for p in PEERS)


def ours_command(
    env: str, seed: int, max_seconds: float, run_dir: Path, ours_args: str = ""
) -> list[str]:
    """Our learner as a user runs it on ``env``: no --algo and no tuning flags, so the
    env's preset decides; ``ours_args`` may add flags (for experiments). The budget
    (``ours_budget``) comes last with the stopping rule, which the flags cannot move."""
    target = TARGETS[env]
    cmd = [sys.executable, "-m", "learner", "--env", env, "--actors", "2"]
    cmd += shlex.split(ours_args)
    # Our flags come last: argparse keeps the last value, so --ours-args cannot move the
    # run dir, the seed or the stopping rule. "=" keeps a negative target a value.
    cmd += [f"--target-return={target:g}", f"--milestones={target:g}"]
    cmd += ["--seed", str(seed), "--port", "0", "--run-dir", str(run_dir)]
    cmd += ["--max-seconds", f"{max_seconds:g}", "--checkpoint-every-s", "0"]
    cmd += ["--max-env-steps", str(ours_budget(env))]
    return cmd


def peer_command(system: str, env: str, seed: int, max_seconds: float) -> list[str]:
    algo = system.removeprefix("sb3-")
    cmd = [sys.executable, "-m", "scripts.sb3_peer", "--env", env, "--algo", algo]  # cwd: ROOT
    cmd += [f"--target={TARGETS[env]:g}", "--seed", str(seed), "--max-seconds", f"{max_seconds:g}"]
    return cmd


def run_ours(env: str, seed: int, ours_args: str, max_seconds: float, out_dir: Path) -> dict:
    run_dir = fresh_run_dir(out_dir / f"ours-seed{seed}")
    cmd = ours_command(env, seed, max_seconds, run_dir, ours_args)
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
    config_path = run_dir / "config.json"
    if config_path.is_file():  # what the preset chose, for the report
        config = json.loads(config_path.read_text())["config"]
        result.update(algo=config.get("algo"), preset=config.get("preset"))
    summary_path = run_dir / "summary.json"
    if code == 0 and summary_path.is_file():
        s = json.loads(summary_path.read_text())
        # The peers' rule: the training window's first crossing of the target.
        reached = milestones(read_events(run_dir / "learner.jsonl")).get(float(TARGETS[env]))
        result.update(solved=reached is not None, confirmed=bool(s["solved"]))
        if reached is not None:
            result.update(wall_s=reached["wall_s"], env_steps=reached["env_steps"])
        else:
            result.update(wall_s=s["wall_s"], env_steps=s["env_steps"])
        mean = s.get("mean_return_100")
        result["mean_return_100"] = None if mean is None else round(mean, 2)
    else:
        result["error"] = f"exit {code}; see {run_dir / 'console.log'}"
    return result


def run_peer(system: str, env: str, seed: int, max_seconds: float, out_dir: Path) -> dict:
    cmd = peer_command(system, env, seed, max_seconds)
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
        result.update(stopped=r.get("stopped"), mean_return_100=r.get("mean_return_100"))
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


def select_systems(systems: str, peers: str) -> list[str]:
    """--systems filtered by --peers (a2c, ppo; "" for none), in --systems order. A
    ValueError names what is unknown."""
    chosen = [s for s in systems.split(",") if s]
    wanted = [p for p in peers.split(",") if p]
    unknown = sorted(set(chosen) - {OURS, *PEERS})
    if unknown:
        raise ValueError(f"unknown systems {unknown}; choose from {OURS}, {', '.join(PEERS)}")
    algos = [p.removeprefix("sb3-") for p in PEERS]
    if bad := sorted(set(wanted) - set(algos)):
        raise ValueError(f"unknown peers {bad}; choose from {', '.join(algos)}")
    return [s for s in chosen if s == OURS or s.removeprefix("sb3-") in wanted]


def setup_lines(env: str, ours_args: str, runs: Sequence[dict]) -> list[str]:
    """How each system ran, for the report: our command and the preset it picked, each
    peer's zoo entry and budget."""
    lines = []
    ours = [r for r in runs if r["system"] == OURS]
    if ours:
        cmd = f"python -m learner --env {env} --actors 2 --target-return={TARGETS[env]:g}"
        cmd += f" {ours_args}" if ours_args else ""
        cmd += f" --max-env-steps {ours_budget(env)}"
        chose = sorted({f"preset `{r.get('preset')}`, algo {r.get('algo')}" for r in ours})
        confirmed = sum(bool(r.get("confirmed")) for r in ours)
        lines.append(
            f"Ours: `{cmd}` ({'; '.join(chose)}; wall clock from the first actor's join to "
            f"the first crossing; the learner's own confirmation episodes then agreed in "
            f"{confirmed}/{len(ours)} runs; a learner and 2 actor processes, one torch "
            "thread each)."
        )
    peers = [p for p in PEERS if any(r["system"] == p for r in runs)]
    for system in peers:
        algo = system.removeprefix("sb3-")
        budget = int(ZOO[env][algo]["n_timesteps"])
        lines.append(
            f"{system}: rl-baselines3-zoo `hyperparams/{algo}.yml` entry "
            f"`{ZOO_ENTRY.get(env, env)}` (zoo commit {ZOO_COMMIT}); budget {budget:,} env steps "
            "(the zoo's n_timesteps)."
        )
    if peers:
        lines.append(
            "SB3: one process, 1 torch thread, device cpu (wall clock from `model.learn()`)."
        )
    return [*lines, "— means not solved; failed means the run failed (see results.json)."]


def report_body(
    env: str,
    seeds: str,
    max_seconds: float,
    ours_args: str,
    runs: Sequence[dict],
    notes: Sequence[str],
    info: dict[str, Any],
) -> str:
    summary = summarize(runs)
    return "\n\n".join(
        [
            f"{env}, solved = mean return of the last 100 episodes >= {TARGETS[env]:g}; "
            f"seeds {seeds}; at most {max_seconds:g} s per run; runs one at a time.",
            solve_table(summary),
            speedup_line(speedup(summary)),
            " ".join(setup_lines(env, ours_args, runs)),
            *notes,
            "Machine:\n" + machine_lines(info),
        ]
    )


def _describe(r: dict) -> str:
    if r.get("error"):
        return f"{r['system']} seed {r['seed']}: FAILED ({r['error']})"
    verdict = "solved" if r["solved"] else "NOT solved"
    if not r["solved"]:
        stopped = f"stopped at {r['stopped']}, " if r.get("stopped") else ""
        verdict += f" ({stopped}mean return {r.get('mean_return_100')})"
    return (
        f"{r['system']} seed {r['seed']}: {verdict} in {r['wall_s']} s, {r['env_steps']} env steps"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scripts.bench_solve",
        description="Wall clock and env steps to solve an env: ours vs SB3 (rl-zoo).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--env", default="CartPole-v1", help=f"one of {', '.join(ENVS)}")
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="per run; unsolved after. Default per env: "
        + ", ".join(f"{e} {s:g}" for e, s in MAX_SECONDS.items()),
    )
    p.add_argument("--peers", default="a2c,ppo", help="SB3 peers to run (a2c, ppo); '' for none")
    p.add_argument(
        "--ours-args", default="", help="extra learner flags for ours; none: the preset decides"
    )
    p.add_argument("--systems", default=",".join((OURS, *PEERS)), help="which systems to run")
    p.add_argument("--out", default=str(ROOT / "runs"), help="parent of the report directory")
    args = p.parse_args(argv)
    if args.env not in TARGETS:
        p.error(f"unknown env {args.env!r}; supported: {', '.join(ENVS)}")
    max_seconds = MAX_SECONDS[args.env] if args.max_seconds is None else args.max_seconds
    seeds = [int(s) for s in args.seeds.split(",") if s]
    try:
        systems = select_systems(args.systems, args.peers)
    except ValueError as exc:
        p.error(str(exc))
    systems, notes = plan(systems, importlib.util.find_spec("stable_baselines3") is not None)
    for note in notes:
        print(note, file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) / f"bench-solve-{args.env.replace('/', '-')}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    runs = []
    for seed in seeds:
        for system in systems:
            if system == OURS:
                r = run_ours(args.env, seed, args.ours_args, max_seconds, out_dir)
            else:
                r = run_peer(system, args.env, seed, max_seconds, out_dir)
            print(_describe(r), file=sys.stderr, flush=True)
            runs.append(r)
    body = report_body(args.env, args.seeds, max_seconds, args.ours_args, runs, notes, info)
    summary = summarize(runs)
    results = {
        "machine": info,
        "env": args.env,
        "target": TARGETS[args.env],
        "seeds": seeds,
        "max_seconds": max_seconds,
        "ours_args": args.ours_args,
        "runs": runs,
        "summary": summary,
        "speedup": speedup(summary),
        "notes": notes,
    }
    write_report(out_dir, f"Time to solve {args.env}", body, results)
    print(body)
    print(f"\nreport: {out_dir / 'report.md'}")
    failed = [f"{r['system']} seed {r['seed']}" for r in runs if r.get("error")]
    if failed:
        print(f"failed runs: {', '.join(failed)} (see results.json)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
