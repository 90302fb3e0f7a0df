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

import ipaddress
import socket
from dataclasses import dataclass

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


def _this_host_address(address: str) -> bool:
    """A loopback address, the unspecified one (connecting to 0.0.0.0 or :: reaches this
    machine), or an IPv4-mapped loopback."""
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or ip.is_unspecified or (mapped is not None and mapped.is_loopback)


def reaches_only_this_host(host: str) -> bool:
    """Whether connecting to ``host`` stays on this machine: an address of this host
    (``_this_host_address``), or a name every address of which is one (``localhost``; a
    Debian host's own name, which maps to 127.0.1.1). Never a ZeroMQ ``source;dest``
    pair (``127.0.0.1;10.0.0.5`` connects to the second), and a name that merely starts
    with ``127.`` is resolved like any other; a name that does not resolve is not."""
    if ";" in host or not host:
        return False
    try:
        return _this_host_address(host)
    except ValueError:  # a name, not an address
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(_this_host_address(str(info[4][0])) for info in found)


def plaintext_refusal(endpoint: str) -> str | None:
    """Why an actor without keys must not follow ``endpoint`` unencrypted (None when
    it stays on this host): what it would send and believe, and the two ways on."""
    host, _ = parse_endpoint(endpoint)
    if reaches_only_this_host(host):
        return None
    return (
        f"the learner at {endpoint} is not on this host and no --keys were given: "
        "rollouts and weights would cross the network unencrypted, and whoever answers "
        "at that address would be taken for the learner. Give --keys DIR (make keys; "
        "scripts/keys.py --fleet N), or --insecure on a network you trust"
    )


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
    """The learner's weights PUB. A small SNDHWM: a subscriber that does not read
    cannot grow the learner's memory. What it loses at the mark are the *newest*
    weights (ZeroMQ keeps what is queued and drops what comes after), so actors do not
    rely on the broadcast alone: one that finds itself behind the version the learner
    reports asks for the weights over its DEALER (actor/client.py)."""
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
