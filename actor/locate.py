"""Finding the learner through its address file (--learner-file; protocol/address.py):
the launch contract of cluster runs, where the learner's host and port are known only
once it has bound. No sockets here.

    found = wait_for_address(path, timeout_s, check_stop, log)   # or LearnerNotFound
    if moved(path, endpoint): re-join where the file now points

The file appears when the learner has bound, is rewritten by a learner that restarts
(another port, maybe another host) and removed when it exits; it is written atomically,
but a reader may still see it missing or half-replaced between two reads, which is
"not yet", never an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from protocol import address

POLL_S = 0.05  # a stat of one small file: cheap, and a local actor starts sooner


class LearnerNotFound(Exception):
    """No learner named in the file within the time allowed."""

    def __init__(self, waited_s: float, detail: str) -> None:
        super().__init__(detail)
        self.waited_s = waited_s
        self.detail = detail


def wait_for_address(
    path: Path, timeout_s: float, check_stop: Callable[[], None], log
) -> address.LearnerAddress:
    """The learner the file names, once it names one; ``check_stop`` is called between
    reads (it raises to stop waiting). Logs ``waiting_for_learner_file`` once."""
    start, problem, logged = time.monotonic(), "the file does not exist", False
    while True:
        check_stop()
        try:
            found = address.read(path)
            if found is not None:
                return found
            problem = "the file does not exist"
        except (OSError, address.AddressFileError) as exc:
            problem = str(exc)
        waited = time.monotonic() - start
        if waited > timeout_s:
            raise LearnerNotFound(round(waited, 1), problem)
        if not logged:
            log.info("waiting_for_learner_file", learner_file=str(path), detail=problem)
            logged = True
        time.sleep(POLL_S)


def moved(path: Path, endpoint: str) -> bool:
    """Does the file now name another endpoint than ``endpoint``, or none (the learner
    exited)? A file being rewritten or damaged is not a move: keep trying where we are."""
    try:
        found = address.read(path)
    except (OSError, address.AddressFileError):
        return False
    return found is None or found.router != endpoint
