"""Every algorithm learns through real processes: a learner and two local actor
processes over 127.0.0.1 (random ports) must bring CartPole-v1's mean return over the
last 100 episodes to 150 (a random policy scores about 22) within a budget of env
steps, and the run must end by that rule: ``run_finished reason=solved``, not by the
budget (``max_env_steps``). A run that merely finishes, or a loss that trains the wrong
way, fails.

a2c's learning is tested on the image path (tests/test_image_learning.py: Catch, a CNN,
real actors); the serial mode's learning of every algorithm, without sockets, is in
tests/test_algorithm_home.py.

Budgets: env steps to a mean return of 150, measured on the 2-core development machine
with other test runs sharing it, each algorithm's defaults (2 actors x 16 envs,
rollouts of 32), 2026-11-24: seeds 1-6 once each plus this test (seed 1) twice, in
thousands of env steps, best-worst of 8 runs:

    a3c-grad  38.9-54.5     a3c  36.8-52.9     impala  36.8-48.4
    ppo       23.3-26.9     appo 25.8-34.3
    appo --targets vtrace (seeds 1-3, 2026-11-24 17:25): 26.8-34.3

Since a3c and impala moved to RMSProp (2026-12-03), env steps to a mean return of 195
(above this test's 150), ``python -m scripts.compare``, seeds 1-10 (a3c) and 1-8 plus
1-10 (impala, a3c-grad 1-8), in thousands:

    a3c-grad  40.4-81.1     a3c  27.9-56.9     impala  29.5-96.5

and this test once failed for a3c-grad at the old 110k in a fresh-clone ``make test``
(13 of 15 reruns passed): a3c-grad's seed 1 is not the same run twice (two actors'
gradients arrive in the order the OS schedules them).

Each budget is about twice the worst seen. With the policy loss's sign flipped, every
one of them ends on max_env_steps (13-19 s each). Env steps, not seconds: a loaded
machine makes a run slower, not red; the only clock is the hang guard on the exit.
"""

from __future__ import annotations

import json

import pytest

from scripts.procs import start_learner

pytestmark = pytest.mark.slow

TARGET = 150
# A guard against a hang (start-up included), never the thing tested.
HANG_S = 300

BUDGETS = {
    "a3c-grad": 160_000,
    "a3c": 110_000,
    "impala": 160_000,
    "ppo": 60_000,
    "appo": 70_000,
    "appo-vtrace": 70_000,  # APPO with V-trace's targets (--targets vtrace)
}
# Cases that are an algorithm with flags of their own.
CASES = {"appo-vtrace": ("appo", ["--targets", "vtrace"])}
# The coordination mode each runs in (core/algos/__init__.py), checked in the run spec.
COORDINATION = {
    "a3c-grad": "gradients",
    "a3c": "async",
    "impala": "async",
    "ppo": "sync",
    "appo": "async",
}


def window_at_solve(summary: dict) -> float:
    """The actors' mean return over 100 episodes when the run was judged solved: the
    summary's own window is the last one, and it may move while the learner plays its
    confirmation episodes."""
    return summary.get("mean_return_100_at_start", summary["mean_return_100"])


def run_to_end(tmp_path, learner) -> tuple[dict, dict]:
    """Wait for ``learner`` to exit cleanly (stopping it whatever happens); its
    ``run_finished`` event and summary.json."""
    try:
        assert learner.wait_exit(HANG_S + 60) == 0
    finally:
        learner.stop()
    (finished,) = learner.events("run_finished")
    return finished, json.loads((tmp_path / "summary.json").read_text())


@pytest.mark.parametrize("case", list(BUDGETS))
def test_algorithm_learns_cartpole_through_real_processes(tmp_path, case):
    budget = BUDGETS[case]
    algo, flags = CASES.get(case, (case, []))
    learner = start_learner(
        tmp_path,
        *flags,
        "--algo",
        algo,
        "--actors",
        "2",
        "--seed",
        "1",
        "--target-return",
        str(TARGET),
        "--max-env-steps",
        str(budget),
        "--max-seconds",
        str(HANG_S),  # a learner that stops stepping still ends (and fails below)
        "--checkpoint-every-s",
        "0",
    )
    finished, summary = run_to_end(tmp_path, learner)
    # Solved by the rule, before the budget ran out (max_env_steps would be the reason).
    assert finished["reason"] == "solved", summary
    assert summary["solved"] and window_at_solve(summary) >= TARGET, summary
    assert summary["episodes"] >= 100 and summary["updates"] > 0
    # Learned by this algorithm from the two actor processes' experience.
    config = json.loads((tmp_path / "config.json").read_text())
    assert summary["algo"] == config["config"]["algo"] == algo
    assert config["spec"]["coordination"] == COORDINATION[algo]
    if flags:
        assert config["config"]["loss"]["targets"] == flags[1]
    joined = {e["actor_id"] for e in learner.events("actor_joined")}
    # An async run can be solved before the slower actor process has joined.
    assert joined and joined <= {"local-0", "local-1"}
    progress = learner.events("progress")
    assert not progress or progress[-1]["rejected"] == 0


