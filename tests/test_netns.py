"""The learner and its actors on two Linux network namespaces joined by a veth pair, so
that the faults cross a real network boundary: a learner bound to its namespace's veth
address with CurveZMQ keys, actors in the other namespace that reach it only through
the veth, a link cut and restored under them, and a learner killed and resumed while
the actors keep running.

Needs root and iproute2's ``ip`` (CI has both); skipped, with ``ip``'s own words,
where namespaces cannot be made. The ``net`` fixture (tests/netns.py) creates the
namespaces and always deletes them; every wait is bounded and every process is stopped
in ``finally``.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from actor.client import ActorClient
from actor.config import ActorConfig
from actor.exits import Rejoin
from actor.transport import DEALER
from core.acting import build_acting
from learner.admission import admit_hello, judge_batch
from learner.registry import ActorRegistry
from protocol.keys import make_keys
from protocol.messages import Error, Experience, Hello, Weights, Welcome
from scripts.procs import HANG_S, Proc, stop_all
from tests.conftest import CARTPOLE, experience_arrays
from tests.fakes import RecordingLog
from tests.hostile import SMALL
from tests.netns import Net, NsProc

ACTORS = ("netns-a0", "netns-a1")
# Small rollouts and quick liveness (tests/hostile.py's SMALL); a sync barrier of two that
# leaves an actor behind after 2 s. An unreachable target keeps a learner up until the
# test ends it; --max-seconds bounds one the test failed to stop (it counts seconds of
# training).
LEARNER = [
    *("--algo", "a2c", "--actors", "0", "--min-actors", "2", "--barrier-timeout-s", "2"),
    *SMALL,
]
KEEP_UP = ["--target-return", "1e9", "--max-seconds", "120"]
ACTOR = ["--learner-timeout", "1.5"]


@pytest.fixture
def keys(tmp_path) -> Path:
    out = tmp_path / "keys"
    make_keys(out, list(ACTORS))
    return out


# --- processes inside a namespace --------------------------------------------------------


def start_learner(
    net: Net, run_dir: Path, keys: Path, *args: str, port: int = 0, tag: str = ""
) -> NsProc:
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = ["-m", "learner", "--run-dir", str(run_dir), "--host", net.learner_ip]
    argv += ["--port", str(port), "--keys", str(keys / "learner"), *args]
    log = run_dir / "learner.jsonl"
    return NsProc(net.learner_ns, argv, log, run_dir / f"learner{tag}.stderr")


def start_actors(net: Net, run_dir: Path, keys: Path, endpoint: str) -> list[NsProc]:
    run_dir.mkdir(parents=True, exist_ok=True)
    actors = []
    for name in ACTORS:
        argv = ["-m", "actor", "--learner", endpoint, "--keys", str(keys / name)]
        argv += ["--run-dir", str(run_dir), *ACTOR]
        log, err = run_dir / f"actor-{name}.jsonl", run_dir / f"actor-{name}.stderr"
        actors.append(NsProc(net.actor_ns, argv, log, err))
    return actors


def listening(learner: Proc, net: Net) -> dict:
    ev = learner.wait_for("learner_listening", HANG_S)
    assert ev["endpoint"].startswith(f"tcp://{net.learner_ip}:"), ev
    return ev


def position(events: list[dict], pred: Callable[[dict], bool], after: int = -1) -> int:
    """The index of the first event after ``after`` for which ``pred`` holds, or -1."""
    return next((i for i, e in enumerate(events) if i > after and pred(e)), -1)


def is_(name: str, actor_id: str | None = None) -> Callable[[dict], bool]:
    return lambda e: e["event"] == name and (actor_id is None or e.get("actor_id") == actor_id)


def both_joined(learner: Proc, timeout: float = 90.0) -> dict[str, dict]:
    return {
        name: learner.wait_for("actor_joined", timeout, where=lambda e, n=name: e["actor_id"] == n)
        for name in ACTORS
    }


def wait_until(
    proc: Proc, holds: Callable[[list[dict]], bool], timeout: float, what: str
) -> list[dict]:
    """Poll ``proc``'s events until ``holds(events)``, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = proc.events()
        if holds(events):
            return events
        if proc.popen.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(
        f"{proc.log_path.name}: not within {timeout}s (exit {proc.popen.poll()}): {what}\n"
        + proc.stderr_path.read_text()[-3000:]
    )


