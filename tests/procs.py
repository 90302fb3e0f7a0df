"""Moved to scripts/procs.py, because scripts may not import from tests/. This
re-export keeps the tests that still import ``tests.procs`` working until they are
switched; new code imports from ``scripts.procs``."""

from __future__ import annotations

from scripts.procs import (
    ROOT,
    Proc,
    endpoint_of,
    free_port_pair,
    start_actor,
    start_learner,
    stop_process,
)

__all__ = [
    "ROOT",
    "Proc",
    "endpoint_of",
    "free_port_pair",
    "start_actor",
    "start_learner",
    "stop_process",
]
