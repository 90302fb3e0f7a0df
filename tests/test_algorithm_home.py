"""The algorithm home: a new algorithm is one module and one registry line, and it
trains through the real learner (real actor processes over ZeroMQ); the serial mode
trains every registered algorithm without sockets."""

from __future__ import annotations

import json

import pytest

from core import algos
from learner.__main__ import main
from tests.toy_algo import TOY


@pytest.fixture
def toy():
    algos.register(TOY)  # the one registry line
    yield TOY
    del algos.ALGORITHMS[TOY.name]


@pytest.mark.slow
def test_a_toy_algorithm_trains_through_the_real_learner(tmp_path, toy, restore_logging):
    # Its own loss flag is accepted for it (and would be refused for --algo a2c).
    argv = ["--algo", toy.name, "--huber-delta", "2.0", "--actors", "2", "--port", "0"]
    argv += ["--target-return", "150", "--max-seconds", "90", "--checkpoint-every-s", "0"]
    argv += ["--run-dir", str(tmp_path)]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["algo"] == toy.name and summary["solved"], summary
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["spec"]["coordination"] == "async"
    assert config["config"]["loss"]["huber_delta"] == 2.0


@pytest.mark.parametrize("algo", ["a2c", "a3c", "a3c-grad", "ppo", "appo", "impala"])
def test_serial_mode_learns_cartpole(tmp_path, algo, restore_logging):
    """Learning happens, in every coordination mode: the same trainer, batcher and
    acting code as a networked run, in one process."""
    argv = ["--serial", "--algo", algo, "--actors", "2", "--seed", "1"]
    argv += ["--target-return", "195", "--max-env-steps", "600000", "--checkpoint-every-s", "0"]
    argv += ["--run-dir", str(tmp_path)]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["solved"], summary
    # The window when it was judged solved (the summary's may move during confirmation).
    assert summary.get("mean_return_100_at_start", summary["mean_return_100"]) >= 195


def test_serial_mode_is_repeatable(tmp_path, restore_logging):
    runs = []
    for i in range(2):
        run_dir = tmp_path / str(i)
        argv = ["--serial", "--algo", "a2c", "--actors", "2", "--seed", "3"]
        argv += ["--max-env-steps", "20000", "--checkpoint-every-s", "0", "--run-dir", str(run_dir)]
        assert main(argv) == 0
        runs.append(json.loads((run_dir / "summary.json").read_text()))
    for key in ("env_steps", "episodes", "updates", "mean_return_100"):
        assert runs[0][key] == runs[1][key], key
