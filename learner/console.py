"""What the learner shows on stderr while it trains: a live view on a terminal, a short
fixed-format line per ``progress`` event elsewhere (CI, pipes, files).

The numbers come from the ``progress`` events the learner logs anyway: ``ProgressTap``
is a logging handler that hands each one's fields to ``Console.progress``, so the
training loop knows nothing of the console. How other events reach the console, and
how ``progress`` is kept off it, is core/logs.py's part (``console=``, ``hide=``).

The pure parts, which the tests drive: ``choose_mode``, ``toward`` (how far the run is
toward each stopping rule), ``plain_line`` and ``view``. Nothing here decides when a
run stops; that is learner/outcome.py.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import NamedTuple, TextIO

import rich.console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from core.logs import event_of
from learner.stats import WINDOW

MODES = ("auto", "live", "plain", "off")
REFRESH_S = 0.25  # the live view is redrawn at most this often
BAR_WIDTH = 40
# Fields structlog adds to every event: not progress figures.
_META = frozenset({"event", "level", "timestamp", "role", "logger"})


def choose_mode(
    requested: str, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """``auto`` -> ``live`` when ``stream`` (default stderr) is a terminal that can move
    its cursor (TERM is not ``dumb``), else ``plain``; other modes are kept."""
    if requested not in MODES:
        raise ValueError(f"console mode must be one of {', '.join(MODES)}, got {requested!r}")
    if requested != "auto":
        return requested
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    return "live" if is_tty and environ.get("TERM") != "dumb" else "plain"


def terminal() -> rich.console.Console:
    """The rich Console on stderr that the live view and the log lines above it share."""
    # Forced: live mode was either detected or asked for (--console live).
    return rich.console.Console(stderr=True, force_terminal=True)


class Toward(NamedTuple):
    """How far a run is toward one stopping rule."""

    rule: str  # "target", "max_env_steps" or "max_seconds"
    fraction: float  # in [0, 1]
    label: str  # "target 475", "100,000 env steps", "600 s of training"


def target_fraction(mean: float | None, target: float, lowest: float | None) -> float:
    """Where ``mean`` stands between a starting point and ``target``. The start is 0,
    or the lowest mean seen when that is below 0: a CartPole run starts near 0, an
    Acrobot run (target -100) near -500, and -300 there is half way."""
    if mean is None:
        return 0.0
    if mean >= target:
        return 1.0
    # start <= mean < target, so the division is safe.
    start = min(0.0, mean if lowest is None else min(lowest, mean))
    return (mean - start) / (target - start)


def toward(
    fields: Mapping,
    *,
    target: float | None,
    max_env_steps: int | None,
    max_seconds: float | None,
    lowest: float | None = None,
) -> list[Toward]:
    """The stopping rules in force, the one to show first: the target return when
    there is one, then the limits, the one nearest its end first. ``lowest``: the
    lowest mean return seen so far (see ``target_fraction``)."""
    out = []
    if max_env_steps:
        steps = fields.get("env_steps") or 0
        out.append(
            Toward("max_env_steps", min(1.0, steps / max_env_steps), f"{max_env_steps:,} env steps")
        )
    if max_seconds:
        wall = fields.get("wall_s") or 0.0
        out.append(
            Toward("max_seconds", min(1.0, wall / max_seconds), f"{max_seconds:g} s of training")
        )
    out.sort(key=lambda t: -t.fraction)
    if target is not None:
        mean = fields.get("mean_return_100")
        out.insert(0, Toward("target", target_fraction(mean, target, lowest), f"target {target:g}"))
    return out


def plain_line(fields: Mapping, rules: list[Toward]) -> str:
    """One progress event as a short fixed-format line, e.g. ``12.3s | steps 123,456 |
    45,210/s | return 187.3 ± 40.1 (100 ep) | upd 87 | lag 0.4/2 | actors 2 | 39% of
    target 475``: one stopping rule per ``rules`` at the end. Counts of trouble
    (dropped, rejected) appear only when non-zero."""
    parts = [
        f"{fields.get('wall_s') or 0.0:.1f}s",
        f"steps {fields.get('env_steps') or 0:,}",
        f"{fields.get('steps_per_s') or 0.0:,.0f}/s",
        f"return {_return(fields)} ({_window(fields)} ep)",
        f"upd {fields.get('updates') or 0:,}",
        f"lag {_num(fields.get('policy_lag_mean'), '.1f')}/{_num(fields.get('policy_lag_max'), 'g')}",
    ]
    if fields.get("actors") is not None:
        parts.append(f"actors {fields['actors']}")
    for key, name in (("dropped_stale", "dropped"), ("rejected", "rejected")):
        if fields.get(key):
            parts.append(f"{name} {fields[key]:,}")
    if rules:
        parts.append(", ".join(f"{r.fraction:.0%} of {r.label}" for r in rules))
    return " | ".join(parts)


def view(fields: Mapping, rules: list[Toward], *, env: str, algo: str) -> Table:
    """The live view of one progress event: a few labelled rows and a bar per
    stopping rule."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(no_wrap=True)
    head = [f"{fields.get('wall_s') or 0.0:,.1f} s"]
    if fields.get("actors") is not None:
        head.append(f"{fields['actors']} actors")
    if fields.get("version") is not None:
        head.append(f"version {fields['version']:,}")
    grid.add_row(Text(f"{algo} {env}", style="bold"), " · ".join(head))
    grid.add_row(
        "env steps",
        f"{fields.get('env_steps') or 0:,}   {fields.get('steps_per_s') or 0.0:,.0f}/s",
    )
    grid.add_row(
        "return",
        f"{_return(fields)}   last {_window(fields)} of {fields.get('episodes') or 0:,} episodes",
    )
    work = [
        f"{fields.get('updates') or 0:,}",
        f"lag {_num(fields.get('policy_lag_mean'), '.1f')} mean · "
        f"{_num(fields.get('policy_lag_max'), 'g')} max",
    ]
    if fields.get("train_busy") is not None:
        work.append(f"busy {fields['train_busy']:.0%}")
    grid.add_row("updates", "   ".join(work))
    trouble = [
        f"{fields[key]:,} {name}"
        for key, name in (("dropped_stale", "dropped stale"), ("rejected", "rejected"))
        if fields.get(key)
    ]
    if trouble:
        grid.add_row(Text("trouble", style="yellow"), Text(" · ".join(trouble), style="yellow"))
    if not rules:
        grid.add_row("stop at", "no stopping rule: Ctrl-C ends the run")
    for rule in rules:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=1.0, completed=rule.fraction, width=BAR_WIDTH),
            f"{rule.fraction:.0%}",
        )
        grid.add_row(rule.label, bar)
    return grid


