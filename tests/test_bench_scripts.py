"""The throughput, Atari, vector-env, end-to-end and staleness benchmark scripts run
their measurements at a tiny size and read their peers' logs right. Nothing timed is asserted
beyond "positive". (``make bench-solve``'s parts: tests/test_bench_solve.py.)
"""

from __future__ import annotations

import math

import pytest

from scripts import bench_throughput


def test_throughput_measures_a_recurrent_core_and_its_state_on_the_wire():
    """--core lstm: the actor steps the core, and each rollout carries its state (1 kB
    per env for the MLP's two 64-unit LSTMs: 128 B more per transition at T=8)."""
    plain = bench_throughput.wire_cost(8, 8, seconds=0.0, distinct=1)
    lstm = bench_throughput.wire_cost(8, 8, seconds=0.0, distinct=1, core="lstm")
    # + the array's entry in the header, a few bytes per message
    assert lstm["bytes_per_transition"] - plain["bytes_per_transition"] == pytest.approx(128, abs=1)
    assert bench_throughput.rollout_rate(8, 4, seconds=0.0, core="gru")["steps_per_s"] > 0
    assert (
        bench_throughput.learner_rate(1, 0.0, num_envs=4, rollout_len=4, core="lstm")[
            "samples_per_update"
        ]
        == 16
    )


def test_throughput_measurements_run_at_a_tiny_size():
    raw = bench_throughput.raw_rate(8, seconds=0.0)
    rollout = bench_throughput.rollout_rate(8, 4, seconds=0.0)
    wire = bench_throughput.wire_cost(8, 4, seconds=0.0, distinct=2)
    learner = bench_throughput.learner_rate(2, seconds=0.0, num_envs=8, rollout_len=4)
    assert raw["steps_per_s"] > 0
    assert rollout["steps_per_s"] > 0 and rollout["collect_us"] > 0 and rollout["encode_us"] > 0
    assert wire["wire_us"] > 0 and wire["bytes_per_transition"] > 0
    assert learner["samples_per_update"] == 2 * 8 * 4 and learner["samples_per_s"] > 0
    results = {
        "machine": {"nproc": 2, "cpu_model": "test"},
        "rollout_len": 4,
        "seconds": 0.0,
        "repeats": 1,
        "actor": [{"num_envs": 8, "raw": raw, "rollout": rollout, "wire": wire}],
        "learner": [{"actors": 2, **learner}],
        "e2e": [{"actors": 1, "steps_per_s": None, "error": "not run"}],
    }
    text = bench_throughput.report(results)
    assert text.count("| 8 |") == 1 and "| 2 | 64 |" in text and "| 1 | — |" in text


def test_best_of_picks_the_best_window():
    runs = iter([{"x": 2.0}, {"x": 5.0}, {"x": 3.0}])
    assert bench_throughput.best_of(3, lambda: next(runs), "x") == {"x": 5.0}
    runs = iter([{"x": 2.0}, {"x": 1.0}])
    assert bench_throughput.best_of(2, lambda: next(runs), "x", higher=False) == {"x": 1.0}


def test_bench_vector_runs_all_three_ways_and_refuses_an_odd_split(capsys):
    import re

    from scripts import bench_vector

    args = ["--env", "CartPole-v1", "--envs", "2", "--seconds", "0.2", "--repeats", "1"]
    assert bench_vector.main(args) == 0
    rows = re.findall(
        r"^  (sync|async|async x2) +([\d,]+) env steps/s", capsys.readouterr().out, re.M
    )
    assert [name for name, _ in rows] == ["sync", "async", "async x2"]
    assert all(int(rate.replace(",", "")) > 0 for _, rate in rows)
    with pytest.raises(SystemExit):
        bench_vector.main(["--env", "CartPole-v1", "--envs", "3"])


