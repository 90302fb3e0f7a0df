"""The coordination home: a new way for actors and the learner to take turns is one
module and one registry call (tests/toy_coordination.py), and it trains through a real
learner and real actors; the table refuses a name it does not have, and each built-in
mode says what the learner's and the actor's loops do (core/coordination)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core import algos, coordination
from learner.__main__ import main
from learner.batching import AsyncQueue, SyncBarrier, make_batcher
from learner.checkpoint import CheckpointConfig, Checkpointer
from protocol.messages import Experience, Gradient
from protocol.spec import COORDINATIONS, RunSpec, SpecError
from scripts.procs import HANG_S, Proc, endpoint_of
from tests import toy_coordination
from tests.toy_coordination import ALGO, TOY


@pytest.fixture
def toy():
    toy_coordination.register()  # the one registry call
    yield TOY
    toy_coordination.unregister()


# --- the table ----------------------------------------------------------------------------


def test_an_unknown_mode_is_refused_with_the_known_ones_named():
    with pytest.raises(ValueError, match="unknown coordination 'lockstep'; known: sync, async"):
        coordination.get("lockstep")
    # An algorithm that names a mode nobody registered is refused where it is declared.
    with pytest.raises(ValueError, match="unknown coordination 'lockstep'"):
        dataclasses.replace(algos.get("a2c"), name="a2c-lockstep", coordination="lockstep")


def test_a_mode_is_registered_once():
    with pytest.raises(ValueError, match="'sync' is already registered"):
        coordination.register(coordination.get("sync"))


def test_the_built_in_modes_are_the_ones_the_protocol_documents():
    # protocol/spec.py cannot import the table: its list (a peer's reference, and what
    # RunSpec.from_dict accepts by default) is kept true here.
    assert coordination.names() == COORDINATIONS


# mode: (message, batcher, lag bound under --max-policy-lag 7, pipeline depth,
#        serial update after each rollout, actor waits for release, ack patience)
BUILT_IN = {
    "sync": (Experience, SyncBarrier, 0, 1, False, True, 8),
    "async": (Experience, AsyncQueue, 7, 2, True, False, 1),
    "gradients": (Gradient, AsyncQueue, 7, 2, True, False, 1),
}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_each_built_in_mode_says_what_both_loops_do(name):
    mode = coordination.get(name)
    message, batcher, lag, depth, each, waits, patience = BUILT_IN[name]
    assert mode.name == name and mode.message is message
    assert mode.sends_gradients == (message is Gradient)
    assert mode.lag_bound(7) == lag
    assert (mode.pipeline_depth, mode.update_each_rollout) == (depth, each)
    assert (mode.waits_for_release, mode.ack_patience) == (waits, patience)
    made = make_batcher(
        mode,
        min_actors=2,
        min_actors_wait_s=30.0,
        barrier_timeout_s=10.0,
        max_batches_per_update=5,
        max_lag=mode.lag_bound(7),
    )
    assert type(made) is batcher
    if isinstance(made, AsyncQueue):  # gradients one at a time, rollouts merged
        assert made.max_batch == (1 if mode.sends_gradients else 5)
    else:
        assert made.max_lag == lag


def test_every_algorithm_runs_in_a_registered_mode():
    for algo in algos.ALGORITHMS.values():
        assert algo.mode is coordination.get(algo.coordination)


@pytest.mark.parametrize(
    "change",
    [{"name": ""}, {"queue_limit": 4}, {"max_lag": -1}, {"pipeline_depth": 0}, {"ack_patience": 0}],
    ids=str,
)
def test_a_mode_checks_itself(change):
    with pytest.raises(ValueError):
        dataclasses.replace(coordination.get("sync"), **change)


def test_a_received_spec_must_name_a_mode_the_receiver_runs(toy, cartpole_spec):
    received = {**cartpole_spec.to_dict(), "coordination": TOY.name}
    with pytest.raises(SpecError, match="coordination must be one of"):
        RunSpec.from_dict(received)  # the protocol alone: the built-in modes
    # An actor passes its table's names: a registered mode crosses the wire as it is.
    spec = RunSpec.from_dict(received, coordinations=coordination.names())
    assert spec.coordination == TOY.name


# --- the toy: sync, one version ahead ----------------------------------------------------


def test_the_serial_mode_trains_the_toy_on_one_rollout_per_actor_per_update(
    tmp_path, toy, restore_logging
):
    """No sockets: the same batcher (a barrier taking one version of lag) and updater
    as the networked learner; each update trains on one rollout from each actor."""
    argv = ["--serial", "--algo", ALGO, "--actors", "2", "--envs", "4", "--rollout-len", "8"]
    argv += ["--max-env-steps", "1000", "--checkpoint-every-s", "0", "--run-dir", str(tmp_path)]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["algo"] == ALGO
    found = Checkpointer(CheckpointConfig(tmp_path / "checkpoints")).load_latest()
    assert found is not None
    counters = found[1]["counters"]
    assert counters["updates"] >= 10 and counters["batches"] == 2 * counters["updates"]


def toy_process(tmp_path, role: str, name: str, *args: str) -> Proc:
    """``python -m tests.toy_coordination ROLE ARGS``: the role's own main, with the toy
    registered in that process (each role looks the mode up by the spec's name)."""
    return Proc(
        ["-m", "tests.toy_coordination", role, "--run-dir", str(tmp_path), *args],
        tmp_path / f"{name}.jsonl",
        tmp_path / f"{name}.stderr",
    )


@pytest.mark.slow
def test_a_toy_mode_trains_cartpole_through_a_real_learner_and_real_actors(tmp_path):
    learner = toy_process(
        tmp_path,
        "learner",
        "learner",
        *("--algo", ALGO, "--actors", "0", "--min-actors", "2", "--port", "0", "--seed", "1"),
        *("--target-return", "195", "--max-env-steps", "300000", "--max-seconds", "150"),
        *("--checkpoint-every-s", "0", "--log-interval-s", "0.1"),
    )
    actors: list[Proc] = []
    try:
        endpoint = endpoint_of(learner, HANG_S)  # read from the learner's own log line
        for actor_id in ("toy-0", "toy-1"):
            args = ("--learner", endpoint, "--actor-id", actor_id)
            actors.append(toy_process(tmp_path, "actor", f"actor-{actor_id}", *args))
        assert learner.wait_exit(HANG_S * 4) == 0
        for actor in actors:
            assert actor.wait_exit(HANG_S) == 0, "the learner's Shutdown stops the actors"
    finally:
        for proc in (*actors, learner):
            proc.stop()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["algo"] == ALGO and summary["solved"], summary
    assert summary["env_steps"] < 300_000  # solved within the budget
    assert learner.events("learner_listening")[0]["coordination"] == TOY.name
    assert [a.events("joined")[0]["coordination"] for a in actors] == [TOY.name] * 2
    # The turns are the toy's: rollouts one version old are trained on (under sync an
    # actor waits for the newest weights, so none is), never older ones.
    lags = [
        e["train_lag_max"] for e in learner.events("progress") if e["train_lag_max"] is not None
    ]
    assert max(lags) == 1, lags
