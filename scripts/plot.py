"""Reward curves of finished or running learner runs, in one PNG.

    python -m scripts.plot RUN_DIR [RUN_DIR ...] [--out PNG] [--x env_steps|wall_s] [--title T]

One line per run: ``mean_return_100`` from the ``progress`` events of its
``learner.jsonl`` against env steps (or wall seconds), a shaded band of
± ``return_std_100``, and the run's target return as a dashed line. ``read_curve`` is
the pure part (a run directory in, the numbers to draw out); ``draw`` only draws.
Reading runs in bulk and comparing algorithms is scripts/compare.py.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file (`python scripts/plot.py`): make the repository's packages
    # importable the way `python -m scripts.plot` finds them.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli import arg, build_parser  # noqa: E402
from scripts import runlog  # noqa: E402

X_FIELDS = ("env_steps", "wall_s")
LABELS = {
    "env_steps": "env steps",
    "wall_s": "wall clock (s since the first actor joined)",
    "mean_return_100": "mean return (last 100 episodes)",
}


@dataclass(frozen=True)
class PlotConfig:
    """The command line of this script."""

    runs: tuple[str, ...] = ()  # positional RUN_DIR arguments; no flag
    x: str = arg("env_steps", "x axis: env steps or wall seconds", choices=X_FIELDS)
    out: str = arg(
        "", "PNG to write; default: RUN_DIR/plot.png for one run, ./plot.png for several"
    )
    title: str = arg("", "figure title; default: what is plotted against what")

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("give at least one RUN_DIR")

    @property
    def out_path(self) -> Path:
        if self.out:
            return Path(self.out)
        return Path(self.runs[0]) / "plot.png" if len(self.runs) == 1 else Path("plot.png")


class RunDirError(Exception):
    """The path given is not a run directory the learner wrote (no directory, no log)."""


@dataclass(frozen=True)
class Curve:
    """What one run contributes to the plot. ``x``, ``y`` and ``std`` are parallel, one
    entry per logged point with a mean return; ``std`` is NaN where it was not logged
    (the final summary point has none), and the band has a gap there."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    std: tuple[float, ...]
    target: float | None  # the return the run counts as solved, if known
    progress_events: int  # all progress events read, with a mean return or not


def _config_json(run_dir: Path) -> dict:
    """The ``config`` part of config.json, or {} if it is missing or unreadable."""
    try:
        doc = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    config = doc.get("config") if isinstance(doc, dict) else None
    return config if isinstance(config, dict) else {}


def _number(value: object) -> float | None:
    """A finite JSON number as float; None for null, NaN, strings and booleans."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def run_label(config: dict, fallback: str) -> str:
    """``a2c CartPole-v1 seed 1`` from the run's settings; ``fallback`` without algo and env."""
    if not (config.get("algo") and config.get("env")):
        return fallback
    seed = config.get("seed")
    return f"{config['algo']} {config['env']}" + (f" seed {seed}" if seed is not None else "")


def read_curve(run_dir: Path, x_field: str = "env_steps") -> Curve:
    """The reward curve of one run, read line by line so a long log is never held whole:
    the points of its ``progress`` events (plus the summary point of ``run_finished``,
    which can be up to one log interval later than the last progress event), its label
    and its target. Raises RunDirError if ``run_dir`` is not a run."""
    if x_field not in X_FIELDS:
        raise ValueError(f"x_field must be one of {X_FIELDS}, got {x_field!r}")
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such directory")
    log = run_dir / "learner.jsonl"
    if not log.is_file():
        raise RunDirError(f"{run_dir}: no learner.jsonl (not a learner run directory?)")
    xs: list[float] = []
    ys: list[float] = []
    stds: list[float] = []
    logged: dict = {}  # the first learner_config event (a resumed run logs another)
    progress_events = 0
    try:
        with log.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                # One line at a time through runlog's parser: same rule for torn lines.
                for event in runlog.parse_events((line,)):
                    name = event.get("event")
                    if name == "learner_config" and not logged:
                        logged = event
                    if name == "progress":
                        progress_events += 1
                    if name not in ("progress", "run_finished"):
                        continue
                    x, y = _number(event.get(x_field)), _number(event.get("mean_return_100"))
                    if x is None or y is None:
                        continue  # no episode finished yet
                    std = _number(event.get("return_std_100"))
                    xs.append(x)
                    ys.append(y)
                    stds.append(math.nan if std is None else std)
    except OSError as exc:
        raise RunDirError(f"{run_dir}: cannot read learner.jsonl ({exc.strerror})") from None
    # config.json is the run's own record; the logged settings fill in for older runs.
    config = {**logged, **{k: v for k, v in _config_json(run_dir).items() if v is not None}}
    target = _number(config.get("target_return"))
    if target is None:
        target = _number(logged.get("solve_at"))  # the env's threshold the learner used
    return Curve(
        label=run_label(config, run_dir.resolve().name),
        x=tuple(xs),
        y=tuple(ys),
        std=tuple(stds),
        target=target,
        progress_events=progress_events,
    )