class Console:
    """The learner's console. ``progress(fields)`` is called with each progress
    event's fields; ``close()`` (idempotent) puts the terminal back. Modes: ``live``
    (a rich Live view on ``terminal``), ``plain`` (a line per event to ``stream``,
    default stderr), ``off`` (nothing); ``auto`` picks with ``choose_mode``."""

    def __init__(
        self,
        *,
        env: str,
        algo: str,
        target: float | None,
        max_env_steps: int | None,
        max_seconds: float | None,
        mode: str = "auto",
        terminal: rich.console.Console | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.env, self.algo = env, algo
        self.target, self.max_env_steps, self.max_seconds = target, max_env_steps, max_seconds
        self.mode = choose_mode(mode, stream)
        self.stream = stream
        self.fields: dict = {}
        self.lowest: float | None = None  # the lowest mean return seen
        self._live: Live | None = None
        self._terminal = terminal
        self._drawn_at = 0.0
        self._closed = False

    def rules(self) -> list[Toward]:
        return toward(
            self.fields,
            target=self.target,
            max_env_steps=self.max_env_steps,
            max_seconds=self.max_seconds,
            lowest=self.lowest,
        )

    def progress(self, fields: Mapping) -> None:
        if self._closed or self.mode == "off":
            return
        self.fields = dict(fields)
        mean = self.fields.get("mean_return_100")
        if mean is not None:
            self.lowest = mean if self.lowest is None else min(self.lowest, mean)
        rules = self.rules()
        if self.mode == "plain":
            stream = sys.stderr if self.stream is None else self.stream
            print(plain_line(self.fields, rules), file=stream, flush=True)
            return
        renderable = view(self.fields, rules, env=self.env, algo=self.algo)
        if self._live is None:
            # No refresh thread (auto_refresh=False): each progress event redraws.
            # Stray writes to stdout/stderr are redirected above the view.
            self._live = Live(
                renderable,
                console=self._terminal or terminal(),
                auto_refresh=False,
                transient=False,
            )
            self._live.start(refresh=True)
            self._drawn_at = time.monotonic()
            return
        now = time.monotonic()
        draw = now - self._drawn_at >= REFRESH_S
        self._live.update(renderable, refresh=draw)
        if draw:
            self._drawn_at = now

    def close(self) -> None:
        """Draw the last figures, stop the live view and show the cursor again."""
        if self._closed:
            return
        self._closed = True
        if self._live is not None:
            try:
                self._live.update(
                    view(self.fields, self.rules(), env=self.env, algo=self.algo), refresh=True
                )
            finally:
                self._live.stop()


class ProgressTap(logging.Handler):
    """A logging handler that passes each ``progress`` event's fields to a Console
    (add it to the root logger after core.logs.configure)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        event = event_of(record)
        if event is None or event.get("event") != "progress":
            return
        try:
            self.console.progress({k: v for k, v in event.items() if k not in _META})
        except Exception:  # noqa: BLE001 - logging's rule: a handler never raises
            self.handleError(record)


def _return(fields: Mapping) -> str:
    mean, std = fields.get("mean_return_100"), fields.get("return_std_100")
    if mean is None:
        return "-"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def _window(fields: Mapping) -> int:
    """Episodes in the mean: the last WINDOW (100), fewer early on."""
    return min(fields.get("episodes") or 0, WINDOW)


def _num(x: float | int | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)
