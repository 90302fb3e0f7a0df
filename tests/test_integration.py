"""A learner and actors as real processes on 127.0.0.1 with random ports."""

from __future__ import annotations

import json
import signal

import pytest

from scripts.procs import HANG_S, endpoint_of, start_actor, start_learner

pytestmark = pytest.mark.slow

# A learner the test keeps up stops by itself after this long, in case a test failed to
# stop it; it is never what ends a test.
LEARNER_MAX_S = str(HANG_S * 5)

SMALL = [
    "--target-return",
    "1e9",
    "--envs",
    "4",
    "--rollout-len",
    "8",
    "--log-interval-s",
    "0.2",
    "--heartbeat-s",
    "0.2",
    "--actor-timeout-s",
    "1.5",
]
SUMMARY_KEYS = {
    "solved",
    "wall_s",
    "env_steps",
    "episodes",
    "updates",
    "mean_return_100",
    "algo",
    "env",
    "seed",
    "actors",
    "solved_on",  # None: not solved
    "confirm_attempts",  # the learner's own confirmations (on by default; none here)
}


@pytest.mark.parametrize("algo", ["a2c", "a3c", "a3c-grad"])
def test_learner_and_two_local_actors_train_and_stop(tmp_path, algo):
    learner = start_learner(
        tmp_path,
        "--algo",
        algo,
        "--actors",
        "2",
        "--max-env-steps",
        "20000",
        "--temperatures",
        "0.5,2.0",
        *SMALL,
    )
    try:
        assert learner.wait_exit(HANG_S * 3) == 0  # a whole run, start-up included
    finally:
        learner.stop()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["algo"] == algo and summary["actors"] == 2 and summary["solved"] is False
    assert summary["solved_on"] is None and summary["confirm_attempts"] == 0
    assert summary["env_steps"] >= 20000 and summary["updates"] > 0
    joined = learner.events("actor_joined")
    assert {e["actor_id"] for e in joined} == {"local-0", "local-1"}
    # Per-actor exploration: each actor gets its own temperature and says which.
    assert sorted(e["temperature"] for e in joined) == [0.5, 2.0]
    actor_temps = []
    for i in range(2):
        lines = (tmp_path / f"actor-local-{i}.jsonl").read_text().splitlines()
        actor_temps += [json.loads(x)["temperature"] for x in lines if '"joined"' in x]
    assert sorted(actor_temps) == [0.5, 2.0]
    assert learner.events("checkpoint_saved"), "a final checkpoint is written"
    # Actors leave on the learner's Shutdown, cleanly.
    for i in range(2):
        exits = [
            json.loads(x)
            for x in (tmp_path / f"actor-local-{i}.jsonl").read_text().splitlines()
            if '"actor_exit"' in x
        ]
        assert exits and exits[-1]["code"] == 0 and exits[-1]["reason"] == "learner_shutdown"


def test_late_actor_gets_current_weights_at_once(tmp_path):
    learner = start_learner(
        tmp_path, "--algo", "a3c", "--actors", "1", "--max-seconds", LEARNER_MAX_S, *SMALL
    )
    late = None
    try:
        endpoint = endpoint_of(learner)
        progressed = learner.wait_for("progress", HANG_S, where=lambda e: e["updates"] >= 20)
        late = start_actor(tmp_path, endpoint, "late")
        got = late.wait_for("weights_received", HANG_S)
        # The first weights it holds are the learner's current ones, not version 0.
        assert got["version"] >= progressed["updates"] > 0
        learner.wait_for("actor_joined", HANG_S, where=lambda e: e["actor_id"] == "late")
    finally:
        if late:
            late.stop()
        learner.stop()


@pytest.mark.parametrize("algo", ["a2c", "a3c"])
def test_sigkilled_actor_does_not_stop_the_learner(tmp_path, algo):
    learner = start_learner(
        tmp_path, "--algo", algo, "--actors", "0", "--max-seconds", LEARNER_MAX_S, *SMALL
    )
    actors = []
    try:
        endpoint = endpoint_of(learner)
        # a0 alone first, so that it has sent rollouts when it is killed (started
        # together, the other could make every update: last_seq 0).
        actors = [start_actor(tmp_path, endpoint, "a0")]
        learner.wait_for("progress", HANG_S, where=lambda e: e["updates"] >= 5)
        actors.append(start_actor(tmp_path, endpoint, "a1"))
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["actors"] == 2 and e["updates"] >= 10
        )
        actors[0].signal(signal.SIGKILL)
        lost = learner.wait_for("actor_lost", HANG_S, where=lambda e: e["actor_id"] == "a0")
        assert lost["last_seq"] > 0
        before = learner.events("progress")[-1]["updates"]
        # Training goes on with the survivor (a2c must not wait for the dead actor).
        learner.wait_for(
            "progress", HANG_S, where=lambda e: e["updates"] >= before + 20 and e["actors"] == 1
        )
        learner.signal(signal.SIGTERM)
        assert learner.wait_exit(HANG_S) == 0
        assert actors[1].wait_exit(HANG_S) == 0
    finally:
        for a in actors:
            a.stop()
        learner.stop()
