"""Real processes for integration tests: start a learner or an actor, read their JSON
logs, wait for events with a bound, and always stop what was started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Proc:
    def __init__(self, args: list[str], log_path: Path, stderr_path: Path) -> None:
        self.log_path = log_path
        self.stderr_path = stderr_path
        self._err = open(stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        self.popen = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._err, env=env
        )

    def events(self, name: str | None = None) -> list[dict]:
        if not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written right now
            if name is None or ev.get("event") == name:
                out.append(ev)
        return out

    def wait_for(
        self, name: str, timeout: float = 60.0, where: Callable[[dict], bool] = lambda e: True
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
            f"{self.log_path.name}: no {name!r} within {timeout}s\n"
            + self.stderr_path.read_text()[-3000:]
        )

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.popen.poll() is None:
                self.popen.send_signal(sig)
                try:
                    self.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    continue
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.kill()
            self.popen.wait(timeout=5)
        self._err.close()


def start_learner(run_dir: Path, *args: str) -> Proc:
    run_dir.mkdir(parents=True, exist_ok=True)
    return Proc(
        ["-m", "learner", "--run-dir", str(run_dir), "--port", "0", *args],
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


def endpoint_of(learner: Proc, timeout: float = 60.0) -> str:
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