# Continuous control: the Pendulum-v1 preset (ppo; configs/pendulum.toml) with bounded
# Gaussian actions. A random policy scores about -1,200 to -1,400; -500 is a pendulum
# that swings up and mostly stays. Measured (2-core machine, 2026-11-24, seeds 1-3): the
# mean of the last 100 episodes passed -500 at 110k, 98k and 105k env steps; the budget
# is a little over twice the worst.
PENDULUM_TARGET = -500
PENDULUM_BUDGET = 250_000


def test_continuous_control_learns_pendulum_through_real_processes(tmp_path):
    learner = start_learner(
        tmp_path,
        "--env", "Pendulum-v1", "--seed", "1", "--actors", "2",
        "--target-return", str(PENDULUM_TARGET), "--max-env-steps", str(PENDULUM_BUDGET),
        "--max-seconds", str(HANG_S), "--checkpoint-every-s", "0",
    )  # fmt: skip
    finished, summary = run_to_end(tmp_path, learner)
    assert finished["reason"] == "solved", summary
    assert window_at_solve(summary) >= PENDULUM_TARGET and summary["episodes"] >= 100
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["preset"] == "pendulum" and config["spec"]["action_kind"] == "box"


# Learning under a lag that does not come from timing: 8 actor processes that always act
# with the weights 16 versions older than the learner's (--weights-delay 16), nothing
# dropped. Measured (2-core machine): appo reached 150 at 90k and 80k env steps (seeds
# 1-2, 2026-12-02, confirmed by the learner's own episodes). impala and a3c since they
# start from RMSProp (2026-12-03, `python -m scripts.compare --algos impala,a3c --seeds
# 1,...,6 --actors 8 --envs 8 --extra "--weights-delay 16 --max-policy-lag 1000"`, the
# loss's mean lag 17.1-17.8): 6/6 seeds each reached 475 (impala 284.5k-445.0k, a3c
# 304.2k-711.8k); env steps to 195, above this test's 150: impala 59.4k-149.5k, a3c
# 55.1k-76.4k. With Adam impala had reached 475 on 1 of 3 seeds at K = 16. Budgets are
# about twice the worst.
LAG_BUDGETS = {"appo": 200_000, "impala": 300_000, "a3c": 160_000}


@pytest.mark.parametrize("algo", list(LAG_BUDGETS))
def test_learning_holds_under_an_induced_lag_of_16_with_8_actors(tmp_path, algo):
    budget = LAG_BUDGETS[algo]
    learner = start_learner(
        tmp_path,
        "--algo", algo, "--actors", "8", "--envs", "8", "--seed", "1",
        "--weights-delay", "16", "--max-policy-lag", "1000",
        "--target-return", str(TARGET), "--max-env-steps", str(budget),
        "--max-seconds", str(HANG_S), "--checkpoint-every-s", "0",
    )  # fmt: skip
    finished, summary = run_to_end(tmp_path, learner)
    assert finished["reason"] == "solved", summary
    # The loss really saw data 16 versions old once the learner was past version 16.
    # (Not the last interval's mean: a run solved early has only an interval or two,
    # and theirs average in the first 16 versions, whose lag is below 16; CI once read
    # 13.7 there.)
    lag_max = [e["train_lag_max"] for e in learner.events("progress") if e.get("train_lag_max")]
    assert lag_max and max(lag_max) >= 16, lag_max
    assert len({e["actor_id"] for e in learner.events("actor_joined")}) >= 4


