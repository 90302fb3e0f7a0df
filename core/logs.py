"""Structured logging set-up, called once from each process's ``main``.

Every event goes to two places: one JSON object per line in ``<run_dir>/<name>.jsonl``
(the record a run leaves; ``tail -f ... | jq`` reads it) and a readable line on the
console (stderr). ``role`` and, for actors, ``actor_id`` are bound on every event.
Event names are snake_case facts: ``weights_published``, ``actor_lost``.

The console is one of three: ``plain`` (a line per event to stderr, today's default),
``live`` (the same lines printed through a rich Console, so that they appear above a
``rich.live.Live`` view on that Console instead of tearing through it; see
learner/console.py) or ``off``. ``hide`` leaves named events off the console only, for
a caller that shows them its own way; the JSON file always gets every event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Literal

import rich.console
import structlog
from rich.text import Text

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def configure(
    role: str,
    log_file: Path | None,
    *,
    level: str = "info",
    console: Literal["plain", "live", "off"] = "plain",
    terminal: rich.console.Console | None = None,
    hide: Collection[str] = (),
    **bind: object,
) -> structlog.stdlib.BoundLogger:
    """Route structlog through the stdlib root logger to a JSON file and the console;
    return a logger with ``role`` (and ``bind``) bound. ``terminal``: the rich Console
    that ``live`` prints through (default: a new one on stderr)."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(_LEVELS[level])
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    # Tracebacks as data, never with locals: tensors must not reach logs.
                    structlog.processors.ExceptionRenderer(
                        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                    ),
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        root.addHandler(file_handler)
    if console != "off":
        if console == "live":
            handler: logging.Handler = _TerminalHandler(
                terminal or rich.console.Console(stderr=True)
            )
            colors = True  # turned into rich styles by _TerminalHandler
        elif console == "plain":
            handler = logging.StreamHandler(sys.stderr)
            colors = sys.stderr.isatty()
        else:
            raise ValueError(f"console must be plain, live or off, got {console!r}")
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    # Named explicitly: with rich installed structlog's default is a
                    # rich traceback with locals, and tensors must not reach logs.
                    structlog.dev.ConsoleRenderer(
                        colors=colors, exception_formatter=structlog.dev.plain_traceback
                    ),
                ],
            )
        )
        if hide:
            handler.addFilter(_HideEvents(hide))
        root.addHandler(handler)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(role=role, **bind)
    return structlog.get_logger()


def event_of(record: logging.LogRecord) -> dict | None:
    """The structlog event dict a stdlib record carries (None for a foreign record)."""
    return record.msg if isinstance(record.msg, dict) else None


class _HideEvents(logging.Filter):
    """Lets through every record but the events named."""

    def __init__(self, names: Collection[str]) -> None:
        super().__init__()
        self.names = frozenset(names)

    def filter(self, record: logging.LogRecord) -> bool:
        event = event_of(record)
        return event is None or event.get("event") not in self.names


class _TerminalHandler(logging.Handler):
    """Prints each formatted line through a rich Console. While a ``rich.live.Live``
    runs on that Console, what it prints goes above the live view."""

    def __init__(self, terminal: rich.console.Console) -> None:
        super().__init__()
        self.terminal = terminal

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # soft_wrap: a long key=value line stays one line (the terminal wraps it).
            self.terminal.print(Text.from_ansi(self.format(record)), soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging's rule: a handler never raises
            self.handleError(record)
