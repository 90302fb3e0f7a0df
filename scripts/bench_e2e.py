"""End to end: a learner and external actors on one machine, as a user runs them.

    python -m scripts.bench_e2e [--env ALE/Pong-v5] [--actors 2] [--seconds 120]
                                [--env-groups 1,2] [--sf-python PATH] [--out DIR]

For each ``--env-groups`` value G in turn: ``python -m learner --actors 0`` and
``--actors`` external ``python -m actor --env-groups G`` processes, trained for
``--seconds`` (no target, no confirmation, no checkpoints). From the learner's own
``progress`` events after the first quarter of the run (start-up and the first
weights left out): env steps/s collected, samples/s trained, and the share of time the
learner's training thread was busy (``train_busy``): whether the actors or the
learner set the pace.

With ``--sf-python`` (a Python that has sample-factory 2.1.1 and its Atari example),
the same env through Sample Factory's APPO in the same go: ``--actors`` rollout workers
of ``--envs`` envs in two halves (its double-buffered sampling) and a CPU learner, for
the same seconds from its first trained frames, then SIGINT. Its rates come from its
own periodic lines after the same first quarter: agent steps collected ("Samples") and
trained ("Total num frames" / frameskip 4). Runs one thing at a time; writes report.md
and results.json into --out.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripts import runlog
from scripts.procs import (
    ROOT,
    endpoint_of,
    fresh_run_dir,
    start_actor,
    start_learner,
    stop_process,
)
from scripts.report import machine_lines, markdown_table, write_report


def steady(progress: list[dict], seconds: float) -> dict:
    """Rates over the progress events after the first quarter of ``seconds``."""
    late = [e for e in progress if (e.get("wall_s") or 0) >= seconds / 4]
    if len(late) < 2:
        return {"env_steps_per_s": None, "trained_per_s": None, "train_busy": None}
    first, last = late[0], late[-1]
    span = last["wall_s"] - first["wall_s"]
    busy = [e["train_busy"] for e in late[1:] if e.get("train_busy") is not None]
    trained = [e["trained_per_s"] for e in late[1:] if e.get("trained_per_s") is not None]
    return {
        "env_steps_per_s": round((last["env_steps"] - first["env_steps"]) / span) if span else None,
        "trained_per_s": round(sum(trained) / len(trained)) if trained else None,
        "train_busy": round(sum(busy) / len(busy), 3) if busy else None,
    }


def run_ours(runs: Path, env: str, actors: int, groups: int, seconds: float) -> dict:
    run_dir = fresh_run_dir(runs / f"ours-g{groups}")
    learner = start_learner(
        run_dir,
        *("--env", env, "--actors", "0", "--seed", "1", "--max-seconds", f"{seconds:g}"),
        *("--target-return", "1e9", "--confirm-episodes", "0", "--checkpoint-every-s", "0"),
        *("--log-interval-s", f"{max(1.0, min(5.0, seconds / 20)):g}"),
    )
    started = []
    try:
        endpoint = endpoint_of(learner, 120.0)
        for i in range(actors):
            started.append(start_actor(run_dir, endpoint, f"a{i}", "--env-groups", str(groups)))
        code = learner.wait_exit(timeout=seconds + 180)
        # Actors leave with 0 on the learner's shutdown; one that failed (a crash, an env
        # that kept raising, a kill) left the run an actor short.
        died = {p.log_path.stem: p.popen.poll() for p in started if p.popen.poll() not in (None, 0)}
    finally:
        learner.stop()
        for proc in started:
            proc.stop()
    progress = runlog.named(runlog.read_events(run_dir / "learner.jsonl"), "progress")
    last = progress[-1] if progress else {}
    problems = [f"learner exit {code}"] if code != 0 else []
    problems += [f"{name} exited {rc}" for name, rc in died.items()]
    if (last.get("wall_s") or 0) < 0.9 * seconds:
        problems.append(f"measured {last.get('wall_s') or 0:.0f} s of {seconds:g}")
    return {
        "system": f"ours, --env-groups {groups}",
        "exit": code,
        **steady(progress, seconds),
        "final_return": last.get("mean_return_100"),
        "env_steps": last.get("env_steps"),
        "problems": problems,
    }


# Sample Factory's periodic line (every 5 s), e.g. "[2026-12-04 04:14:25,001][15824] Fps
# is (10 sec: 819.2, 60 sec: 682.7, 300 sec: 682.7). Total num frames: 20480. Throughput:
# 0: 170.7. Samples: 5120.": frames the learner has trained on (emulator frames, 4 per
# agent step) and agent steps collected so far.
_SF_LINE = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[\d+\] Fps is \(.*?\)\. "
    r"Total num frames: (\d+)\..*?Samples: (\d+)\."
)
SF_FRAMESKIP = 4


def sf_points(text: str) -> list[tuple[float, int, int]]:
    """(seconds, agent steps trained, agent steps collected) of each periodic line."""
    out = []
    for m in _SF_LINE.finditer(text):
        t = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
        out.append(
            (t + int(m.group(1)[20:]) / 1000, int(m.group(2)) // SF_FRAMESKIP, int(m.group(3)))
        )
    return out


def sf_steady(points: list[tuple[float, int, int]]) -> dict:
    """Rates after the first quarter of the lines since training began (frames > 0)."""
    training = [p for p in points if p[1] > 0]
    late = training[len(training) // 4 :]
    if len(late) < 2 or late[-1][0] <= late[0][0]:
        return {"env_steps_per_s": None, "trained_per_s": None}
    (t1, trained1, collected1), (t2, trained2, collected2) = late[0], late[-1]
    return {
        "env_steps_per_s": round((collected2 - collected1) / (t2 - t1)),
        "trained_per_s": round((trained2 - trained1) / (t2 - t1)),
    }


def sf_command(python: str, env: str, actors: int, envs: int, train_dir: Path) -> list[str]:
    """Sample Factory's own Atari example (its APPO and Atari settings), on the CPU, with
    ``actors`` rollout workers of ``envs`` envs each in two halves (its double-buffered
    sampling, as our actors' env groups)."""
    game = "atari_" + env.split("/")[-1].split("-")[0].lower()
    return [
        python,
        *("-m", "sf_examples.atari.train_atari", f"--env={game}", "--algo=APPO"),
        *("--device=cpu", "--async_rl=True", f"--num_workers={actors}"),
        f"--num_envs_per_worker={envs}",
        *("--worker_num_splits=2", "--train_for_env_steps=10000000000", "--seed=1"),
        *(f"--train_dir={train_dir}", "--experiment=bench_e2e", "--restart_behavior=overwrite"),
    ]


def run_sf(runs: Path, python: str, env: str, actors: int, envs: int, seconds: float) -> dict:
    """Sample Factory for ``seconds`` from its first trained frames (its start-up is not
    counted against it), then SIGINT, as a user stops it. Its ``--train_for_seconds``
    is not used: in 2.1.1 its clock never advances."""
    runs.mkdir(parents=True, exist_ok=True)
    log = runs / "sf.log"
    cmd = sf_command(python, env, actors, envs, runs / "sf")
    t0 = time.monotonic()
    began = None
    with open(log, "wb") as out:
        # Its own process group: Sample Factory's worker processes can outlive its main
        # process after SIGINT (seen here: a learner worker kept training for an hour),
        # and the group is how they are swept up below.
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while proc.poll() is None and time.monotonic() - t0 < seconds + 300:
                if began is None and any(
                    p[1] > 0 for p in sf_points(log.read_text("utf-8", "replace"))
                ):
                    began = time.monotonic()
                if began is not None and time.monotonic() - began >= seconds:
                    break
                time.sleep(1.0)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # its own clean stop: a final checkpoint
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            stop_process(proc, 10.0, group=True)  # and whatever it left running
    points = sf_points(log.read_text("utf-8", "replace"))
    trained = [p for p in points if p[1] > 0]
    window = trained[-1][0] - trained[0][0] if len(trained) > 1 else 0.0
    problems = [] if began else ["never trained"]
    # Its lines come every 5 s: a window that ran its course ends within one of them.
    if began and window < 0.9 * seconds - 5:
        problems.append(f"measured {window:.0f} s of {seconds:g} (it exited {proc.returncode})")
    return {
        "system": "Sample Factory 2.1.1 APPO",
        "exit": proc.returncode,
        "problems": problems,
        **sf_steady(points),
        "train_busy": None,
        "final_return": None,
        "env_steps": points[-1][2] if points else None,
        "startup_s": round(began - t0, 1) if began else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_e2e", description=__doc__)
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--envs", type=int, default=16, help="Sample Factory's envs per worker")
    p.add_argument("--env-groups", default="1,2", help="one run per value")
    p.add_argument("--sf-python", default="", help="a Python with sample-factory installed")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    try:
        groups = [int(g) for g in args.env_groups.split(",") if g]
    except ValueError:
        p.error(f"--env-groups: comma-separated integers, got {args.env_groups!r}")
    if not groups or min(groups) < 1:
        p.error("--env-groups: at least one value, each at least 1")
    out = Path(args.out or ROOT / "runs" / time.strftime("bench-e2e-%Y%m%d-%H%M%S"))
    results = [run_ours(out / "runs", args.env, args.actors, g, args.seconds) for g in groups]
    if args.sf_python:
        results.append(
            run_sf(out / "runs", args.sf_python, args.env, args.actors, args.envs, args.seconds)
        )
    columns = ["system", "env_steps_per_s", "trained_per_s", "train_busy", "final_return"]
    columns += ["problems"]
    for r in results:
        r["problems"] = "; ".join(r["problems"]) or None
    body = "\n".join(
        [
            f"- command: `python -m scripts.bench_e2e {' '.join(argv or sys.argv[1:])}`",
            f"- {args.env}, {args.actors} actors (workers), {args.seconds:g} s each, rates "
            "after the first quarter",
            "",
            markdown_table(
                columns,
                [[r.get(c) if r.get(c) is not None else "-" for c in columns] for r in results],
            ),
            "",
            machine_lines(runlog.machine_info()),
        ]
    )
    write_report(out, f"End to end on {args.env}", body, {"runs": results})
    print((out / "report.md").read_text())
    # A run that failed or was cut short is not a rate: the bench fails rather than
    # report it as a slow one.
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
