"""The launch contract with real processes on 127.0.0.1: what any cluster engine needs
from the two programs. A learner on a free port writes where it listens; actors that
start first wait for it, follow it when it restarts elsewhere, and come back (as the
same actor) when killed; bad settings fail at once with a message.
Slurm itself is exercised in tests/test_slurm.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from protocol import address
from protocol.keys import fleet_names, make_keys
from scripts.procs import HANG_S, ROOT, Proc, free_port_pair, start_actor, start_learner, stop_all
from tests.hostile import SMALL

pytestmark = pytest.mark.slow

# The fault tests' small fast run, and a bound in case a test fails to stop a learner.
FAST = [*SMALL, "--target-return", "1e9", "--max-seconds", str(HANG_S * 5)]


def file_actor(run_dir, addr, actor_id, *args) -> Proc:
    return Proc(
        [
            "-m",
            "actor",
            "--learner-file",
            str(addr),
            "--actor-id",
            actor_id,
            "--run-dir",
            str(run_dir),
            "--learner-timeout",
            "1.5",
            *args,
        ],
        run_dir / f"actor-{actor_id}.jsonl",
        run_dir / f"actor-{actor_id}.stderr",
    )


def test_actor_waits_for_the_address_file_and_follows_an_interrupted_learner(tmp_path):
    addr = tmp_path / "shared" / "learner.addr"
    args = ["--algo", "a3c", "--actors", "0", "--address-file", str(addr), *FAST]
    actor = first = second = None
    try:
        # The actor starts first, as it may under a scheduler.
        actor = file_actor(tmp_path, addr, "task-0")
        actor.wait_for("waiting_for_learner_file", HANG_S)
        first = start_learner(
            tmp_path / "a", *args, "--checkpoint-every-s", "0.5", "--signal-exit-code", "143"
        )
        listening = first.wait_for("learner_listening", HANG_S)
        written = address.read(addr)
        assert written is not None and written.learner_id == listening["learner_id"]
        assert written.router.rsplit(":", 1)[1] == listening["endpoint"].rsplit(":", 1)[1]
        located = actor.wait_for("learner_located", HANG_S)
        assert located["learner"] == written.router
        first.wait_for("actor_joined", HANG_S, where=lambda e: e["actor_id"] == "task-0")
        first.wait_for("checkpoint_saved", HANG_S, where=lambda e: e["env_steps"] > 0)
        # Stopped as a scheduler stops a pod it will replace (--signal-exit-code): the
        # learner checkpoints, removes its file, exits 143 and does not send the actors
        # away; its successor binds another free port and writes the file again.
        first.signal(signal.SIGTERM)
        assert first.wait_exit(HANG_S) == 143
        assert not addr.exists()
        actor.wait_for("learner_lost", HANG_S)
        assert actor.popen.poll() is None and not actor.events("learner_shutdown")
        (tmp_path / "b").mkdir()
        (tmp_path / "a" / "checkpoints").rename(tmp_path / "b" / "checkpoints")
        second = start_learner(tmp_path / "b", *args, "--resume")
        second.wait_for("resumed", HANG_S)
        moved = second.wait_for("address_written", HANG_S)
        assert moved["router"] != written.router
        actor.wait_for("learner_located", HANG_S, where=lambda e: e["learner"] == moved["router"])
        second.wait_for("actor_joined", HANG_S, where=lambda e: e["actor_id"] == "task-0")
        second.wait_for("progress", HANG_S, where=lambda e: e["env_steps"] > 0)
        second.signal(signal.SIGTERM)
        assert second.wait_exit(HANG_S) == 0
        assert not addr.exists(), "a learner that exits removes its address file"
        assert actor.wait_exit(HANG_S) == 0
    finally:
        stop_all(actor, first, second)


def test_a_killed_actor_comes_back_as_the_same_actor(tmp_path):
    addr = tmp_path / "learner.addr"
    learner = start_learner(
        tmp_path, "--algo", "a3c", "--actors", "0", "--address-file", str(addr), *FAST
    )
    actor = None
    try:
        actor = file_actor(tmp_path, addr, "task-1", "--respawn")
        joined = learner.wait_for("actor_joined", HANG_S, where=lambda e: e["actor_id"] == "task-1")
        # Kill the actor itself (the supervisor's child), as the OOM killer would.
        subprocess.run(["kill", "-KILL", str(joined["pid"])], check=True)
        restarted = learner.wait_for("actor_restarted", HANG_S)
        assert restarted["actor_id"] == "task-1"
        assert restarted["old_incarnation"] == joined["incarnation"]
        died = actor.wait_for("actor_died", HANG_S)
        assert died["signal"] == "SIGKILL" and died["process"] == "supervisor"
        again = learner.wait_for(
            "actor_joined",
            HANG_S,
            where=lambda e: e["actor_id"] == "task-1" and e["pid"] != joined["pid"],
        )
        assert (
            again["seed"] == joined["seed"]
        )  # the learner's seed for the id; the actor offsets it
        learner.signal(signal.SIGTERM)
        assert learner.wait_exit(HANG_S) == 0
        assert actor.wait_exit(HANG_S) == 0, "the supervisor exits 0 on the learner's Shutdown"
        assert actor.events("respawn_done")[-1]["code"] == 0
    finally:
        stop_all(actor, learner)


def test_no_learner_in_the_file_within_the_timeout_is_exit_5(tmp_path):
    actor = file_actor(
        tmp_path, tmp_path / "never.addr", "lonely", "--learner-file-timeout", "1", "--respawn"
    )
    try:
        assert actor.wait_exit(HANG_S) == 5, "not restarted: no learner to be found"
        (gone,) = actor.events("learner_not_found")
        assert gone["learner_file"].endswith("never.addr") and "does not exist" in gone["detail"]
        assert len(actor.events("actor_started")) == 1
    finally:
        actor.stop()


def test_an_actor_that_no_learner_answers_gives_up_after_its_join_timeout(tmp_path):
    port = free_port_pair()  # nothing listens there
    actor = start_actor(tmp_path, f"tcp://127.0.0.1:{port}", "alone", "--join-timeout", "1")
    try:
        assert actor.wait_exit(HANG_S) == 5
        (gone,) = actor.events("learner_not_found")
        assert "--join-timeout" in gone["detail"]
        assert actor.events("actor_exit")[-1]["code"] == 5
    finally:
        actor.stop()


@pytest.mark.parametrize("role", ["learner", "actor"])
def test_a_run_directory_that_cannot_be_written_fails_at_once_with_its_name(tmp_path, role):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "run"  # under a regular file: nobody, root included, can create it
    extra = ["--actors", "0"] if role == "learner" else ["--learner", "tcp://127.0.0.1:1"]
    done = subprocess.run(
        [sys.executable, "-m", role, "--run-dir", str(bad), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert done.returncode == 2
    assert str(bad) in done.stderr and "cannot write" in done.stderr


def test_fleet_keys_are_one_command_idempotent_and_private(tmp_path):
    out = tmp_path / "keys"
    make_keys(out, fleet_names(3), keep=True)
    secret = (out / "task-2" / "task-2.key_secret").read_bytes()
    make_keys(out, fleet_names(5), keep=True)  # a resubmitted job with more actors
    assert (out / "task-2" / "task-2.key_secret").read_bytes() == secret, "existing keys kept"
    assert sorted(p.name for p in (out / "learner" / "authorized").iterdir()) == [
        f"task-{k}.key" for k in range(5)
    ]
    for k in range(5):
        assert (out / f"task-{k}" / f"task-{k}.key_secret").stat().st_mode & 0o077 == 0
        assert (out / f"task-{k}").stat().st_mode & 0o077 == 0
    from learner.auth import load_learner_keys
    from protocol.keys import load_actor_keys

    _, authorized = load_learner_keys(out / "learner")
    name, keys = load_actor_keys(out / "task-4")
    assert name == "task-4" and authorized[keys.public] == "task-4"
    assert json.dumps(sorted(authorized.values())) == json.dumps([f"task-{k}" for k in range(5)])


class _FakeServer:
    learner_id, port, pub_port = "L", 1, 2

    def __init__(self, run):
        self.run, self.told = run, []

    def shutdown(self, reason, *, tell_actors=True):
        self.told.append((reason, tell_actors))


def _crash():
    raise RuntimeError("a bug in an update")


@pytest.mark.parametrize(
    "outcome, exit_code, tell",
    [("crashed", 0, False), ("signal", 143, False), ("signal", 0, True), ("solved", 143, True)],
)
def test_actors_are_sent_away_only_when_the_run_is_over(outcome, exit_code, tell, tmp_path):
    """learner.__main__.run with the server faked: after a crash, or a stop that a new
    learner will follow (--signal-exit-code), the actors are not told to leave (they
    re-join the next learner); after a finished run they are."""
    from types import SimpleNamespace

    from learner.__main__ import run
    from learner.local import LocalActors
    from learner.outcome import Outcome

    server = _FakeServer(
        _crash if outcome == "crashed" else lambda: Outcome(outcome == "solved", outcome)
    )
    cfg = SimpleNamespace(
        host="127.0.0.1", advertise_host="", address_file="", signal_exit_code=exit_code
    )
    parts = SimpleNamespace(
        server=server,
        cfg=cfg,
        actors=LocalActors(0, tmp_path),
        wall_s=lambda: 0.0,
        close=lambda: None,
        save_checkpoint=lambda wall_s: None,
    )
    log = SimpleNamespace(
        exception=lambda *a, **k: None, info=lambda *a, **k: None, error=lambda *a, **k: None
    )
    if outcome == "crashed":
        with pytest.raises(RuntimeError):
            run(parts, log, lambda: False)
    else:
        run(parts, log, lambda: False)
    assert server.told == [(outcome, tell)]
