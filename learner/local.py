"""Local actor processes for one-machine runs (``--actors N``).

Each actor is a real ``python -m actor`` process connected to the learner over
127.0.0.1, exactly like an actor on another host; nothing is shared in memory. They are
started before the learner has built its network and bound its sockets, so that their
start-up (importing torch, ~1 s each) overlaps the learner's: they wait for the address
file the learner writes once bound (``--learner-file``, the cluster launch contract),
in the run directory. The owner stops them on exit: the file withdrawn first, then the
learner's Shutdown, then SIGTERM, then SIGKILL, each with a bounded wait.

    actors.start()            # before build: the processes start and wait for the file
    actors.announce(address)  # bound: the file names the learner on 127.0.0.1
    actors.withdraw(id)       # leaving: no actor may find this learner any more
    actors.stop()
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.procs import stop_processes
from protocol import address

# Long enough for any build (a resumed Atari run, CUDA start-up); a learner that fails
# to build stops its actors itself.
WAIT_FOR_LEARNER_S = 600.0


class LocalActors:
    def __init__(
        self,
        count: int,
        run_dir: Path,
        *,
        log_level: str = "info",
        keys_dirs: list[Path] | None = None,
        insecure: bool = False,
    ) -> None:
        self.count = count
        self.run_dir = run_dir
        self.log_level = log_level
        self.keys_dirs = keys_dirs or []
        # The learner's own --insecure: it binds a non-loopback address (where it
        # announces itself to these actors too) without keys, and so do they.
        self.insecure = insecure
        self.address_file = run_dir / "local-learner.json"
        self.procs: list[subprocess.Popen] = []
        self._reported: set[int] = set()

    def start(self) -> None:
        """Start the actors; they wait for ``announce``."""
        # A previous learner's file in a resumed run directory must not be followed.
        self.address_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for i in range(self.count):
            cmd = [
                sys.executable,
                "-m",
                "actor",
                "--learner-file",
                str(self.address_file),
                "--learner-file-timeout",
                str(WAIT_FOR_LEARNER_S),
                "--actor-id",
                f"local-{i}",
                "--run-dir",
                str(self.run_dir),
                "--log-level",
                self.log_level,
            ]
            if self.keys_dirs:
                cmd += ["--keys", str(self.keys_dirs[i % len(self.keys_dirs)])]
                cmd[cmd.index("--actor-id") : cmd.index("--actor-id") + 2] = []
            elif self.insecure:
                cmd.append("--insecure")
            # Console output of local actors goes to their log file only; the learner's
            # console stays readable. stderr is kept for crashes before logging starts.
            err = open(self.run_dir / f"actor-local-{i}.stderr", "wb")  # noqa: SIM115 - owned by the child
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env))
            err.close()

    def announce(self, where: address.LearnerAddress) -> None:
        """The learner is bound: tell the waiting actors where (atomically)."""
        if self.count:
            address.write(self.address_file, where)

    def withdraw(self, learner_id: str) -> None:
        """The learner is leaving: an actor that looks now must not find it."""
        address.remove(self.address_file, learner_id)

    def any_alive(self, log=None) -> bool:
        """Whether any local actor still runs; logs each exit once."""
        alive = False
        for i, p in enumerate(self.procs):
            if p.poll() is None:
                alive = True
            elif i not in self._reported:
                self._reported.add(i)
                if log is not None:
                    log.warning(
                        "local_actor_exited",
                        actor_id=f"local-{i}",
                        code=p.returncode,
                        stderr=str(self.run_dir / f"actor-local-{i}.stderr"),
                    )
        return alive

    def stop(self, timeout_s: float = 3.0) -> None:
        """After the learner's Shutdown: up to ``timeout_s`` for the actors to exit by
        themselves, then SIGTERM, then SIGKILL, each bounded (core/procs.py)."""
        stop_processes(self.procs, timeout_s, grace_s=timeout_s)