def updates_now(learner: Proc) -> int:
    progress = learner.events("progress")
    return progress[-1]["updates"] if progress else 0


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.slow
def test_actors_on_another_host_join_over_curve_and_train_to_the_step_limit(tmp_path, net, keys):
    learner = start_learner(net, tmp_path, keys, *LEARNER, "--max-env-steps", "2000")
    actors: list[NsProc] = []
    try:
        endpoint = listening(learner, net)["endpoint"]
        actors = start_actors(net, tmp_path, keys, endpoint)
        joined = both_joined(learner)
        assert learner.wait_exit(HANG_S * 3) == 0
        assert [a.wait_exit(HANG_S) for a in actors] == [0, 0]
    finally:
        stop_all(*actors, learner)

    # Each actor joined under its key's name, from its own process on this machine.
    for actor in actors:
        name = actor.log_path.stem.removeprefix("actor-")
        assert joined[name]["pid"] == actor.popen.pid
        assert joined[name]["host"] == socket.gethostname()
        seen = [e["event"] for e in actor.events()]
        order = ["joining", "joined", "weights_received", "learner_shutdown", "actor_exit"]
        assert [seen.index(e) for e in order] == sorted(seen.index(e) for e in order), seen
        welcomes = actor.events("joined")
        assert welcomes and all(e["pub"].startswith(f"tcp://{net.learner_ip}:") for e in welcomes)
        assert actor.events("weights_received")
        assert actor.events("learner_shutdown")
        assert actor.events("actor_exit")[-1]["code"] == 0
        assert not actor.events("auth_failed") and not actor.events("learner_error")
    # Trained from both (a progress line may not fall inside so short a run).
    (finished,) = learner.events("run_finished")
    assert finished["reason"] == "max_env_steps" and finished["env_steps"] >= 2000
    assert finished["updates"] > 0 and finished["actors"] == 2
    assert not learner.events("auth_rejected") and not learner.events("handler_error")
    # It all went through the veth: the actors' end received the weights.
    assert net.link_stats(net.actor_ns, net.actor_dev)["rx"]["bytes"] > 10_000


@pytest.mark.slow
def test_link_cut_and_restored_actors_come_back_and_training_resumes(tmp_path, net, keys):
    learner = start_learner(net, tmp_path, keys, *LEARNER, *KEEP_UP)
    actors: list[NsProc] = []
    try:
        endpoint = listening(learner, net)["endpoint"]
        actors = start_actors(net, tmp_path, keys, endpoint)
        both_joined(learner)
        learner.wait_for("progress", HANG_S, where=lambda e: e["actors"] == 2 and e["updates"] >= 5)

        # The learner's host loses its link: both sides hear nothing. Only what is
        # logged from here on counts (a loaded machine may have lost an actor before).
        cut = len(learner.events())
        cut_seen = [len(a.events()) for a in actors]
        net.link(net.learner_ns, net.learner_dev, "down")
        for name in ACTORS:
            wait_until(
                learner,
                lambda evs, n=name: position(evs, is_("actor_lost", n), after=cut - 1) >= 0,
                30,
                f"actor_lost {name} after the cut",
            )
        for actor, since in zip(actors, cut_seen, strict=True):
            wait_until(
                actor,
                lambda evs, k=since: (
                    position(evs, is_("learner_unreachable"), after=k - 1)
                    > position(evs, is_("learner_lost"), after=k - 1)
                    >= 0
                ),
                30,
                "learner_lost, then learner_unreachable while re-joining",
            )
        assert learner.popen.poll() is None, "the learner keeps running with its link down"
        assert all(a.popen.poll() is None for a in actors), "the actors keep trying"

        restored_at = updates_now(learner)
        net.link(net.learner_ns, net.learner_dev, "up")
        for name in ACTORS:
            wait_until(
                learner,
                lambda evs, n=name: position(evs, is_("actor_joined", n), after=cut - 1) >= 0,
                60,
                f"{name} joined again after the link came back",
            )
        learner.wait_for(
            "progress", 60, where=lambda e: e["actors"] == 2 and e["updates"] > restored_at + 5
        )
        assert learner.popen.poll() is None
        learner.signal(signal.SIGTERM)
        assert learner.wait_exit(HANG_S) == 0
        assert [a.wait_exit(HANG_S) for a in actors] == [0, 0]
    finally:
        stop_all(*actors, learner)

    # In order, for each actor: lost (link down), joined again as the same process (same
    # incarnation: it was never restarted), then training went on with both.
    events = learner.events()
    for name in ACTORS:
        first = position(events, is_("actor_joined", name))
        lost = position(events, is_("actor_lost", name), after=cut - 1)
        again = position(events, is_("actor_joined", name), after=lost)
        assert 0 <= first < cut <= lost < again, (name, first, cut, lost, again)
        assert events[again]["incarnation"] == events[first]["incarnation"]
        assert events[again]["pid"] == events[first]["pid"]
    rejoined = max(position(events, is_("actor_joined", n), after=cut - 1) for n in ACTORS)
    after = [e for e in events[rejoined:] if e["event"] == "progress" and e["actors"] == 2]
    assert after and after[-1]["updates"] > restored_at + 5, "training resumed with both"
    # Each actor heard nothing, re-joined and got the same learner's weights again. (Not
    # always "joined" again in its own log: see test_actor_rejoin_waits_for_a_welcome.)
    for actor, since in zip(actors, cut_seen, strict=True):
        seen = actor.events()
        lost = position(seen, is_("learner_lost"), after=since - 1)
        joining = position(seen, is_("joining"), after=lost)
        unreachable = position(seen, is_("learner_unreachable"), after=joining)
        weights = position(seen, is_("weights_received"), after=unreachable)
        assert 0 < since <= lost < joining < unreachable < weights, (
            actor.log_path.name,
            [since, lost, joining, unreachable, weights],
        )
        assert len({e["learner_id"] for e in seen if e["event"] == "joined"}) == 1
        assert seen[-1]["event"] == "actor_exit" and seen[-1]["code"] == 0
    assert len(learner.events("learner_listening")) == 1, "one learner process throughout"
    assert learner.events("run_finished")[-1]["reason"] == "signal"


