"""How the actor's loop ends or starts over: its exit codes (what a supervisor, Slurm or
Kubernetes sees) and the two exceptions that unwind the loop to them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROTOCOL = 2
EXIT_AUTH = 3
EXIT_ENV = 4
EXIT_NO_LEARNER = 5  # no learner within --learner-file-timeout or --join-timeout


class Stop(Exception):
    """Leave the loop with this exit code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Rejoin(Exception):
    """The learner is gone or restarted: go back to joining."""