# Structured action spaces (core/envs/structured.py): every component of the action has
# to be right for the return to pass 8.5 of 10 (random: 2.6 MultiDiscrete, 5.0
# MultiBinary). Env steps to 8.5 measured on the 2-core machine, 2026-12-03, seeds 1-3:
# MatchMulti a2c 72.6k-83.8k, a3c-grad (the actors' gradients through the product head)
# 101.0k-122.4k; MatchBits appo 72.2k-80.1k. Budgets about twice the worst.
STRUCTURED = {
    ("zmq_a3c/MatchMulti-v0", "a2c"): 170_000,
    ("zmq_a3c/MatchMulti-v0", "a3c-grad"): 250_000,
    ("zmq_a3c/MatchBits-v0", "appo"): 170_000,
}


@pytest.mark.parametrize("env, algo", list(STRUCTURED))
def test_multi_discrete_and_multi_binary_actions_are_learned_through_real_processes(
    tmp_path, env, algo
):
    learner = start_learner(
        tmp_path,
        "--env", env, "--algo", algo, "--seed", "1", "--actors", "2",
        "--target-return", "8.5", "--max-env-steps", str(STRUCTURED[env, algo]),
        "--max-seconds", str(HANG_S), "--checkpoint-every-s", "0",
    )  # fmt: skip
    finished, summary = run_to_end(tmp_path, learner)
    assert finished["reason"] == "solved", summary
    # Confirmed by the learner's own episodes (the heads' mode and to_env, off the wire).
    assert summary["solved_on"] == "learner_played" and summary["confirm_mean_return"] >= 8.5
    kind = json.loads((tmp_path / "config.json").read_text())["spec"]["action_kind"]
    assert kind == ("multi_discrete" if "Multi" in env else "multi_binary")


# Memory: CartPole without its velocities (zmq_a3c/CartPoleNoVel-v1, the cartpole
# preset). A feed-forward policy peaks near 50 on it (measured: a2c 50.3 in 1M env
# steps, appo 54.4 in 300k); with an LSTM every async algorithm (and a2c) passes 150 in
# 67-82k env steps, seed 1 (2026-12-03). The bar here is 200, four times what a
# feed-forward policy reaches, within about three times that, and the learner's own
# episodes (played with the core's memory) must confirm it.
MEMORY_TARGET = 200
MEMORY = {
    ("appo", "lstm"): 250_000,
    ("impala", "lstm"): 250_000,
    ("a3c", "lstm"): 250_000,
    ("a3c-grad", "gru"): 250_000,
    ("a2c", "gru"): 250_000,
}


@pytest.mark.parametrize("algo, core", list(MEMORY))
def test_a_recurrent_core_learns_the_memory_task_through_real_processes(tmp_path, algo, core):
    learner = start_learner(
        tmp_path,
        "--env", "zmq_a3c/CartPoleNoVel-v1", "--algo", algo, "--core", core,
        "--seed", "1", "--actors", "2", "--target-return", str(MEMORY_TARGET),
        "--max-env-steps", str(MEMORY[algo, core]), "--max-seconds", str(HANG_S),
        "--checkpoint-every-s", "0",
    )  # fmt: skip
    finished, summary = run_to_end(tmp_path, learner)
    assert finished["reason"] == "solved", summary
    assert summary["solved_on"] == "learner_played"
    assert summary["confirm_mean_return"] >= MEMORY_TARGET, summary
    spec = json.loads((tmp_path / "config.json").read_text())["spec"]
    assert spec["model"]["core"] == core and spec["core_state_size"] > 0
    progress = learner.events("progress")
    assert not progress or progress[-1]["rejected"] == 0


def test_a_feed_forward_policy_does_not_learn_the_memory_task(tmp_path):
    """The control: the same task, algorithm and budget without a core stays far below
    the bar (so passing it above is the core's doing, not the task's ease)."""
    learner = start_learner(
        tmp_path,
        "--env", "zmq_a3c/CartPoleNoVel-v1", "--algo", "appo", "--seed", "1",
        "--actors", "2", "--target-return", str(MEMORY_TARGET),
        "--max-env-steps", str(MEMORY["appo", "lstm"]), "--max-seconds", str(HANG_S),
        "--checkpoint-every-s", "0",
    )  # fmt: skip
    finished, summary = run_to_end(tmp_path, learner)
    assert finished["reason"] == "max_env_steps", summary
    best = max(e["mean_return_100"] or 0.0 for e in learner.events("progress"))
    assert best < MEMORY_TARGET / 2, best
