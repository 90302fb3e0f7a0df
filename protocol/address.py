"""The address file: where a learner listens, for actors that start without knowing it.

A cluster scheduler (Slurm, Kubernetes, Ray) starts the learner and the actors at the
same time, and the learner may bind any free port (``--port 0``). Once its sockets are
bound the learner writes, atomically (a temporary file in the same directory, then a
rename), one JSON object::

    {"format": 1, "router": "tcp://HOST:PORT", "pub": "tcp://HOST:PUB_PORT",
     "learner_id": "...", "pid": 1234, "host": "node-3"}

and removes it on exit (only if the file is still its own: a newer learner may have
replaced it). HOST is an address the other hosts can reach (``--advertise-host``, or
the machine's name when the learner binds every interface). An actor given
``--learner-file PATH`` waits for it (bounded), connects to ``router``, and reads it
again whenever the learner is lost, since a restarted learner may have another port.

No sockets here; the learner writes with ``write``, the actor reads with ``read``.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from protocol.sockets import EndpointError, parse_endpoint

FORMAT = 1
MAX_BYTES = 4096  # an address file is a few hundred bytes; refuse anything that is not


class AddressFileError(ValueError):
    """The file exists but is not a usable address file (the message says why)."""


@dataclass(frozen=True)
class LearnerAddress:
    router: str  # tcp://HOST:PORT of the ROUTER actors connect their DEALER to
    pub: str  # tcp://HOST:PORT of the weights PUB
    learner_id: str
    pid: int
    host: str  # the machine the learner runs on (for people reading the file)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "router": self.router,
            "pub": self.pub,
            "learner_id": self.learner_id,
            "pid": self.pid,
            "host": self.host,
        }


def write(path: Path, address: LearnerAddress) -> None:
    """Write atomically: a reader sees the old file, no file, or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(address.to_dict(), f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove(path: Path, learner_id: str) -> bool:
    """Remove the file if it still names ``learner_id`` (a restarted learner may have
    written its own since). True when removed."""
    try:
        current = read(path)
    except (OSError, AddressFileError):
        return False
    if current is None or current.learner_id != learner_id:
        return False
    path.unlink(missing_ok=True)
    return True


def read(path: Path) -> LearnerAddress | None:
    """The address in ``path``; None while the file does not exist. Raises
    AddressFileError for a file that exists but is not an address file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(raw) > MAX_BYTES:
        raise AddressFileError(f"{path}: larger than {MAX_BYTES} bytes; not an address file")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AddressFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise AddressFileError(f"{path}: expected a JSON object")
    if data.get("format") != FORMAT:
        raise AddressFileError(
            f"{path}: address file format {data.get('format')!r}, this code reads {FORMAT}"
        )
    try:
        address = LearnerAddress(
            router=str(data["router"]),
            pub=str(data["pub"]),
            learner_id=str(data["learner_id"]),
            pid=int(data["pid"]),
            host=str(data.get("host", "")),
        )
        parse_endpoint(address.router)
        parse_endpoint(address.pub)
    except (KeyError, TypeError, ValueError, EndpointError) as exc:
        raise AddressFileError(f"{path}: {type(exc).__name__}: {exc}") from None
    return address


WILDCARDS = ("0.0.0.0", "*", "::", "")


def advertised_host(bind_host: str, advertise: str = "") -> str:
    """The host other machines should connect to: ``advertise`` when given, else the
    bind address, unless that is a wildcard (every interface), which nobody can connect
    to: then this machine's hostname (what cluster schedulers name nodes by)."""
    if advertise:
        return advertise
    if bind_host in WILDCARDS:
        return socket.gethostname()
    return bind_host