def test_bench_atari_times_the_policy_loop_each_way_it_can_overlap():
    """The three policy loops of ``make bench-atari`` run on real ale-py envs; the
    asynchronous one is driven with the half that ``recv`` hands back."""
    pytest.importorskip("ale_py")
    import torch

    from scripts import bench_atari

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        spec, _ = bench_atari.atari_spec("ALE/Pong-v5", 4, 8)
        rates = bench_atari.overlap_rates(spec, 4, 0.05)
    finally:
        torch.set_num_threads(threads)
    assert set(rates) == {"lockstep_1", "lockstep_2", "groups", "ale_async"}
    assert all(math.isfinite(r) and r > 0 for r in rates.values())


def test_bench_e2e_rates_leave_out_the_first_quarter():
    from scripts import bench_e2e

    progress = [
        {"wall_s": 5.0, "env_steps": 500, "trained_per_s": 10.0, "train_busy": 0.1},
        {"wall_s": 30.0, "env_steps": 3_000, "trained_per_s": 99.0, "train_busy": 0.9},
        {"wall_s": 60.0, "env_steps": 6_000, "trained_per_s": 100.0, "train_busy": 0.5},
        {"wall_s": 90.0, "env_steps": 12_000, "trained_per_s": 200.0, "train_busy": 0.7},
    ]
    # After 100 s / 4: from the 30 s event on; its own window's figures belong to the
    # quarter before it, so busy and trained come from the windows that follow.
    assert bench_e2e.steady(progress, 100.0) == {
        "env_steps_per_s": 150,
        "trained_per_s": 150,
        "train_busy": 0.6,
    }
    assert bench_e2e.steady(progress[:2], 100.0)["env_steps_per_s"] is None


def test_bench_e2e_reads_sample_factory_rates_from_its_periodic_lines():
    from scripts import bench_e2e

    def line(clock: str, frames: int, samples: int) -> str:
        return (
            f"[2026-12-04 {clock}][15824] Fps is (10 sec: 819.2, 60 sec: nan, 300 sec: nan). "
            f"Total num frames: {frames}. Throughput: 0: 170.7. Samples: {samples}. "
            "Policy #0 lag: (min: 0.0, avg: 1.2, max: 3.0)"
        )

    text = "\n".join(
        [
            line("04:14:20,000", 0, 1_000),  # before training began: not counted
            line("04:14:25,000", 4_096, 2_000),
            line("04:14:30,000", 8_192, 3_000),  # the first quarter of the four below
            line("04:14:35,000", 12_288, 4_000),
            line("04:14:40,000", 20_480, 6_000),
            line("04:14:45,500", 28_672, 8_000),
        ]
    )
    points = bench_e2e.sf_points(text)
    assert [p[1:] for p in points][:2] == [(0, 1_000), (1_024, 2_000)]
    # from 04:14:30 to 04:14:45.5: 5,120 agent steps trained, 5,000 collected
    assert bench_e2e.sf_steady(points) == {"env_steps_per_s": 323, "trained_per_s": 330}
    assert bench_e2e.sf_steady(points[:2])["env_steps_per_s"] is None


def test_staleness_cells_show_failed_runs_apart_and_its_variants_are_real_flags():
    from learner.flags import parse
    from scripts import staleness

    ok = {"exit": 0, "final_return": 500.0, "steps_to_475": 100_000}
    crashed = {"exit": 1, "final_return": 480.0, "steps_to_475": 90_000}
    killed = {"exit": None, "final_return": None, "steps_to_475": None}
    # A crash is not a correction that failed to hold: counted apart, in no median.
    assert staleness.cell([ok, crashed], "steps_to_475") == "100k (1/2, 1 failed)"
    assert staleness.cell([ok, crashed], "final_return") == "500 (1 failed)"
    assert staleness.cell([killed], "steps_to_475") == "not reached (0 of 1 ran, 1 failed)"
    assert staleness.cell([ok, {**ok, "steps_to_475": None}], "steps_to_475") == "100k (1/2)"
    for name, (algo, flags) in staleness.VARIANTS.items():
        cfg, _ = parse(["--algo", algo, *flags])
        assert cfg.algo == algo and name.startswith(algo)
