"""What ``python -m launch.ray`` runs on the Ray cluster's nodes (launch/ray.py is the
driver): a host per program, a Ray actor that starts the ordinary ``python -m learner``
or ``python -m actor`` process, passes a stop on as SIGTERM, and tells Ray whether its
exit is one a restart can cure. Keys arrive as bytes and are written 0600 into a
private directory of the node.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import ray

from actor.respawn import FINAL_CODES
from core.procs import die_with_parent
from protocol import address

ADDRESS_EVERY_S = 1.0


def files_of(directory: Path) -> dict[str, bytes]:
    """A key directory as {relative path: bytes}, to ship to a host."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _home(name: str) -> Path:
    """This host's private directory on its node: the same one after Ray restarts the
    host (so copies of the keys do not pile up), emptied first."""
    job = ray.get_runtime_context().get_job_id()
    home = Path(tempfile.gettempdir()) / f"zmq-a3c-{job}-{name}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(mode=0o700)
    return home


def _unpack(files: dict[str, bytes], into: Path) -> Path:
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    for rel, data in files.items():
        path = into / rel
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return into


class _Process:
    """The one child process a host runs: started, waited for (a ``stop()`` from another
    thread of the host passes SIGTERM on), and what its exit means to Ray."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stopping = False

    def run(self, argv: list[str], extra_env: dict[str, str]) -> int:
        if self.stopping:  # stopped before it started (a restarted host): nothing to run
            return 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra_env}
        self.proc = subprocess.Popen(argv, env=env, preexec_fn=die_with_parent())  # noqa: PLW1509
        code = self.proc.wait()
        if code in FINAL_CODES or self.stopping:
            return code
        # A crash: let Ray restart this host (and retry run(), starting the process anew).
        print(f"launch.ray: {argv[2]} exited {code}; Ray restarts it", file=sys.stderr, flush=True)
        os._exit(1)

    def stop(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """The run is over: SIGKILL the process if it outlived its SIGTERM. Its only tie
        to the host is a SIGTERM when the host dies, which it ignored once already, and
        Ray does not reap the children of a worker it kills."""
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@ray.remote(max_task_retries=-1, max_concurrency=4)
class LearnerHost:
    """Runs the learner; ``address()`` says where it listens (None while it starts or
    after it ended)."""

    def __init__(self, keys: dict[str, bytes] | None) -> None:
        self.home = _home("learner")
        self.keys = _unpack(keys, self.home / "keys") if keys else None
        self.addr = self.home / "learner.addr"
        self.process = _Process()
        self.started = 0

    def run(self, flags: list[str], bind_host: str, root: str) -> int:
        self.started += 1
        argv = [sys.executable, "-m", "learner", *flags, "--actors", "0", "--port", "0"]
        argv += ["--host", bind_host, "--address-file", str(self.addr)]
        argv += ["--advertise-host", ray.util.get_node_ip_address(), "--resume"]
        argv += ["--keys", str(self.keys)] if self.keys else ["--insecure"]
        return self.process.run(argv, {"PYTHONPATH": root})

    def forget(self) -> None:
        """The run is over: its process gone, this host's keys and files off its node."""
        self.process.kill()
        shutil.rmtree(self.home, ignore_errors=True)

    def address(self) -> dict | None:
        try:
            found = address.read(self.addr)
        except (OSError, address.AddressFileError):
            return None
        return found.to_dict() if found else None

    def stop(self) -> None:
        self.process.stop()


@ray.remote(max_task_retries=-1, max_concurrency=2)
class ActorHost:
    """Runs one actor, which reads the learner's address from a file this host keeps
    up to date from the learner's host."""

    def __init__(self, name: str, keys: dict[str, bytes] | None) -> None:
        self.name = name
        self.home = _home(name)
        self.keys = _unpack(keys, self.home / "keys") if keys else None
        self.addr = self.home / "learner.addr"
        self.process = _Process()

    def run(self, learner, flags: list[str], root: str) -> int:
        argv = [sys.executable, "-m", "actor", *flags, "--actor-id", self.name]
        # Ray may take long to bring a learner back (another node, a GPU to free):
        # the actor waits for it rather than give up.
        argv += ["--learner-file", str(self.addr), "--learner-file-timeout", "86400"]
        argv += ["--keys", str(self.keys)] if self.keys else ["--insecure"]
        follower = _Follower(learner, self.addr)
        follower.start()
        try:
            return self.process.run(argv, {"PYTHONPATH": root})
        finally:
            follower.stop()

    def stop(self) -> None:
        self.process.stop()

    def forget(self) -> None:
        self.process.kill()
        shutil.rmtree(self.home, ignore_errors=True)


class _Follower:
    """A thread of an ActorHost: copies the learner host's address into the actor's
    ``--learner-file`` (and removes it while there is none)."""

    def __init__(self, learner, path: Path) -> None:
        import threading

        self.learner, self.path = learner, path
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="learner-address", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        current = None
        while not self.done.is_set():
            try:
                found = ray.get(self.learner.address.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - the learner's host is restarting: try again
                found = None
            if found != current:
                if found is None:
                    self.path.unlink(missing_ok=True)
                else:
                    where = address.LearnerAddress(
                        **{k: v for k, v in found.items() if k != "format"}
                    )
                    address.write(self.path, where)
                current = found
            self.done.wait(ADDRESS_EVERY_S)
