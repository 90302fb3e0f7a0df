"""Socket options and endpoints both roles use.

Every option is set before bind/connect: ZeroMQ silently ignores MAXMSGSIZE set on a
listener after bind. Linger is bounded everywhere so no process hangs on exit with an
undeliverable message.

ZMTP heartbeats (HEARTBEAT_IVL) are deliberately off. With a small receive high-water
mark, a heartbeat timeout on a connection whose input is stalled by backpressure
aborts the whole process in libzmq 4.3.x ("Assertion failed: !_io_error
(stream_engine_base.cpp)", zeromq/libzmq#3937, #4364, #4767); our soak test hit it in
an actor. Liveness is tracked by the application instead (Heartbeat/Pong messages,
learner_lost / actor_lost), and every queue toward a frozen peer is bounded by its
high-water mark, so a frozen peer costs bounded memory, not a crash.

The learner binds (the stable side) a ROUTER for actor traffic and a PUB for weights;
actors connect (the moving side) a DEALER and a SUB.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq

LINGER_MS = 200
# The largest single frame a learner or actor accepts. Dropped by libzmq before Python
# ever sees it; the sender is disconnected.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 1000


class EndpointError(ValueError):
    pass


def parse_endpoint(address: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` or ``HOST:PORT`` -> (host, port)."""
    rest = address[len("tcp://") :] if address.startswith("tcp://") else address
    if "://" in rest:
        raise EndpointError(f"only tcp:// endpoints are supported, got {address!r}")
    host, sep, port_s = rest.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise EndpointError(f"expected tcp://HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port_s)


def tcp(host: str, port: int) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def new_context() -> zmq.Context:
    ctx = zmq.Context()
    ctx.linger = LINGER_MS
    return ctx


@dataclass(frozen=True)
class CurveKeys:
    """A CurveZMQ key pair, plus the server's public key on the client side."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None


def _curve_server(sock: zmq.Socket, keys: CurveKeys | None) -> None:
    if keys is not None:
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_server = True


def _curve_client(sock: zmq.Socket, keys: CurveKeys | None) -> None:
    if keys is not None:
        if keys.server_public is None:
            raise ValueError("a CURVE client needs the server's public key")
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_serverkey = keys.server_public


def bind_router(
    ctx: zmq.Context,
    host: str,
    port: int,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    rcvhwm: int = 64,
    curve: CurveKeys | None = None,
) -> tuple[zmq.Socket, int]:
    """The learner's ROUTER for actor traffic; port 0 picks a free port."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.SNDHWM, 256)
    _curve_server(sock, curve)
    return sock, _bind(sock, host, port)


def bind_pub(
    ctx: zmq.Context, host: str, port: int, *, sndhwm: int = 8, curve: CurveKeys | None = None
) -> tuple[zmq.Socket, int]:
    """The learner's weights PUB. A small SNDHWM: a subscriber that does not read loses
    old weights (PUB drops at the mark) instead of growing the learner's memory."""
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    # Bound what a frozen subscriber can pin in the kernel's socket buffers too.
    sock.setsockopt(zmq.SNDBUF, 4 * 1024 * 1024)
    # A PUB accepts no data from subscribers, but bound what it would read all the same.
    sock.setsockopt(zmq.MAXMSGSIZE, 1024)
    _curve_server(sock, curve)
    return sock, _bind(sock, host, port)


def _bind(sock: zmq.Socket, host: str, port: int) -> int:
    if port == 0:
        return sock.bind_to_random_port(tcp(host, 0).rsplit(":", 1)[0])
    sock.bind(tcp(host, port))
    return port


def connect_dealer(
    ctx: zmq.Context,
    endpoint: str,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    sndhwm: int = 4,
    curve: CurveKeys | None = None,
    monitor_events: int = 0,
) -> tuple[zmq.Socket, zmq.Socket | None]:
    """The actor's DEALER. IMMEDIATE: nothing is queued for a learner that is not
    connected, so a restarted learner never receives a burst of stale rollouts; the
    small SNDHWM turns a slow learner into backpressure the actor can see. With
    ``monitor_events`` a monitor socket is attached before connecting (so no handshake
    event is missed) and returned beside the DEALER."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RCVHWM, 64)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    _curve_client(sock, curve)
    monitor = sock.get_monitor_socket(monitor_events) if monitor_events else None
    sock.connect(endpoint)
    return sock, monitor


def connect_sub(
    ctx: zmq.Context,
    endpoint: str,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    curve: CurveKeys | None = None,
) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    # Keep only a few weight messages; the actor always loads the newest it has.
    sock.setsockopt(zmq.RCVHWM, 4)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    _curve_client(sock, curve)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    return sock


# --- CurveZMQ key files -------------------------------------------------------------


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


def read_public(path: Path) -> bytes:
    import zmq.auth

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
