"""--config FILE and the presets in configs/ (learner/presets.py): precedence, errors,
every shipped preset usable, and what a run directory records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from learner.config import parse
from learner.presets import CONFIGS_DIR, ConfigError, load_config, shipped
from scripts.procs import python_path


def write(tmp_path, text: str, name: str = "run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_a_config_file_sets_flags_and_the_command_line_wins(tmp_path):
    f = write(
        tmp_path, 'algo = "ppo"\nenvs = 8\nrollout-len = 64\nentropy_coef = 0.02\nclip = 0.3\n'
    )
    cfg, _ = parse(["--config", f])
    assert (cfg.algo, cfg.envs, cfg.rollout_len) == ("ppo", 8, 64)
    assert cfg.loss.entropy_coef == 0.02 and cfg.loss.clip == 0.3
    cfg, _ = parse(["--config", f, "--envs", "4", "--clip", "0.1"])
    assert cfg.envs == 4 and cfg.loss.clip == 0.1 and cfg.loss.entropy_coef == 0.02


def test_precedence_is_defaults_preset_file_command_line(tmp_path):
    # The atari preset sets rollout_len 80 and entropy 0.01; the file overrides one of
    # each; the command line overrides the file.
    f = write(tmp_path, 'env = "ALE/Pong-v5"\nrollout_len = 40\nentropy_coef = 0.05\n')
    cfg, _ = parse(["--config", f])
    assert cfg.preset == "atari" and cfg.algo == "appo"  # the env came from the file
    assert cfg.rollout_len == 40 and cfg.loss.entropy_coef == 0.05
    assert cfg.loss.clip == 0.1  # the preset's, untouched
    cfg, _ = parse(["--config", f, "--rollout-len", "20"])
    assert cfg.rollout_len == 20


def test_config_file_errors_are_usage_errors(tmp_path, capsys):
    assert "not learner flags: nope" in usage_error(
        ["--config", write(tmp_path, "nope = 1\n")], capsys
    )
    assert "not valid TOML" in usage_error(["--config", write(tmp_path, "envs = \n")], capsys)
    assert "No such file" in usage_error(["--config", str(tmp_path / "missing.toml")], capsys)
    # A loss setting the algorithm does not have: refused, as on the command line.
    err = usage_error(["--config", write(tmp_path, 'algo = "a2c"\nclip = 0.2\n')], capsys)
    assert "clip does not apply to --algo a2c" in err
    # A value of the wrong type is checked like a flag's.
    assert "--envs" in usage_error(["--config", write(tmp_path, "envs = -3\n")], capsys)


def test_load_config_refuses_tables_and_keeps_the_preset_table_out(tmp_path):
    with pytest.raises(ConfigError, match="top-level"):
        load_config(Path(write(tmp_path, "[learner]\nenvs = 2\n")), ["envs"])
    path = Path(write(tmp_path, 'envs = 2\n[preset]\nenvs = ["X"]\n'))
    assert load_config(path, ["envs"]) == {"envs": 2}


# Presets for a family or a kind of action space: an env of it.
ENV_OF = {"atari": "ALE/Pong-v5", "continuous": "MountainCarContinuous-v0"}


def test_box_action_spaces_get_the_continuous_preset_unless_they_have_their_own():
    assert parse(["--env", "MountainCarContinuous-v0"])[0].preset == "continuous"
    assert parse(["--env", "Pendulum-v1"])[0].preset == "pendulum"  # its own comes first
    cfg, _ = parse(["--env", "MountainCar-v0"])  # discrete, no preset of its own
    assert cfg.preset == "none" and cfg.algo == "a2c"


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS_DIR.glob("*.toml")))
def test_every_shipped_preset_parses_and_is_chosen_for_its_env(name):
    from learner.config import LearnerConfig, build_parser

    _, loss_names = build_parser()
    known = [f for f in LearnerConfig.__dataclass_fields__ if f != "loss"] + loss_names
    preset = shipped(known, loss_names)[name]
    assert preset.source, f"configs/{name}.toml must say where its numbers came from"
    text = (CONFIGS_DIR / f"{name}.toml").read_text()
    assert text.startswith("#"), "a comment first: what the preset is for and why"
    env = preset.envs[0] if preset.envs else ENV_OF[name]
    cfg, _ = parse(["--env", env])
    assert cfg.preset == name
    for key, value in preset.flags.items():
        got = getattr(cfg, key)
        assert (list(got) if isinstance(got, tuple) else got) == (
            list(value) if isinstance(value, tuple) else value
        ), key
    for key, value in preset.loss.items():
        if hasattr(cfg.loss, key):
            assert getattr(cfg.loss, key) == value, key


def test_a_run_records_its_config_file_and_writes_tensorboard_and_evaluations(tmp_path):
    f = write(
        tmp_path, "max_env_steps = 30000\nrollout_len = 16\neval_every_s = 0.3\neval_episodes = 2\n"
    )
    run = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-m", "learner", "--config", f, "--run-dir", str(run),
         "--log-interval-s", "0.2"],
        check=True, cwd=python_path(), capture_output=True, timeout=300,
    )  # fmt: skip
    recorded = json.loads((run / "config.json").read_text())["config"]
    assert recorded["config"] == f and recorded["rollout_len"] == 16
    assert recorded["preset"] == "cartpole" and recorded["max_env_steps"] == 30000
    events = [json.loads(line) for line in (run / "learner.jsonl").read_text().splitlines()]
    evaluations = [e for e in events if e["event"] == "evaluation"]
    assert evaluations and all(e["episodes"] == 2 for e in evaluations)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"return/mean_100", "speed/env_steps_per_s", "loss/policy", "eval/mean_return"} <= tags
    per_actor = {t for t in tags if t.startswith("actors/steps_per_s/")}
    assert per_actor == {"actors/steps_per_s/local-0", "actors/steps_per_s/local-1"}
    returns = acc.Scalars("return/mean_100")
    assert [s.step for s in returns] == sorted(s.step for s in returns)  # against env steps
    progress = [e for e in events if e["event"] == "progress" and e["mean_return_100"] is not None]
    assert returns[-1].value == pytest.approx(progress[-1]["mean_return_100"], rel=1e-5)
