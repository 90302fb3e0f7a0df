"""CurveZMQ key files: one pair per file in ``zmq.auth``'s certificate format, secrets
mode 0600, and the two layouts the programs read (``make keys`` / scripts/keys.py and
the launchers write them):

    <dir>/learner/learner.key, learner.key_secret, authorized/NAME.key   --keys of the learner
    <dir>/NAME/learner.key, NAME.key, NAME.key_secret                    --keys of actor NAME

A fleet (a cluster job's actors) is the same layout with NAME = task-0 ... task-N-1,
made by ``make_keys(dir, fleet_names(N), keep=True)`` in one call and idempotent.
No sockets here; protocol/sockets.py uses the loaded keys.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import zmq

from protocol.sockets import CurveKeys

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FLEET_PREFIX = "task-"


def write_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (public) and ``name.key_secret`` (mode 0600) into
    ``directory``, in the format of ``zmq.auth``'s certificate files."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    pub_path, sec_path = directory / f"{name}.key", directory / f"{name}.key_secret"
    pub_path.write_text(_cert(public, None))
    # Create the secret file 0600 from the start, never world-readable even briefly.
    fd = os.open(sec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as f:
        f.write(_cert(public, secret))
    os.chmod(sec_path, stat.S_IRUSR | stat.S_IWUSR)
    return pub_path, sec_path


def _cert(public: bytes, secret: bytes | None) -> str:
    lines = ["metadata", "curve", f'    public-key = "{public.decode()}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def check_not_writable_by_others(path: Path) -> None:
    """A public key that says who may connect (``authorized/*.key``, an actor's
    ``learner.key``) and the directory holding it: whoever can write them can swap in
    a key of their own. Refuse world-writable ones (group-writable is left to the
    site's policy: umask 002 with a private group per user is common)."""
    for p in (path.parent, path):
        mode = p.stat().st_mode
        if mode & stat.S_IWOTH:
            raise PermissionError(
                f"{p} is writable by anyone (mode {oct(mode & 0o777)}): anyone could put "
                "their own key there; chmod o-w it"
            )


def read_public(path: Path) -> bytes:
    import zmq.auth

    check_not_writable_by_others(path)
    public, _ = zmq.auth.load_certificate(str(path))
    return public


def read_keypair(path: Path) -> tuple[bytes, bytes]:
    """The key pair in a ``*.key_secret`` file; refuses a secret others can read."""
    import zmq.auth

    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(
            f"{path} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it"
        )
    public, secret = zmq.auth.load_certificate(str(path))
    if secret is None:
        raise ValueError(f"{path} holds no secret key")
    return public, secret


def load_actor_keys(directory: Path) -> tuple[str, CurveKeys]:
    """An actor's key directory (made by ``make keys``): ``learner.key`` (the learner's
    public key) and exactly one ``NAME.key_secret`` (this actor's pair). Returns
    (NAME, keys); NAME is the identity the learner knows this key by."""
    secrets = sorted(p for p in directory.glob("*.key_secret") if p.name != "learner.key_secret")
    if len(secrets) != 1:
        raise ValueError(
            f"{directory} must hold exactly one actor *.key_secret, found {len(secrets)}"
        )
    server = directory / "learner.key"
    if not server.is_file():
        raise ValueError(f"{directory} lacks learner.key (the learner's public key)")
    public, secret = read_keypair(secrets[0])
    return secrets[0].name[: -len(".key_secret")], CurveKeys(public, secret, read_public(server))


def fleet_names(count: int, prefix: str = FLEET_PREFIX) -> list[str]:
    """The actor names of a fleet of ``count``: task K is ``task-K``."""
    return [f"{prefix}{k}" for k in range(count)]


def make_keys(out: Path, actors: list[str], add: bool = False, keep: bool = False) -> None:
    """Write the learner's pair (unless there) and a pair per actor into ``out``.
    ``add``: the learner's keys may exist already; ``keep``: so may actors' (each
    actor's directory and its authorisation are made only where missing)."""
    for name in actors:
        if not NAME.match(name) or name == "learner":
            raise ValueError(
                f"bad actor name {name!r}: letters, digits, '.', '_', '-'; not 'learner'"
            )
    learner_dir = out / "learner"
    if (learner_dir / "learner.key_secret").exists():
        if not (add or keep):
            raise FileExistsError(f"{learner_dir} exists; pass --add to add actors to it")
    else:
        out.mkdir(parents=True, mode=0o700, exist_ok=True)
        learner_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        write_keypair(learner_dir, "learner")
    (learner_dir / "authorized").mkdir(mode=0o700, exist_ok=True)
    for name in actors:
        actor_dir = out / name
        complete = (actor_dir / f"{name}.key_secret").exists() and (
            learner_dir / "authorized" / f"{name}.key"
        ).exists()
        if keep and complete:
            continue
        if actor_dir.exists() and not keep:
            raise FileExistsError(f"{actor_dir} exists")
        if keep and actor_dir.exists():  # half-written by a job that died: start it over
            shutil.rmtree(actor_dir)
        actor_dir.mkdir(parents=True, mode=0o700)
        public, _ = write_keypair(actor_dir, name)
        shutil.copyfile(learner_dir / "learner.key", actor_dir / "learner.key")
        shutil.copyfile(public, learner_dir / "authorized" / f"{name}.key")


def secret_files(out: Path, actors: list[str]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The keys in ``out`` (made by ``make_keys``) as two flat sets of files, for two
    secrets of a cluster (Kubernetes Secrets hold flat names): the learner's (its pair
    and every actor's public key, under ``authorized.NAME.key``) and the actors' (the
    learner's public key and every actor's pair). No actor gets the learner's secret."""
    learner = {
        "learner.key": (out / "learner" / "learner.key").read_bytes(),
        "learner.key_secret": (out / "learner" / "learner.key_secret").read_bytes(),
    }
    fleet = {"learner.key": learner["learner.key"]}
    for name in actors:
        learner[f"authorized.{name}.key"] = (
            out / "learner" / "authorized" / f"{name}.key"
        ).read_bytes()
        for suffix in (".key", ".key_secret"):
            fleet[name + suffix] = (out / name / (name + suffix)).read_bytes()
    return learner, fleet
