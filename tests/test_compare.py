"""scripts/compare.py and scripts/runlog.py on synthetic learner logs: no training, no
sockets. The logs are written the way the learner writes them (one JSON object per
line, the same event names and fields), then read back through the real functions."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from scripts import aggregate, compare, compare_report, runlog

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def progress(wall_s, env_steps, mean_return, *, std=None, grad=None, lag=None, dropped=0):
    return {
        "event": "progress",
        "wall_s": wall_s,
        "env_steps": env_steps,
        "episodes": env_steps // 100,
        "updates": env_steps // 500,
        "mean_return_100": mean_return,
        "return_std_100": std,
        "grad_norm": grad,
        "policy_lag_mean": lag,
        "dropped_stale": dropped,
    }


def reached(threshold, env_steps, wall_s):
    return {
        "event": "return_reached",
        "threshold": threshold,
        "env_steps": env_steps,
        "episodes": env_steps // 100,
        "updates": env_steps // 500,
        "wall_s": wall_s,
    }


def write_run(
    root: Path,
    algo: str,
    seed: int,
    events: list[dict],
    *,
    reason: str | None = "solved",
    torn_tail: bool = False,
) -> Path:
    """A run directory as the learner leaves it: learner.jsonl, and (if it finished)
    run_finished plus summary.json built from the last progress event."""
    run_dir = root / f"{algo}-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)  # compare empties it before each run
    head = {"event": "learner_config", "algo": algo, "seed": seed, "env": "CartPole-v1", "envs": 32}
    lines = [head, *events]
    if reason is not None:
        last = [e for e in events if e["event"] == "progress"][-1]
        summary = {
            "solved": reason == "solved",
            **{k: last[k] for k in ("wall_s", "env_steps", "episodes", "updates")},
            "mean_return_100": last["mean_return_100"],
            "algo": algo,
            "seed": seed,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
        lines.append({"event": "run_finished", "reason": reason, **summary})
    text = "".join(json.dumps(e) + "\n" for e in lines)
    if torn_tail:
        text += '{"event": "progress", "wall_s": 9'  # killed mid-write
    (run_dir / "learner.jsonl").write_text(text)
    return run_dir


def a2c_runs(root: Path) -> list[aggregate.RunResult]:
    """Three seeds: two solve (475 at 3000 and 5000 steps), one only reaches 195 and
    stops at its time cap. 195 is reached at 1000, 2000 and 4000 steps."""
    s1 = [
        progress(0.0, 0, None),
        progress(1.0, 1000, 200.0, std=10.0, grad=1.0, lag=0.0),
        progress(2.0, 3000, 480.0, std=20.0, grad=3.0, lag=0.0),
    ]
    s2 = [
        progress(1.0, 2000, 195.0, std=30.0, grad=2.0, lag=0.0),
        progress(3.0, 5000, 475.0, std=40.0, grad=4.0, lag=0.0),
    ]
    s3 = [
        progress(2.0, 4000, 196.0, std=10.0, grad=5.0, lag=0.0),
        progress(6.0, 6000, 300.0, std=10.0, grad=None, lag=None),
    ]
    marks = {
        1: [reached(195, 1000, 1.0), reached(475, 3000, 2.0)],
        2: [reached(195, 2000, 1.0), reached(475, 5000, 3.0)],
        3: [reached(195, 4000, 2.0)],
    }
    dirs = [
        write_run(root, "a2c", 1, s1 + marks[1]),
        write_run(root, "a2c", 2, s2 + marks[2]),
        write_run(root, "a2c", 3, s3 + marks[3], reason="max_seconds"),
    ]
    return [aggregate.load_run(d, "a2c", i, returncode=0) for i, d in enumerate(dirs, 1)]


def failed_a3c_runs(root: Path) -> list[aggregate.RunResult]:
    """a3c: seed 1 crashes after reaching 195 (torn last line, no summary); seed 2 is
    killed at the hard timeout."""
    crashed = write_run(
        root,
        "a3c",
        1,
        [
            progress(1.0, 1500, 210.0, std=5.0, grad=2.0, lag=3.0, dropped=7),
            reached(195, 1500, 1.0),
        ],
        reason=None,
        torn_tail=True,
    )
    killed = write_run(
        root,
        "a3c",
        2,
        [progress(1.0, 800, 50.0, std=5.0, grad=6.0, lag=4.0, dropped=9)],
        reason="signal",
    )
    return [
        aggregate.load_run(crashed, "a3c", 1, returncode=1),
        aggregate.load_run(killed, "a3c", 2, returncode=-9, timed_out=True),
    ]


def test_runlog_reads_what_the_learner_writes(tmp_path):
    run_dir = write_run(
        tmp_path,
        "a3c",
        1,
        [progress(0.5, 100, 20.0), reached(195.0, 90, 0.4), reached(195.0, 95, 0.5)],
        torn_tail=True,
    )
    events = runlog.read_events(run_dir / "learner.jsonl")
    assert [e["event"] for e in events] == [
        "learner_config",
        "progress",
        "return_reached",
        "return_reached",
        "run_finished",
    ]
    assert runlog.milestones(events) == {
        195.0: {"env_steps": 90, "episodes": 0, "updates": 0, "wall_s": 0.4}
    }
    series = runlog.progress_series(events)
    assert series["env_steps"] == [100] and series["grad_norm"] == [None]
    assert runlog.finished(events)["reason"] == "solved"
    assert runlog.learner_config(events)["envs"] == 32
    assert runlog.read_events(tmp_path / "missing.jsonl") == []
    assert runlog.read_summary(tmp_path) is None


def test_milestone_medians_exclude_seeds_that_did_not_reach_them(tmp_path):
    row = aggregate.algo_row("a2c", a2c_runs(tmp_path))
    assert row["runs"] == 3
    assert (row["reached_195"], row["reached_475"]) == (3, 2)
    assert row["env_steps_to_195"] == (2000.0, 1000.0, 4000.0)
    assert row["env_steps_to_475"] == (4000.0, 3000.0, 5000.0)  # median of two: their mean
    assert row["wall_s_to_475"] == (2.5, 2.0, 3.0)
    assert row["episodes_to_475"] == (40.0, 30.0, 50.0)
    assert row["final_return"] == (475.0, 300.0, 480.0)
    assert row["capped"] == 1 and row["crashed"] == 0


def test_training_figures_pool_progress_events_over_seeds(tmp_path):
    row = aggregate.algo_row("a2c", a2c_runs(tmp_path))
    norms = [1.0, 3.0, 2.0, 4.0, 5.0]  # the null of seed 3's last event is left out
    assert row["grad_norm"] == pytest.approx((np.mean(norms), np.std(norms)))
    stds = [10.0, 20.0, 30.0, 40.0, 10.0, 10.0]
    assert row["return_var"] == pytest.approx(np.mean(np.square(stds)))
    assert row["policy_lag"] == 0.0


def test_failed_runs_count_as_not_solved_and_their_milestones_for_nothing(tmp_path):
    crashed, killed = failed_a3c_runs(tmp_path)
    assert crashed.outcome == "crashed" and crashed.summary["solved"] is False
    assert crashed.summary["env_steps"] == 1500  # from the last progress event
    assert killed.outcome == "timeout" and killed.summary["solved"] is False
    assert 195.0 in crashed.milestones  # it logged reaching 195, then crashed ...
    row = aggregate.algo_row("a3c", [crashed, killed])
    assert (row["reached_195"], row["reached_475"]) == (0, 0)  # ... which is no solve
    assert row["env_steps_to_475"] is None
    assert (row["capped"], row["crashed"]) == (1, 1)
    assert row["dropped_stale"] == (8.0, 7.0, 9.0)
    assert "TIMEOUT" in aggregate.describe(killed) and "CRASHED" in aggregate.describe(crashed)


def test_table_shows_k_of_n_and_dashes(tmp_path):
    rows = [
        aggregate.algo_row("a2c", a2c_runs(tmp_path)),
        aggregate.algo_row("a3c", failed_a3c_runs(tmp_path)),
    ]
    table = compare_report.format_table(rows).splitlines()
    assert len(table) == 4
    a2c = [c.strip() for c in table[2].strip("|").split("|")]
    a3c = [c.strip() for c in table[3].strip("|").split("|")]
    assert a2c[:4] == ["a2c", "3/3", "2/3", "2000 [1000–4000]"]
    assert a2c[6] == "4000 [3000–5000]"
    assert a3c[:3] == ["a3c", "0/2", "0/2"] and a3c[6] == "–"  # failed runs reach nothing
    assert len(a2c) == len(table[0].strip("|").split("|"))


def test_grid_interpolation_holds_or_drops_the_end():
    xs, ys = np.array([10.0, 20.0]), np.array([1.0, 3.0])
    grid = np.array([0.0, 10.0, 15.0, 20.0, 30.0])
    held = compare_report.on_grid(xs, ys, grid, hold=True)
    assert math.isnan(held[0]) and list(held[1:]) == [1.0, 2.0, 3.0, 3.0]
    assert math.isnan(compare_report.on_grid(xs, ys, grid, hold=False)[-1])


def test_band_is_median_min_max_over_runs_with_a_value(tmp_path):
    runs = a2c_runs(tmp_path)
    grid = np.array([1000.0, 5000.0, 6000.0])
    med, lo, hi = compare_report.band(runs, "env_steps", "mean_return_100", grid, hold=True)
    # At 1000 steps only seed 1 has a point yet; at 6000 seeds 1 and 2 hold their last value.
    assert (med[0], lo[0], hi[0]) == (200.0, 200.0, 200.0)
    assert (med[2], lo[2], hi[2]) == (475.0, 300.0, 480.0)
    # No hold: a run is missing after its last grad norm (seed 1: 3000, seed 2: 5000,
    # seed 3: 4000; seed 3 starts at 4000).
    med, lo, hi = compare_report.band(
        runs, "env_steps", "grad_norm", np.array([3000.0, 4500.0, 5500.0]), hold=False
    )
    assert (med[0], lo[0], hi[0]) == pytest.approx(((3.0 + 8 / 3) / 2, 8 / 3, 3.0))
    assert (med[1], lo[1], hi[1]) == pytest.approx((11 / 3, 11 / 3, 11 / 3))
    assert math.isnan(med[2])


def test_report_plots_and_raw_files_are_written(tmp_path):
    runs = a2c_runs(tmp_path / "runs") + failed_a3c_runs(tmp_path / "runs")
    out = tmp_path / "out"
    table = compare_report.write_report(
        runs,
        ("a2c", "a3c"),
        out,
        command="python scripts/compare.py",
        learner_cmd="python -m learner",
    )
    report = (out / "report.md").read_text()
    assert (
        table in report
        and "python scripts/compare.py" in report
        and "## How each number is computed" in report
    )
    assert "a3c seed 1: crashed" in report and "a3c seed 2: timeout" in report
    for name in ("reward_vs_steps.png", "reward_vs_time.png", "grad_norm.png", "policy_lag.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in report
    raw = json.loads((out / "runs.json").read_text())
    assert [(r["algo"], r["seed"], r["outcome"]) for r in raw["runs"]] == [
        ("a2c", 1, "solved"),
        ("a2c", 2, "solved"),
        ("a2c", 3, "max_seconds"),
        ("a3c", 1, "crashed"),
        ("a3c", 2, "timeout"),
    ]
    assert raw["runs"][0]["progress"]["env_steps"] == [0, 1000, 3000]
    assert raw["runs"][0]["milestones"][1]["threshold"] == 475.0
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert (
        len(rows) == 5
        and rows[0]["env_steps_to_475"] == "3000"
        and rows[2]["env_steps_to_475"] == ""
    )


def test_config_rejects_flags_it_owns_and_every_algo_gets_the_same_flags():
    with pytest.raises(ValueError, match="--seed"):
        compare.CompareConfig(extra="--lr 0.01 --seed=3")
    with pytest.raises(ValueError, match="--algos"):
        compare.CompareConfig(algos=("no-such-algo",))
    cfg = compare.CompareConfig(envs=8, extra="--lr 0.01")
    cmds = {a: compare.learner_command(cfg, a, 1, Path("r")) for a in compare.ALGOS}
    assert cmds["a2c"][cmds["a2c"].index("--envs") + 1] == "8"
    assert "--rollout-len" not in cmds["a2c"] and cmds["a2c"][-2:] == ["--lr", "0.01"]
    strip = {"--algo"}
    same = {
        a: [x for i, x in enumerate(c) if x not in strip and c[i - 1] not in strip]
        for a, c in cmds.items()
    }
    assert same["a2c"] == same["a3c"] == same["a3c-grad"]


def test_main_runs_the_plan_and_reports(tmp_path, monkeypatch, capsys):
    """main() with the learner replaced by a stub that writes a solved run's log."""
    calls = []

    def fake_execute(cmd, run_dir, timeout_s):
        calls.append(cmd)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        algo, seed = cmd[cmd.index("--algo") + 1], int(cmd[cmd.index("--seed") + 1])
        write_run(
            run_dir.parent,
            algo,
            seed,
            [progress(1.0, 1000, 480.0, grad=1.0), reached(195, 500, 0.5)],
        )
        return 0, False, 1.0

    monkeypatch.setattr(compare, "execute", fake_execute)
    out = tmp_path / "cmp"
    assert (
        compare.main(
            ["--algos", "a2c,a3c", "--seeds", "1,2", "--max-seconds", "5", "--out", str(out)]
        )
        == 0
    )
    assert [(c[c.index("--algo") + 1], c[c.index("--seed") + 1]) for c in calls] == [
        ("a2c", "1"),
        ("a3c", "1"),
        ("a2c", "2"),
        ("a3c", "2"),
    ]
    printed = capsys.readouterr().out
    assert "[4/4] a3c seed=2: solved" in printed and "| a2c | 2/2 | 0/2 |" in printed
    assert (out / "report.md").exists()
