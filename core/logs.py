"""Structured logging set-up, called once from each process's ``main``.

Every event goes to two places: one JSON object per line in ``<run_dir>/<name>.jsonl``
(the record a run leaves; ``tail -f ... | jq`` reads it) and a readable line on the
console (stderr). ``role`` and, for actors, ``actor_id`` are bound on every event.
Event names are snake_case facts: ``weights_published``, ``actor_lost``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def configure(
    role: str,
    log_file: Path | None,
    *,
    level: str = "info",
    console: bool = True,
    **bind: object,
) -> structlog.stdlib.BoundLogger:
    """Route structlog through the stdlib root logger to a JSON file and the console;
    return a logger with ``role`` (and ``bind``) bound."""
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
    if console:
        console_handler = logging.StreamHandler(sys.stderr)
        console_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=shared,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
                ],
            )
        )
        root.addHandler(console_handler)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(role=role, **bind)
    return structlog.get_logger()