def unique_labels(curves: Sequence[Curve], run_dirs: Sequence[Path]) -> list[str]:
    """The curves' labels, with the directory name added where two would read the same
    (the same algo, env and seed run twice)."""
    labels = [c.label for c in curves]
    return [
        f"{label} ({d.resolve().name})" if labels.count(label) > 1 else label
        for label, d in zip(labels, run_dirs, strict=True)
    ]


def draw(
    curves: Sequence[Curve], labels: Sequence[str], x_field: str, title: str, out: Path
) -> None:
    """Write the PNG: one line and ± std band per curve, one dashed line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        for i, (curve, label) in enumerate(zip(curves, labels, strict=True)):
            x, y, std = (np.array(v, dtype=float) for v in (curve.x, curve.y, curve.std))
            marker = "o" if len(x) == 1 else None  # a lone point draws no line
            ax.plot(x, y, color=f"C{i}", marker=marker, label=label)
            ax.fill_between(x, y - std, y + std, color=f"C{i}", alpha=0.2, linewidth=0)
        targets: dict[float, int] = {}  # target -> index of the first run with it
        for i, curve in enumerate(curves):
            if curve.target is not None:
                targets.setdefault(curve.target, i)
        for target, i in sorted(targets.items()):
            # One target for all runs is grey; different ones take their first run's colour.
            color = "grey" if len(targets) == 1 else f"C{i}"
            ax.axhline(target, color=color, linestyle="--", linewidth=1, label=f"target {target:g}")
        ax.set_xlabel(LABELS[x_field])
        ax.set_ylabel(LABELS["mean_return_100"])
        ax.set_title(
            title
            or f"{LABELS['mean_return_100']} vs {LABELS[x_field].split(' (')[0]}; band: ± their std"
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        PlotConfig, prog="python -m scripts.plot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories to plot")
    ns = parser.parse_args(argv)
    cfg = PlotConfig(runs=tuple(ns.runs), x=ns.x, out=ns.out, title=ns.title)
    run_dirs = [Path(r) for r in cfg.runs]
    try:
        curves = [read_curve(d, cfg.x) for d in run_dirs]
    except RunDirError as exc:
        parser.error(str(exc))  # exits 2 with the usage line
    kept = []
    for d, curve in zip(run_dirs, curves, strict=True):
        if curve.x:
            kept.append((d, curve))
        elif curve.progress_events:
            print(
                f"warning: {d}: no episode finished yet "
                f"({curve.progress_events} progress events, none with a mean return); not plotted",
                file=sys.stderr,
            )
        else:
            print(f"warning: {d}: no progress events yet; not plotted", file=sys.stderr)
    if not kept:
        parser.error("no run has a mean return to plot yet")
    dirs, curves = [d for d, _ in kept], [c for _, c in kept]
    try:
        draw(curves, unique_labels(curves, dirs), cfg.x, cfg.title, cfg.out_path)
    except OSError as exc:
        parser.error(f"cannot write {cfg.out_path}: {exc.strerror or exc}")
    print(cfg.out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
