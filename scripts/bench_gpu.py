"""On a GPU machine: Pong to +18 with one GPU learner and many actors, and how far one
learner scales (``make bench-gpu``; runs from a fresh clone on that machine).

    python -m scripts.bench_gpu [--pong-seconds 480] [--actors 1,2,4,8,14]
                                [--scaling-seconds 15] [--skip-pong] [--skip-scaling]

Pong: ``python -m learner --env ALE/Pong-v5 --device cuda --actors N --target-return 18``
with the Atari preset; reports the time to a mean return of +18 over the last 100
episodes (the learner's clock, from the first actor's join), frames per second (4 per
env step), the learner's busy fraction (1 - idle), GPU utilisation sampled by
nvidia-smi, and the policy lag.

Scaling: the same learner (async a3c) for a fixed time per point, for CartPole-v1 and
Pong, on CUDA and on the CPU, for each actor count: env steps/s end to end and learner
samples/s (transitions trained on per second), steady state (the second half of the
run). The report (report.md, results.json, scaling.png) goes to ``--out``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import mean

from scripts.procs import ROOT, fresh_run_dir, run_process
from scripts.report import machine_lines, markdown_table, write_report
from scripts.runlog import event_time, machine_info, named, read_events, read_summary


class GpuSampler:
    """nvidia-smi's utilisation.gpu every 500 ms, in the background."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
                + ["-lms", "500"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append((time.monotonic(), float(line.strip())))
            except ValueError:
                continue

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)

    def mean_between(self, t0: float, t1: float) -> float | None:
        values = [u for t, u in self.samples if t0 <= t <= t1]
        return round(mean(values), 1) if values else None


def learner_cmd(run_dir: Path, env: str, device: str, actors: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "learner",
        "--env",
        env,
        "--device",
        device,
        "--actors",
        str(actors),
        "--port",
        "0",
        "--checkpoint-every-s",
        "0",
        "--run-dir",
        str(run_dir),
        *extra,
    ]


