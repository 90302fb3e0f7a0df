"""Real processes for scripts and integration tests: start a learner or an actor, read
their JSON logs, wait for events with a bound, and stop what was started for sure.

``core.procs.stop_process`` is the one way every script (and the learner) stops a
child or a child's process group; it is re-exported here. Standard library only, so a
script can import this before anything heavy.
Tests import it from here too; scripts never import from tests/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make the packages importable
    sys.path.insert(0, str(ROOT))

from core.procs import stop_process  # noqa: E402

# How long a test or script waits for a process's event before calling it a hang. A
# guard, never the thing tested: what a test asserts is the order and content of events,
# so a loaded machine (a CI run once stalled for over a minute) makes it slower, not red.
HANG_S = 120.0


def python_path() -> str:
    """The repository first, then whatever PYTHONPATH the caller had (packages may come
    from there, not from a virtual environment)."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def fresh_run_dir(path: Path) -> Path:
    """An empty run directory for one benchmark run: a rerun into the same output must
    neither read the last run's events as its own nor meet its checkpoints (a learner
    without --resume refuses a run directory that holds some)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_process(
    cmd: list[str],
    log_path: Path,
    timeout_s: float,
    stop_timeout_s: float = 10.0,
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
) -> tuple[int | None, float, str]:
    """Run ``cmd`` to the end: (exit code or None on timeout, seconds, stdout). stderr
    goes to ``log_path``. The child leads its own process group, so a timed-out (or
    Ctrl-C'd) learner is stopped with the actors it started."""
    t0 = time.perf_counter()
    # stdout to a file, not a pipe: nobody has to drain it while the child is stopped.
    with open(log_path, "wb") as err, tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_process(proc, stop_timeout_s, group=True)
            code = None
        except BaseException:  # Ctrl-C: leave no learner or actor behind
            stop_process(proc, stop_timeout_s, group=True)
            raise
        out.seek(0)
        text = out.read().decode(errors="replace")
    return code, time.perf_counter() - t0, text


def machine_load() -> str:
    """The load average and the busiest processes, for a wait that timed out: whether
    the machine was starved (and by what) or the process under test was stuck."""
    try:
        top = subprocess.run(
            ["ps", "-eo", "pcpu,rss,etimes,args", "--sort=-pcpu"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.splitlines()[1:6]
    except (OSError, subprocess.SubprocessError):
        top = []
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"load {load}; busiest (%cpu rss_kb age_s cmd): " + " | ".join(
        " ".join(t.split())[:140] for t in top
    )


class LogTail:
    """A JSON log read as it grows: each call parses only the bytes written since the
    last, so waiting on a long run's log costs the waiter (on a 2-core machine, a core
    the learner and actors need) nothing that grows with the log. A line still being
    written is held back until its newline; a line that does not parse (torn by a
    kill) is skipped. ``start``: the byte offset to read from (the file's size then,
    for a resumed learner appending to its own log)."""

    def __init__(self, path: Path, start: int = 0) -> None:
        self.path = path
        self._offset = start
        self._partial = b""
        self._events: list[dict] = []
        self._file: tuple[int, int] | None = None  # (device, inode) of the file read

    def events(self, name: str | None = None) -> list[dict]:
        if self.path.exists():
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                replaced = self._file is not None and self._file != (st.st_dev, st.st_ino)
                if replaced or st.st_size < self._offset:  # another file, or truncated
                    self._offset, self._partial, self._events = 0, b"", []
                self._file = (st.st_dev, st.st_ino)
                f.seek(self._offset)
                chunk = f.read()
            self._offset += len(chunk)
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                try:
                    ev = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(ev, dict):
                    self._events.append(ev)
        return [e for e in self._events if name is None or e.get("event") == name]


def read_events(path: Path, name: str | None = None) -> list[dict]:
    """The events (all, or those named ``name``) in a JSON log, as it is now; none
    while it does not exist. A line being written right now is left out."""
    return LogTail(path).events(name)


class Proc:
    """One ``python -m ...`` child whose JSON log lines are read back from ``log_path``."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        stderr_path: Path,
        *,
        prefix: Sequence[str] = (),
        only_new: bool = False,
        python: bool = True,
    ) -> None:
        """``prefix``: a command that execs Python (e.g. ``ip netns exec NS``);
        ``only_new``: its events are the lines the log gets after it starts (a resumed
        learner appends to the same file); ``python=False``: ``args`` is a whole command
        (a script that execs Python itself), not Python's arguments."""
        self.log_path = log_path
        self.stderr_path = stderr_path
        start = log_path.stat().st_size if only_new and log_path.exists() else 0
        self._log = LogTail(log_path, start)
        # Appended to: a process restarted under the same name (the soak's actors) must
        # not wipe the traceback its previous run left.
        self._err = open(stderr_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path()}
        self.popen = subprocess.Popen(
            [*prefix, *([sys.executable] if python else []), *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env=env,
        )

    def events(self, name: str | None = None) -> list[dict]:
        return self._log.events(name)

    def wait_for(
        self, name: str, timeout: float = HANG_S, where: Callable[[dict], bool] = lambda e: True
    ) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events(name):
                if where(ev):
                    return ev
            if self.popen.poll() is not None and not any(where(e) for e in self.events(name)):
                raise AssertionError(
                    f"{self.log_path.name}: exited {self.popen.returncode} before {name!r}\n"
                    + self.stderr_path.read_text()[-3000:]
                )
            time.sleep(0.05)
        raise AssertionError(
            f"{self.log_path.name}: no {name!r} within {timeout}s ({machine_load()})\n"
            + self.stderr_path.read_text()[-3000:]
        )

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self) -> None:
        stop_process(self.popen, 5.0)
        self._err.close()


def stop_all(*procs: Proc | None) -> None:
    """Stop each of ``procs`` that was started (a test's ``finally``)."""
    for p in procs:
        if p is not None:
            p.stop()


def start_learner(run_dir: Path, *args: str, module: tuple[str, ...] = ("learner",)) -> Proc:
    """``module``: what ``python -m`` runs, with its own arguments first (a test may
    run the learner through a wrapper of its own, e.g. tests/slow_learner.py)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return Proc(
        ["-m", *module, "--run-dir", str(run_dir), "--port", "0", *args],
        run_dir / "learner.jsonl",
        run_dir / "learner.stderr",
    )


def start_actor(run_dir: Path, endpoint: str, actor_id: str, *args: str) -> Proc:
    run_dir.mkdir(parents=True, exist_ok=True)
    return Proc(
        [
            "-m",
            "actor",
            "--learner",
            endpoint,
            "--actor-id",
            actor_id,
            "--run-dir",
            str(run_dir),
            *args,
        ],
        run_dir / f"actor-{actor_id}.jsonl",
        run_dir / f"actor-{actor_id}.stderr",
    )


def endpoint_of(learner: Proc, timeout: float = HANG_S) -> str:
    return learner.wait_for("learner_listening", timeout)["endpoint"]


def free_port_pair() -> int:
    """A port P with P and P+1 free right now (a learner binds P and P+1)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")
