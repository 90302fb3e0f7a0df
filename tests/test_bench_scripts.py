"""The pure parts of the benchmark scripts: medians, summaries, tables, the solved
criterion of the SB3 peer, and that each throughput measurement runs at a tiny size.
Nothing timed is asserted beyond "positive"."""

from __future__ import annotations

import math

import pytest

from scripts import bench_solve, bench_throughput, sb3_peer


def _run(system: str, seed: int, wall_s: float | None, env_steps: int | None = None) -> dict:
    solved = wall_s is not None
    return {
        "system": system,
        "seed": seed,
        "solved": solved,
        "wall_s": wall_s if solved else 30.0,
        "env_steps": env_steps or 1000,
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 1.0, 2.0], 2.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5),
        ([1.0, 2.0, None], 2.0),  # an unsolved run counts as infinitely slow
        ([1.0, None, None], None),  # most runs unsolved: no finite median
        ([2.0, None], None),
        ([], None),
    ],
)
def test_median_counts_unsolved_as_infinite(values, expected):
    assert bench_solve.median(values) == expected


def test_summarize_keeps_unsolved_runs_out_of_the_numbers():
    runs = [
        _run("ours", 1, 4.0, 100),
        _run("sb3-ppo", 1, 12.0, 600),
        _run("ours", 2, None),
        _run("sb3-ppo", 2, 10.0, 500),
        _run("ours", 3, 6.0, 300),
        _run("sb3-ppo", 3, 14.0, 700),
    ]
    s = bench_solve.summarize(runs)
    assert list(s) == ["ours", "sb3-ppo"]
    assert s["ours"]["wall_s"] == [4.0, None, 6.0]
    assert s["ours"]["env_steps"] == [100, None, 300]
    assert (s["ours"]["solved"], s["ours"]["n"]) == (2, 3)
    assert s["ours"]["median_wall_s"] == 6.0  # of 4, 6, inf
    assert s["ours"]["median_env_steps"] == 300
    assert s["sb3-ppo"]["median_wall_s"] == 12.0


def test_speedup_is_best_peer_median_over_ours():
    runs = [_run("ours", 1, 5.0), _run("sb3-a2c", 1, 40.0), _run("sb3-ppo", 1, 15.0)]
    sp = bench_solve.speedup(bench_solve.summarize(runs))
    assert sp["best_peer"] == "sb3-ppo"
    assert math.isclose(sp["ratio"], 3.0)
    assert "3.00x" in bench_solve.speedup_line(sp)


def test_speedup_is_undefined_without_finite_medians():
    assert bench_solve.speedup(bench_solve.summarize([_run("ours", 1, None)])) is None
    only_ours = bench_solve.summarize([_run("ours", 1, 5.0), _run("sb3-a2c", 1, None)])
    assert bench_solve.speedup(only_ours) is None
    assert "not defined" in bench_solve.speedup_line(None)


def test_solve_table_has_a_row_per_system_and_marks_unsolved():
    runs = [_run("ours", 1, 4.25, 123456), _run("ours", 2, None), _run("sb3-a2c", 1, None)]
    table = bench_solve.solve_table(bench_solve.summarize(runs))
    lines = table.splitlines()
    assert lines[0].startswith("| system |") and lines[1].startswith("|---")
    assert lines[2] == "| ours | 4.2, — | — | 123456, — | — | 1/2 |"
    assert lines[3] == "| sb3-a2c | — | — | — | — | 0/1 |"


def test_without_sb3_only_ours_runs_and_the_report_says_why():
    systems, notes = bench_solve.plan(["ours", "sb3-a2c", "sb3-ppo"], sb3_installed=False)
    assert systems == ["ours"]
    assert len(notes) == 1 and "pip install -e '.[bench]'" in notes[0]
    assert bench_solve.plan(["ours", "sb3-ppo"], sb3_installed=True) == (["ours", "sb3-ppo"], [])


def test_machine_info_names_the_machine():
    info = bench_solve.machine_info()
    assert info["nproc"] >= 1 and info["cpu"] and info["torch"]


def test_solve_tracker_needs_a_full_window_at_the_target():
    tracker = sb3_peer.SolveTracker(target=475.0, window=100)
    assert not tracker.update([{"episode": {"r": 500.0}} for _ in range(99)])
    assert not tracker.update([{}, {"terminal_observation": None}])  # no episode ended
    assert tracker.update([{"episode": {"r": 500.0}}])
    assert tracker.episodes == 100
    # The window slides: 95 x 500 + 5 x 0 averages exactly 475 (solved), one more 0 not.
    assert tracker.update([{"episode": {"r": 0.0}} for _ in range(5)])
    assert not tracker.update([{"episode": {"r": 0.0}}])


def test_linear_schedule_decays_to_zero():
    schedule = sb3_peer.linear(1e-3)
    assert schedule(1.0) == pytest.approx(1e-3) and schedule(0.0) == 0.0


def test_sb3_peer_explains_a_missing_install(monkeypatch, capsys):
    monkeypatch.setattr(sb3_peer, "_sb3_missing", lambda: True)
    assert sb3_peer.main(["--algo", "ppo", "--seed", "1"]) == 2
    assert "pip install -e '.[bench]'" in capsys.readouterr().err


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
