"""--resume through the real learner (serial mode, so no sockets): the checkpoint
records the run spec and settings; incompatible changes are refused with the fields
named, compatible ones are applied explicitly (the learning rate is the current flag's,
not the optimizer state's) and logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learner.__main__ import main
from scripts.procs import python_path

BASE = ["--serial", "--algo", "a2c", "--actors", "1", "--seed", "2", "--envs", "4"]


@pytest.fixture(autouse=True)
def _logging(restore_logging):
    yield


def events(run_dir, name):
    lines = (run_dir / "learner.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def first_run(run_dir):
    assert main([*BASE, "--max-env-steps", "3000", "--run-dir", str(run_dir)]) == 0
    return json.loads((run_dir / "summary.json").read_text())


def test_resume_applies_a_new_learning_rate_and_logs_the_change(tmp_path):
    before = first_run(tmp_path)
    argv = [*BASE, "--max-env-steps", "6000", "--lr", "0.0005", "--entropy-coef", "0.01"]
    assert main([*argv, "--resume", "--run-dir", str(tmp_path)]) == 0
    (resumed,) = events(tmp_path, "resumed")
    assert resumed["lr"] == 0.0005, "the optimizer state's old rate must not win"
    assert resumed["env_steps"] == before["env_steps"]
    (changed,) = events(tmp_path, "resume_settings_changed")
    assert changed["lr"] == [0.004, 0.0005]
    assert changed["entropy_coef"] == [0.0, 0.01]
    after = json.loads((tmp_path / "summary.json").read_text())
    assert after["env_steps"] >= 6000 and after["updates"] > before["updates"]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--hidden", "32,32"], "hidden"),
        (["--algo", "a3c"], "algo"),
        (["--env", "Acrobot-v1"], "env_id"),
        (["--optimizer", "rmsprop"], "optimizer"),
    ],
)
def test_resume_refuses_an_incompatible_change_naming_the_field(tmp_path, capsys, flags, named):
    first_run(tmp_path)
    capsys.readouterr()
    argv = [*BASE, *flags, "--max-env-steps", "6000", "--resume", "--run-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "--resume" in err
    assert not events(tmp_path, "resumed")


def test_resume_refuses_when_checkpoints_exist_but_none_loads(tmp_path, capsys):
    first_run(tmp_path)
    for path in (tmp_path / "checkpoints").glob("ckpt-*.pt"):
        path.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([*BASE, "--max-env-steps", "6000", "--resume", "--run-dir", str(tmp_path)])
    assert info.value.code == 2
    assert "no checkpoint" in capsys.readouterr().err
    # Nothing was overwritten or pruned.
    assert all(
        p.read_bytes() == b"not a checkpoint" for p in (tmp_path / "checkpoints").glob("*.pt")
    )


def test_a_fresh_run_is_refused_where_an_earlier_runs_checkpoints_are(tmp_path, capsys):
    # Pruning ranks by step: a fresh run here would see each of its own checkpoints
    # deleted at its next save (the earlier run's higher steps outrank them), and a later
    # --resume would take the earlier run's. Nothing of the earlier run is touched.
    first_run(tmp_path)
    held = sorted((tmp_path / "checkpoints").glob("ckpt-*.pt"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([*BASE, "--max-env-steps", "3000", "--run-dir", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "holds checkpoints of an earlier run" in err and "--resume" in err
    assert sorted((tmp_path / "checkpoints").glob("ckpt-*.pt")) == held


def test_an_unreadable_newer_checkpoint_is_set_aside_and_stale_temp_files_removed(tmp_path):
    # Resumed past a corrupt newest checkpoint, the run keeps its --keep-checkpoints of
    # good ones: the corrupt file is renamed out of the listing (kept for a post-mortem),
    # not left to take a place and outrank them; a save killed mid-write left a temp
    # file that the next start removes.
    first_run(tmp_path)
    ckpts = tmp_path / "checkpoints"
    corrupt = ckpts / "ckpt-000999999999.pt"
    corrupt.write_bytes(b"not a checkpoint")
    (ckpts / ".ckpt-5000.4242.tmp").write_bytes(b"half a checkpoint")
    argv = [*BASE, "--max-env-steps", "6000", "--checkpoint-every-s", "0.01"]
    assert main([*argv, "--keep-checkpoints", "2", "--resume", "--run-dir", str(tmp_path)]) == 0
    (aside,) = events(tmp_path, "checkpoint_set_aside")
    assert aside["path"] == str(corrupt) and Path(aside["to"]).read_bytes() == b"not a checkpoint"
    assert not list(ckpts.glob(".ckpt-*.tmp"))
    kept = sorted(ckpts.glob("ckpt-*.pt"))
    assert len(kept) == 2 and corrupt not in kept
    assert all(int(p.stem.split("-")[1]) >= 3000 for p in kept)  # this run's own


def test_a_refused_resume_leaves_none_of_its_local_actors_running(tmp_path):
    """Local actors start before the learner builds (learner/local.py); a build that then
    fails (here: --resume over checkpoints none of which loads) stops them."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-000000001000.pt").write_bytes(b"not a checkpoint")
    done = subprocess.run(
        [sys.executable, "-m", "learner", "--actors", "2", "--port", "0", "--resume",
         "--run-dir", str(tmp_path), "--console", "plain"],
        env={**os.environ, "PYTHONPATH": python_path()},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "no checkpoint" in done.stderr
    assert len(list(tmp_path.glob("actor-local-*.stderr"))) == 2  # they had been started
    running = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if b"actor" in argv and str(tmp_path).encode() in argv:
            running.append(argv)
    assert not running, running
