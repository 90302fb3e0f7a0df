"""Two hosts on one machine for the tests that need a real network boundary: Linux
network namespaces joined by a veth pair (``two_hosts``, conftest's ``net`` fixture),
and processes started inside one (``NsProc``). Needs root and iproute2's ``ip``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.procs import Proc

IP = shutil.which("ip") or "/usr/sbin/ip"
_serial = itertools.count()


@dataclass(frozen=True)
class Net:
    """Two namespaces, ``learner_ns`` and ``actor_ns``, joined by a veth pair."""

    learner_ns: str
    actor_ns: str
    learner_dev: str
    actor_dev: str
    learner_ip: str
    actor_ip: str

    def link(self, ns: str, dev: str, state: str) -> None:
        ip("-n", ns, "link", "set", dev, state, check=True)

    def link_stats(self, ns: str, dev: str) -> dict:
        out = ip("-n", ns, "-s", "-j", "link", "show", "dev", dev, check=True).stdout
        return json.loads(out)[0]["stats64"]


def ip(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@contextmanager
def two_hosts() -> Iterator[Net]:
    """Namespaces ``zq-<pid>-<n>-l`` (the learner's host) and ``-a`` (the actors'), a
    veth pair between them on 10.213.<x>.0/24 (x from the pid), links and ``lo`` up.
    Deleted on the way out whatever happened. Skips the test (with ``ip``'s own words)
    where namespaces cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not os.access(IP, os.X_OK):
        pytest.skip(f"no iproute2 `ip` at {IP}")
    pid, n = os.getpid(), next(_serial)
    tag = f"{pid % 100000}{n}"
    x = 1 + (pid * 7 + n) % 250
    net = Net(
        learner_ns=f"zq-{pid}-{n}-l",
        actor_ns=f"zq-{pid}-{n}-a",
        learner_dev=f"zqv{tag}l",  # interface names: at most 15 characters
        actor_dev=f"zqv{tag}a",
        learner_ip=f"10.213.{x}.1",
        actor_ip=f"10.213.{x}.2",
    )
    created: list[str] = []
    try:
        for ns in (net.learner_ns, net.actor_ns):
            done = ip("netns", "add", ns)
            if done.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {done.stderr.strip()}")
            created.append(ns)
        # Made inside the namespaces directly: nothing appears on the host's own network.
        done = ip(
            "link", "add", net.learner_dev, "netns", net.learner_ns, "type", "veth",
            "peer", "name", net.actor_dev, "netns", net.actor_ns,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot create a veth pair: {done.stderr.strip()}")
        for ns, dev, addr in (
            (net.learner_ns, net.learner_dev, net.learner_ip),
            (net.actor_ns, net.actor_dev, net.actor_ip),
        ):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev, check=True)
            ip("-n", ns, "link", "set", "lo", "up", check=True)
            ip("-n", ns, "link", "set", dev, "up", check=True)
        yield net
    finally:
        for ns in created:  # deleting a namespace deletes its end of the veth pair
            ip("netns", "del", ns)


class NsProc(Proc):
    """A ``python -m ...`` child started with ``ip netns exec NS`` (which execs it: the
    pid is Python's, so signals reach it directly). Its events are the lines its log
    got after it started (a resumed learner appends to the same learner.jsonl)."""

    def __init__(self, ns: str, args: list[str], log_path: Path, stderr_path: Path) -> None:
        super().__init__(
            args, log_path, stderr_path, prefix=[IP, "netns", "exec", ns], only_new=True
        )
