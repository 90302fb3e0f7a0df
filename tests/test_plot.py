"""scripts/plot.py on run directories written by hand the way the learner writes them
(config.json, learner.jsonl with the same event names and fields, summary.json): no
training, no sockets. The numbers are checked through ``read_curve``, the files and the
errors through ``main``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scripts import plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAMP = {"role": "learner", "level": "info", "timestamp": "2026-11-24T10:07:45.794230Z"}


def settings(algo: str, env: str, seed: int, target_return: float | None) -> dict:
    """The learner's settings, as config.json's ``config`` and the learner_config event hold them."""
    return {
        "env": env,
        "algo": algo,
        "seed": seed,
        "target_return": target_return,
        "max_seconds": 120.0,
        "actors": 2,
        "envs": 16,
        "rollout_len": 32,
        "lr": 0.004,
        "log_interval_s": 1.0,
    }


def progress(wall_s: float, env_steps: int, mean: float | None, std: float | None) -> dict:
    return {
        "wall_s": wall_s,
        "env_steps": env_steps,
        "steps_per_s": env_steps / wall_s if wall_s else 0.0,
        "updates": env_steps // 512,
        "episodes": env_steps // 150,
        "mean_return_100": mean,
        "return_std_100": std,
        "policy_lag_mean": 0.0 if mean is not None else None,
        "grad_norm": 1.5 if mean is not None else None,
        "actors": 2,
        "event": "progress",
        **STAMP,
    }


def write_run(
    root: Path,
    name: str,
    points: list[tuple[float, int, float | None, float | None]],
    *,
    algo: str = "a2c",
    env: str = "CartPole-v1",
    seed: int = 1,
    target_return: float | None = None,
    solve_at: float = 475.0,
    finished: tuple[float, int, float] | None = None,
    config_json: bool = True,
    torn_tail: bool = False,
) -> Path:
    """A run directory: config.json, and learner.jsonl with learner_config, one progress
    event per (wall_s, env_steps, mean, std), and (``finished``: wall_s, env_steps, mean)
    run_finished plus summary.json."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    cfg = settings(algo, env, seed, target_return)
    if config_json:
        spec = {"env_id": env, "algo": algo, "num_envs": 16, "rollout_len": 32}
        (run_dir / "config.json").write_text(json.dumps({"config": cfg, "spec": spec}, indent=2))
    events = [
        {**cfg, "device_used": "cpu", "solve_at": solve_at, "event": "learner_config", **STAMP},
        {"endpoint": "tcp://127.0.0.1:40001", "event": "learner_listening", **STAMP},
        {"actor_id": "local-0", "event": "actor_joined", **STAMP},
        *(progress(*p) for p in points),
    ]
    if finished is not None:
        wall_s, env_steps, mean = finished
        summary = {"solved": mean >= solve_at, "wall_s": wall_s, "env_steps": env_steps}
        summary |= {"episodes": env_steps // 150, "mean_return_100": mean, "algo": algo}
        summary |= {"env": env, "seed": seed, "actors": 2}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        events.append({"reason": "solved", **summary, "event": "run_finished", **STAMP})
    text = "".join(json.dumps(e) + "\n" for e in events)
    if torn_tail:
        text += '{"wall_s": 9.1, "env_steps": 99'  # killed mid-write
    (run_dir / "learner.jsonl").write_text(text)
    return run_dir


CARTPOLE_POINTS = [
    (0.0, 0, None, None),  # no episode finished yet
    (1.0, 20_000, 22.5, 11.0),
    (2.0, 60_000, 180.0, 60.0),
    (3.0, 110_000, 430.0, 80.0),
]


def cartpole_run(root: Path, name: str = "a2c-seed1", **kw) -> Path:
    return write_run(root, name, CARTPOLE_POINTS, finished=(3.4, 121_000, 476.0), **kw)


def test_read_curve_takes_progress_points_and_the_final_summary(tmp_path):
    curve = plot.read_curve(cartpole_run(tmp_path))
    assert curve.label == "a2c CartPole-v1 seed 1"
    assert curve.x == (20_000.0, 60_000.0, 110_000.0, 121_000.0)
    assert curve.y == (22.5, 180.0, 430.0, 476.0)
    assert curve.std[:3] == (11.0, 60.0, 80.0)
    assert math.isnan(curve.std[3])  # run_finished logs no std: the band stops there
    assert curve.target == 475.0  # target_return unset: the env threshold (solve_at)
    assert curve.progress_events == 4


def test_read_curve_against_wall_seconds(tmp_path):
    curve = plot.read_curve(cartpole_run(tmp_path), "wall_s")
    assert curve.x == (1.0, 2.0, 3.0, 3.4)
    assert curve.y == (22.5, 180.0, 430.0, 476.0)


def test_target_return_wins_over_the_env_threshold(tmp_path):
    curve = plot.read_curve(cartpole_run(tmp_path, target_return=200.0, solve_at=200.0))
    assert curve.target == 200.0
    logged_only = cartpole_run(tmp_path, "old", target_return=300.0, config_json=False)
    assert plot.read_curve(logged_only).target == 300.0


def test_label_comes_from_the_log_without_config_json_and_a_torn_line_is_skipped(tmp_path):
    run_dir = write_run(
        tmp_path, "run-x", CARTPOLE_POINTS, algo="a3c", seed=7, config_json=False, torn_tail=True
    )
    curve = plot.read_curve(run_dir)
    assert curve.label == "a3c CartPole-v1 seed 7"
    assert curve.y == (22.5, 180.0, 430.0)


def test_label_falls_back_to_the_directory_name(tmp_path):
    run_dir = tmp_path / "mystery-run"
    run_dir.mkdir()
    (run_dir / "learner.jsonl").write_text(json.dumps(progress(1.0, 500, 9.0, 1.0)) + "\n")
    curve = plot.read_curve(run_dir)
    assert (curve.label, curve.x, curve.target) == ("mystery-run", (500.0,), None)


def test_main_plots_two_runs_into_one_png_here(tmp_path, monkeypatch, capsys):
    a = cartpole_run(tmp_path / "runs")
    b = write_run(
        tmp_path / "runs",
        "a3c-acrobot",
        [(1.0, 10_000, -500.0, 0.0), (2.0, 30_000, -250.0, 90.0), (3.0, 50_000, -120.0, 40.0)],
        algo="a3c",
        env="Acrobot-v1",
        seed=2,
        solve_at=-100.0,
    )
    monkeypatch.chdir(tmp_path)
    assert plot.main([str(a), str(b), "--title", "two runs"]) == 0
    out = tmp_path / "plot.png"
    assert capsys.readouterr().out.strip() == "plot.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_one_run_plots_into_its_own_directory(tmp_path, capsys):
    run_dir = cartpole_run(tmp_path)
    assert plot.main([str(run_dir), "--x", "wall_s"]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "plot.png")
    assert (run_dir / "plot.png").read_bytes()[:8] == PNG_MAGIC


def test_the_same_label_twice_gets_the_directory_name(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plot, "draw", lambda curves, labels, *rest: drawn.update(labels=labels))
    a, b = cartpole_run(tmp_path, "first"), cartpole_run(tmp_path, "again")
    assert plot.main([str(a), str(b), "--out", str(tmp_path / "p.png")]) == 0
    assert drawn["labels"] == ["a2c CartPole-v1 seed 1 (first)", "a2c CartPole-v1 seed 1 (again)"]


def test_a_missing_directory_exits_2_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        plot.main([str(cartpole_run(tmp_path)), str(tmp_path / "nope")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope'}: no such directory" in err and "Traceback" not in err


def test_a_directory_without_learner_jsonl_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        plot.main([str(tmp_path / "empty")])
    assert exc.value.code == 2
    assert "no learner.jsonl" in capsys.readouterr().err


def test_a_run_without_progress_is_skipped_with_a_warning(tmp_path, monkeypatch, capsys):
    drawn = {}
    monkeypatch.setattr(plot, "draw", lambda curves, labels, *rest: drawn.update(labels=labels))
    started = write_run(tmp_path, "just-started", [])
    early = write_run(tmp_path, "early", [(0.0, 0, None, None), (1.0, 900, None, None)])
    good = cartpole_run(tmp_path)
    assert plot.main([str(started), str(early), str(good), "--out", str(tmp_path / "p.png")]) == 0
    assert drawn["labels"] == ["a2c CartPole-v1 seed 1"]
    err = capsys.readouterr().err
    assert f"warning: {started}: no progress events yet; not plotted" in err
    assert f"warning: {early}: no episode finished yet (2 progress events" in err


def test_no_run_with_data_exits_2(tmp_path, capsys):
    started = write_run(tmp_path, "just-started", [])
    with pytest.raises(SystemExit) as exc:
        plot.main([str(started)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no progress events yet" in err and "no run has a mean return to plot yet" in err
    assert not (started / "plot.png").exists()
