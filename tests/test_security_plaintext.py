"""An actor without keys stays on its own host unless told --insecure: it does not send
rollouts in the clear to, nor take weights from, whatever answers at another host's
address. The learner's side of the same rule (no non-loopback bind without keys or
--insecure) is in tests/test_security_curve.py.

The host rule is checked on names and addresses; the actor's refusal on real processes
(a --learner given on the command line, and one read from a --learner-file); and the
whole rule across a real network boundary: two network namespaces joined by a veth
pair (tests/netns.py), a learner bound to its veth address with --insecure, one actor
without keys refused before it sends anything, one with --insecure trained from.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from protocol import address
from protocol.sockets import plaintext_refusal, reaches_only_this_host
from scripts.procs import HANG_S, ROOT, Proc, python_path
from tests.hostile import SMALL
from tests.netns import NsProc

NOT_HERE = "10.213.255.7"  # an address no test machine has: a learner elsewhere


def test_only_names_and_addresses_of_this_host_count_as_this_host():
    for here in ("127.0.0.1", "127.3.4.5", "localhost", "::1", "0.0.0.0", "::ffff:127.0.0.1"):
        assert reaches_only_this_host(here), here
    for elsewhere in (NOT_HERE, "192.168.1.10", "2001:db8::1", "name-that.does-not.resolve"):
        assert not reaches_only_this_host(elsewhere), elsewhere
    # ZeroMQ's source;destination form connects to the destination; a name that only
    # looks like a loopback address is resolved (and here does not resolve).
    assert not reaches_only_this_host(f"127.0.0.1:0;{NOT_HERE}")
    assert not reaches_only_this_host("127.evil.invalid")
    assert plaintext_refusal(f"tcp://127.0.0.1:0;{NOT_HERE}:5555") is not None
    assert plaintext_refusal("tcp://127.0.0.1:5555") is None
    assert plaintext_refusal("tcp://[::1]:5555") is None
    why = plaintext_refusal(f"tcp://{NOT_HERE}:5555")
    assert why and "--keys" in why and "--insecure" in why and NOT_HERE in why


def actor(*args: str, timeout: float = HANG_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "actor", "--actor-id", "plain", *args],
        cwd=ROOT,
        env={"PYTHONPATH": python_path(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_an_actor_without_keys_refuses_a_learner_on_another_host(tmp_path):
    done = actor("--learner", f"tcp://{NOT_HERE}:5555", "--run-dir", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "not on this host" in done.stderr and "--insecure" in done.stderr
    assert not list(tmp_path.glob("actor-*.jsonl")), "refused before it started"


def test_insecure_lets_an_actor_without_keys_try_a_learner_elsewhere(tmp_path):
    # Nothing answers there: the actor tries (and warns), then gives up on its join bound.
    done = actor(
        *("--learner", f"tcp://{NOT_HERE}:5555", "--insecure", "--join-timeout", "1"),
        *("--run-dir", str(tmp_path)),
    )
    assert done.returncode == 5, done.stderr
    log = (tmp_path / "actor-plain.jsonl").read_text()
    assert '"insecure_connect"' in log and '"joining"' in log


def test_an_address_file_naming_another_host_is_refused_without_keys(tmp_path):
    where = address.LearnerAddress(
        router=f"tcp://{NOT_HERE}:5555",
        pub=f"tcp://{NOT_HERE}:5556",
        learner_id="elsewhere",
        pid=1,
        host="elsewhere",
    )
    address.write(tmp_path / "learner.addr", where)
    done = actor("--learner-file", str(tmp_path / "learner.addr"), "--run-dir", str(tmp_path))
    assert done.returncode == 2, done.stderr
    log = (tmp_path / "actor-plain.jsonl").read_text()
    assert '"plaintext_refused"' in log and '"joining"' not in log


# --- across a real network boundary ----------------------------------------------------


@pytest.mark.slow
def test_across_hosts_without_keys_only_an_insecure_actor_joins_and_is_trained_from(tmp_path, net):
    learner = NsProc(
        net.learner_ns,
        [
            *("-m", "learner", "--run-dir", str(tmp_path), "--host", net.learner_ip),
            *("--port", "0", "--insecure", "--algo", "a3c", "--actors", "0", *SMALL),
            *("--target-return", "1e9", "--max-seconds", "120"),
        ],
        tmp_path / "learner.jsonl",
        tmp_path / "learner.stderr",
    )
    actors: list[Proc] = []
    try:
        endpoint = learner.wait_for("learner_listening", HANG_S)["endpoint"]
        assert endpoint.startswith(f"tcp://{net.learner_ip}:")
        learner.wait_for("insecure_bind", HANG_S)
        for name, extra in (("plain", []), ("trusting", ["--insecure"])):
            argv = ["-m", "actor", "--learner", endpoint, "--actor-id", name, *extra]
            argv += ["--run-dir", str(tmp_path), "--learner-timeout", "1.5"]
            log, err = tmp_path / f"actor-{name}.jsonl", tmp_path / f"actor-{name}.stderr"
            actors.append(NsProc(net.actor_ns, argv, log, err))
        plain, trusting = actors
        assert plain.wait_exit(HANG_S) == 2
        assert "not on this host" in plain.stderr_path.read_text()
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["actors"] == 1 and e["updates"] >= 10
        )
        joined = [e["actor_id"] for e in learner.events("actor_joined")]
        assert joined == ["trusting"], "the refused actor never reached the learner"
        assert trusting.events("insecure_connect")
    finally:
        for proc in (*actors, learner):
            proc.stop()
