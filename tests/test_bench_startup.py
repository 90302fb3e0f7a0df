"""scripts/bench_startup.py against one real run: the figures it reports come from the
run's own logs and add up. Nothing timed is asserted beyond order and sign."""

from __future__ import annotations

import json

import pytest

from scripts import bench_startup


def test_bench_startup_splits_a_real_run_into_training_and_the_rest(tmp_path):
    out = tmp_path / "startup.json"
    args = "--env CartPole-v1 --algo a2c --seed 1 --actors 1 --max-env-steps 4000 --console plain"
    assert bench_startup.main(["--runs", "1", "--learner-args", args, "--out", str(out)]) == 0
    ((run,),) = json.loads(out.read_text())["runs"].values()
    assert 0 < run["to_listening_s"] < run["to_first_join_s"] < run["total_s"]
    assert run["training_s"] > 0 and run["after_outcome_s"] > 0
    assert run["overhead_s"] == pytest.approx(run["total_s"] - run["training_s"])