@pytest.mark.slow
def test_learner_killed_and_resumed_on_its_host_actors_rejoin_the_new_learner(tmp_path, net, keys):
    port = 5555  # the namespace is ours alone: a fixed port is free
    args = [*LEARNER, *KEEP_UP, "--checkpoint-every-s", "0.5"]
    run = tmp_path / "run"
    first = start_learner(net, run, keys, *args, port=port)
    second = None
    actors: list[NsProc] = []
    try:
        endpoint = listening(first, net)["endpoint"]
        assert endpoint == f"tcp://{net.learner_ip}:{port}"
        old_id = first.events("learner_listening")[0]["learner_id"]
        actors = start_actors(net, tmp_path / "actors", keys, endpoint)
        both_joined(first)
        first.wait_for("checkpoint_saved", HANG_S, where=lambda e: e["version"] >= 5)
        first.signal(signal.SIGKILL)
        first.wait_exit(10)
        saved = first.events("checkpoint_saved")[-1]
        for actor in actors:
            actor.wait_for("learner_lost", 30)
        assert all(a.popen.poll() is None for a in actors), "actors outlive the learner"

        # Same run directory, same port, --resume.
        second = start_learner(net, run, keys, *args, "--resume", "true", port=port, tag="-2")
        resumed = second.wait_for("resumed", HANG_S)
        assert resumed["version"] == saved["version"] and resumed["env_steps"] == saved["env_steps"]
        new_id = listening(second, net)["learner_id"]
        assert new_id != old_id
        both_joined(second)
        for actor in actors:
            actor.wait_for("joined", HANG_S, where=lambda e: e["learner_id"] == new_id)
        second.wait_for(
            "progress",
            60,
            where=lambda e: e["actors"] == 2 and e["version"] > saved["version"] + 5,
        )
        second.signal(signal.SIGTERM)
        assert second.wait_exit(HANG_S) == 0
        assert [a.wait_exit(HANG_S) for a in actors] == [0, 0]
    finally:
        stop_all(*actors, first, second)

    # The resumed learner counted on from the checkpoint, never from 0.
    assert second is not None
    progress = second.events("progress")
    assert progress and all(e["version"] >= saved["version"] for e in progress)
    assert all(e["env_steps"] >= saved["env_steps"] for e in progress)
    assert all(e["updates"] >= resumed["updates"] for e in progress)
    for actor in actors:
        seen = actor.events()
        ids = [e["learner_id"] for e in seen if e["event"] == "joined"]
        assert ids[0] == old_id and ids[-1] == new_id, ids
        lost = position(seen, is_("learner_lost"))
        rejoined = position(seen, lambda e: e["event"] == "joined" and e["learner_id"] == new_id)
        assert 0 <= lost < rejoined
        versions = [e["version"] for e in seen[rejoined:] if e["event"] == "weights_received"]
        assert versions and versions[0] >= saved["version"], "the new learner's first weights"
        assert seen[-1]["event"] == "actor_exit" and seen[-1]["code"] == 0


# --- what the link cut showed: deterministic reproductions -------------------------------
#
# Both come from the same moment of test_link_cut_...: the link comes back, and the
# learner, which declared both actors lost, reads at once what queued up in TCP while it
# was down (heartbeats, a rollout, a Hello). No processes or namespaces here: the
# learner's and the actor's pure parts are driven with the messages seen in those logs.


