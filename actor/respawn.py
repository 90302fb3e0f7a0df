"""``python -m actor --respawn``: keep one actor alive under a scheduler that never
restarts a single task (Slurm starts every task of a step once; a dead task stays dead).

    supervisor (this module, no torch)          child: python -m actor (same flags,
      start child ─────────────────────────────▶        --respawn off, a fixed --actor-id)
      child died by a crash or a signal?  ──▶ wait the back-off, start it again
      child exited 0 / 2 / 3 / 5?        ──▶ exit with its code (nothing to retry)
      more than --max-restarts restarts within --restart-window-s ──▶ give up (crash loop)
      SIGTERM / SIGINT                   ──▶ pass it on, wait (bounded), exit with its code

The child keeps the actor id (given, the key's name, or HOSTNAME-PID of this supervisor),
so the learner logs ``actor_restarted`` for a known actor (a new incarnation), not a new
stranger; each restart adds to ``--seed-offset`` so a restarted actor does not replay the
episodes it played before. The back-off starts at 0.5 s and doubles to 8 s for a child
that keeps dying young; one that ran ``HEALTHY_S`` starts over from 0.5 s.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from actor.config import ActorConfig
from core.procs import die_with_parent

# Exit codes a restart cannot cure: the learner shut the run down (0), a usage or
# protocol error (2), the learner refused our key (3), no learner to be found (5).
FINAL_CODES = frozenset({0, 2, 3, 5})
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
HEALTHY_S = 30.0  # a child that lived this long was not crash-looping
STOP_WAIT_S = 15.0  # after passing SIGTERM on, before SIGKILL
SEED_STRIDE = 100_003  # per restart, above any actor's env count
OWN_FLAGS = frozenset({"respawn", "max_restarts", "restart_window_s"})


def child_argv(cfg: ActorConfig, restarts: int) -> list[str]:
    """The child's command line: every setting of ``cfg`` as a flag, but the
    supervisor's own, and the seed offset moved on by ``restarts``."""
    argv = [sys.executable, "-m", "actor"]
    for f in dataclasses.fields(cfg):
        if f.name in OWN_FLAGS:
            continue
        value = getattr(cfg, f.name)
        if f.name == "seed_offset":
            value += restarts * SEED_STRIDE
        if isinstance(value, bool):
            value = "true" if value else "false"
        argv += [f"--{f.name.replace('_', '-')}", str(value)]
    return argv


def with_stable_id(cfg: ActorConfig) -> ActorConfig:
    """Fix the actor id once, in the supervisor: a restarted child must not name itself
    after its own PID (with keys the key's name is the id already)."""
    if cfg.actor_id:
        return cfg
    return dataclasses.replace(cfg, actor_id=f"{socket.gethostname()}-{os.getpid()}")


class Supervisor:
    def __init__(
        self,
        cfg: ActorConfig,
        log,
        stop_requested: Callable[[], bool],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = with_stable_id(cfg)
        self.log = log
        self.stop_requested = stop_requested
        self.clock = clock
        self.sleep = sleep
        self.restarts = 0
        self.recent: collections.deque[float] = collections.deque()  # restart times

    def run(self) -> int:
        backoff = BACKOFF_FIRST_S
        while True:
            started = self.clock()
            code = self._run_child()
            lived = self.clock() - started
            if self.stop_requested():
                self.log.info("respawn_stopped", code=code)
                # Asked to stop, it stopped: a child that the signal ended before it
                # could handle it (still importing) did what was asked too.
                return 0 if code in (-signal.SIGTERM, -signal.SIGINT) else _shell_code(code)
            if code in FINAL_CODES:
                self.log.info("respawn_done", code=code, restarts=self.restarts)
                return code
            now = self.clock()
            while self.recent and now - self.recent[0] > self.cfg.restart_window_s:
                self.recent.popleft()
            if len(self.recent) >= self.cfg.max_restarts:
                self.log.error(
                    "actor_crash_loop",
                    code=code,
                    restarts=len(self.recent),
                    window_s=self.cfg.restart_window_s,
                    detail="giving up: the actor keeps dying; see its log lines above",
                )
                return _shell_code(code)
            backoff = BACKOFF_FIRST_S if lived >= HEALTHY_S else backoff
            self.log.warning(
                "actor_died",
                code=code,
                signal=signal.Signals(-code).name if code < 0 else None,
                lived_s=round(lived, 2),
                restart_in_s=backoff,
                restarts=self.restarts,
            )
            if self._wait(backoff):
                return _shell_code(code)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            self.restarts += 1
            self.recent.append(self.clock())

    def _run_child(self) -> int:
        argv = child_argv(self.cfg, self.restarts)
        proc = subprocess.Popen(argv, preexec_fn=die_with_parent())  # noqa: PLW1509 - prctl only
        self.log.info("actor_started", pid=proc.pid, restarts=self.restarts)
        passed_on = None
        while True:
            try:
                return proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            if self.stop_requested():
                if passed_on is None:
                    proc.send_signal(signal.SIGTERM)
                    passed_on = self.clock()
                elif self.clock() - passed_on > STOP_WAIT_S:
                    proc.kill()

    def _wait(self, seconds: float) -> bool:
        """The back-off, cut short by a stop request (True then)."""
        deadline = self.clock() + seconds
        while self.clock() < deadline:
            if self.stop_requested():
                return True
            self.sleep(min(0.05, max(0.0, deadline - self.clock())))
        return self.stop_requested()


def _shell_code(code: int) -> int:
    """A child killed by a signal exits as a shell reports it: 128 + the signal."""
    return 128 - code if code < 0 else code