def steady(events: list[dict], key: str) -> float | None:
    """The mean of ``key`` over the second half of the progress events."""
    rows = [e.get(key) for e in named(events, "progress")]
    rows = [r for r in rows[len(rows) // 2 :] if r is not None]
    return round(mean(rows), 1) if rows else None


def training_start(events: list[dict], t0: float, t0_wall: float) -> float:
    """The monotonic time of the first actor's join (the learner's training clock starts
    there): GPU utilisation averaged from then, not over the process's start-up."""
    joined = named(events, "actor_joined")
    return t0 + max(0.0, event_time(joined[0]) - t0_wall) if joined else t0


def pong(out: Path, actors: int, seconds: float, seed: int) -> dict:
    run_dir = fresh_run_dir(out / f"pong-seed{seed}")
    cmd = learner_cmd(run_dir, "ALE/Pong-v5", "cuda", actors, "--seed", str(seed))
    cmd += ["--target-return", "18", "--max-seconds", str(seconds)]
    cmd += ["--milestones=-20,-15,-10,-5,0,5,10,15"]
    with GpuSampler() as gpu:
        t0, t0_wall = time.monotonic(), time.time()
        code, wall, _ = run_process(cmd, run_dir.with_suffix(".stderr"), seconds + 120)
        t1 = time.monotonic()
    events = read_events(run_dir / "learner.jsonl")
    t0 = training_start(events, t0, t0_wall)
    summary = read_summary(run_dir) or {}
    progress = named(events, "progress")
    busy = [e["train_busy"] for e in progress if e.get("train_busy") is not None]
    lags = [e["policy_lag_mean"] for e in progress if e.get("policy_lag_mean") is not None]
    reached = {e["threshold"]: e["wall_s"] for e in named(events, "return_reached")}
    learner_wall = summary.get("wall_s") or 0.0
    return {
        "seed": seed,
        "exit": code,
        "solved": bool(summary.get("solved")),
        "learner_wall_s": learner_wall,
        "process_wall_s": round(wall, 1),
        "env_steps": summary.get("env_steps"),
        "frames_per_s": round(4 * (summary.get("env_steps") or 0) / max(learner_wall, 1e-9)),
        "mean_return_100": summary.get("mean_return_100"),
        "train_busy_mean": round(mean(busy), 3) if busy else None,
        "policy_lag_mean": round(mean(lags), 2) if lags else None,
        "gpu_util_mean": gpu.mean_between(t0, t1),
        "milestones_s": reached,
        "updates": summary.get("updates"),
    }


def scaling_point(out: Path, env: str, device: str, actors: int, seconds: float) -> dict:
    run_dir = fresh_run_dir(out / f"scale-{env.replace('/', '_')}-{device}-{actors}")
    cmd = learner_cmd(run_dir, env, device, actors, "--algo", "a3c")
    cmd += ["--target-return", "1e9", "--max-seconds", str(seconds)]
    if env.startswith("ALE/"):
        cmd += ["--preset", "atari"]
    with GpuSampler() as gpu:
        t0, t0_wall = time.monotonic(), time.time()
        code, _, _ = run_process(cmd, run_dir.with_suffix(".stderr"), seconds + 90)
        t1 = time.monotonic()
    events = read_events(run_dir / "learner.jsonl")
    t0 = training_start(events, t0, t0_wall)
    return {
        "env": env,
        "device": device,
        "actors": actors,
        "exit": code,
        "env_steps_per_s": steady(events, "steps_per_s"),
        "learner_samples_per_s": steady(events, "trained_per_s"),
        "train_busy": steady(events, "train_busy"),
        "gpu_util_mean": gpu.mean_between(t0, t1) if device == "cuda" else None,
    }


def plot(points: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, env in zip(axes, ("CartPole-v1", "ALE/Pong-v5"), strict=True):
        for device, style in (("cuda", "-o"), ("cpu", "--s")):
            rows = sorted(
                (p for p in points if p["env"] == env and p["device"] == device),
                key=lambda p: p["actors"],
            )
            xs = [p["actors"] for p in rows]
            ax.plot(xs, [p["env_steps_per_s"] or 0 for p in rows], style, label=f"{device} env")
            ax.plot(
                xs,
                [p["learner_samples_per_s"] or 0 for p in rows],
                style,
                alpha=0.5,
                label=f"{device} learner",
            )
        ax.set_title(env)
        ax.set_xlabel("actor processes")
        ax.set_ylabel("steps / s")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_gpu", description=__doc__)
    p.add_argument("--out", default="", help="report directory; default runs/bench-gpu-<time>")
    p.add_argument("--pong-actors", type=int, default=14)
    p.add_argument("--pong-seconds", type=float, default=480.0)
    p.add_argument("--pong-seeds", default="1")
    p.add_argument("--actors", default="1,2,4,8,14", help="actor counts for the scaling study")
    p.add_argument("--scaling-seconds", type=float, default=15.0)
    p.add_argument("--scaling-devices", default="cuda,cpu")
    p.add_argument("--skip-pong", action="store_true")
    p.add_argument("--skip-scaling", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out or ROOT / "runs" / time.strftime("bench-gpu-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine_info(), "pong": [], "scaling": []}
    sections = [machine_lines(results["machine"])]
    if not args.skip_pong:
        for seed in (int(s) for s in args.pong_seeds.split(",")):
            r = pong(out, args.pong_actors, args.pong_seconds, seed)
            results["pong"].append(r)
            print(r, flush=True)
        keys = [k for k in results["pong"][0] if k != "milestones_s"]
        sections.append(
            f"## Pong to +18, 1 GPU learner + {args.pong_actors} actors\n\n"
            + markdown_table(keys, [[r[k] for k in keys] for r in results["pong"]])
            + "\n\nMilestones (learner seconds to each mean return): "
            + "; ".join(str(r["milestones_s"]) for r in results["pong"])
        )
    if not args.skip_scaling:
        for env in ("CartPole-v1", "ALE/Pong-v5"):
            for device in args.scaling_devices.split(","):
                for n in (int(a) for a in args.actors.split(",")):
                    r = scaling_point(out, env, device, n, args.scaling_seconds)
                    results["scaling"].append(r)
                    print(r, flush=True)
        keys = list(results["scaling"][0])
        sections.append(
            "## Scaling\n\n"
            + markdown_table(keys, [[r[k] for k in keys] for r in results["scaling"]])
        )
        plot(results["scaling"], out / "scaling.png")
    write_report(out, "GPU benchmark", "\n\n".join(sections), results)
    print((out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