class _Exhausted(Exception):
    """The scripted transport has nothing more to deliver: the actor is still joining."""


class _ScriptedTransport:
    """actor/transport.py's Transport, delivering scripted batches of messages."""

    def __init__(self, batches: list[list]) -> None:
        self.batches = batches
        self.sent: list = []

    def receive(self, timeout_ms: int) -> list:
        if not self.batches:
            raise _Exhausted
        return self.batches.pop(0)

    def try_send(self, msg) -> bool:
        self.sent.append(msg)
        return True

    def handshake_failure(self) -> None:
        return None

    def subscribe(self, pub_port: int) -> str:
        return f"tcp://127.0.0.1:{pub_port}"

    def close(self) -> None:
        pass


def test_actor_rejoin_waits_for_a_welcome():
    """A re-join ends only on the Weights that follow a Welcome of this join. The
    learner that declared the actor lost answers a heartbeat queued during the outage
    with a non-fatal Error(not_registered) and the Hello with Welcome + Weights; when
    the Error and the Welcome land in one receive() and the Weights in the next, the
    actor once dropped the Welcome with the Error and returned on the Weights alone:
    no "joined", the old session's credit (a rollout the learner will never ack) kept,
    and the old envs kept mid-episode (the learner counts episodes from fresh envs).
    Seen in test_link_cut_...: learner_lost, joining, learner_error, joining,
    weights_received and no joined."""
    log = RecordingLog()
    client = ActorClient(ActorConfig(learner="tcp://127.0.0.1:9"), log, lambda: False)
    client.link.transport.close()  # never used: nothing was sent on it
    client.acting = build_acting(CARTPOLE, num_envs=2, seed=0, temperature=1.0)
    try:
        client.learner_id = "L1"
        client.acting.policy.version = 3
        client.credit.sent(7, 3, time.monotonic())  # in flight when the link went down
        weights = Weights(
            learner_id="L1",
            version=9,
            arrays={n: np.zeros(shape, "<f4") for n, shape in client.acting.shapes.items()},
        )
        welcome = Welcome(
            learner_id="L1", run=CARTPOLE.to_dict(), pub_port=5556, temperature=1.0, seed=1
        )
        not_registered = Error(code="not_registered", detail="send hello", fatal=False)
        client.link.transport = _ScriptedTransport(
            [[(DEALER, not_registered), (DEALER, welcome)], [(DEALER, weights)]]
        )
        log.records.clear()
        try:
            client._join()
        except Rejoin:
            client._join()  # as ActorClient.run does
        # A join that returned must have started a new session.
        assert "joined" in log.names(), log.names()
        assert client.credit.in_flight == 0, "a rollout the learner forgot still holds credit"
    except _Exhausted:
        pass  # still waiting for a Welcome: right
    finally:
        client.acting.close()


def test_rejoin_after_actor_lost_reports_no_false_sequence_gap():
    """The same incarnation re-joining after actor_lost carries on its sequence
    numbers: once the lost record was forgotten and the fresh one started at 0, so the
    next rollout reported every rollout already delivered as missing (in
    test_link_cut_...: ``seq_gap missing=10 seq=11`` after actor_lost said
    last_seq=10), and the re-join was logged as actor_joined, never
    actor_reconnected."""
    registry = ActorRegistry(timeout_s=1.5, max_bad=20)
    hello = Hello(actor_id="a0", incarnation="inc-1", hostname="actors", pid=7)
    admit = dict(authenticated=False, run_seed=1, default_envs=3, temperatures=(1.0,))

    def rollout(seq: int) -> Experience:
        return Experience(
            arrays=experience_arrays(CARTPOLE, 3),
            actor_id="a0",
            incarnation="inc-1",
            seq=seq,
            learner_id="L1",
            policy_version=0,
        )

    first = admit_hello(registry, hello, b"route", None, 0.0, **admit).record
    assert [judge_batch(first, rollout(s), "L1", 0, 4).gap for s in (1, 2, 3)] == [0, 0, 0]
    first.heard, first.last_seen = True, 2.0  # as LearnerServer._handle does on each message
    (lost,) = registry.expire(10.0)  # the link went down: silent past the timeout
    assert lost.last_seq == 3
    # The link is back; the same process (same connection, same incarnation) re-joins.
    again = admit_hello(registry, hello, b"route", None, 11.0, **admit).record
    assert judge_batch(again, rollout(4), "L1", 0, 4).gap == 0, "rollouts 1..3 were not lost"
