"""--config FILE and the presets in configs/ (learner/presets.py): precedence, errors,
every shipped preset usable, and what a run directory records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from learner.flags import parse
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


def test_algo_tables_apply_to_their_algorithm_only(tmp_path):
    f = write(
        tmp_path,
        'algo = "ppo"\nlr = 1e-3\nrollout_len = 64\n[algos.ppo]\nclip = 0.3\n'
        "[algos.a2c]\nrollout_len = 8\nlr = 7e-4\nnormalize_advantages = true\n"
        "[algos.impala]\nrollout_len = 20\n",
    )
    cfg, _ = parse(["--config", f])  # ppo: the top level and its table
    assert (cfg.algo, cfg.rollout_len, cfg.lr, cfg.loss.clip) == ("ppo", 64, 1e-3, 0.3)
    cfg, _ = parse(["--config", f, "--algo", "a2c"])  # ppo's clip is not a2c's: left out
    assert (cfg.rollout_len, cfg.lr, cfg.loss.normalize_advantages) == (8, 7e-4, True)
    cfg, _ = parse(["--config", f, "--algo", "a2c", "--lr", "1e-2"])  # the command line wins
    assert (cfg.rollout_len, cfg.lr) == (8, 1e-2)
    cfg, _ = parse(["--config", f, "--algo", "impala"])
    assert (cfg.rollout_len, cfg.lr) == (20, 1e-3)


def test_algo_tables_are_checked(tmp_path, capsys):
    err = usage_error(["--config", write(tmp_path, "[algos.nope]\nenvs = 2\n")], capsys)
    assert "[algos.nope]: unknown algorithm" in err
    err = usage_error(["--config", write(tmp_path, '[algos.a2c]\nalgo = "ppo"\n')], capsys)
    assert "cannot set algo" in err
    err = usage_error(["--config", write(tmp_path, "[algos.a2c]\nenvz = 2\n")], capsys)
    assert "[algos.a2c]: not learner flags: envz" in err
    f = write(tmp_path, 'algo = "a2c"\n[algos.a2c]\nclip = 0.2\n')
    assert "[algos.a2c] clip is not a loss setting of a2c" in usage_error(["--config", f], capsys)
    # A table is checked whichever algorithm is chosen, not only when its own is.
    f = write(tmp_path, 'algo = "ppo"\n[algos.a2c]\nclip = 0.3\n')
    assert "[algos.a2c] clip is not a loss setting of a2c" in usage_error(["--config", f], capsys)


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('optimizer = "sgd"', "optimizer = 'sgd': not one of"),
        ('console = "x"', "console = 'x': not one of"),
        ("envs = 2.5", "envs = 2.5"),
        ("seed = true", "seed = True"),
        ("hidden = [64.7, 3]", "hidden = (64.7, 3): invalid literal for int()"),
        ('obs_norm = "maybe"', "obs_norm = 'maybe': expected true/false"),
        ('config = "other.toml"', "has no meaning inside a config file"),
    ],
)
def test_a_files_bad_value_is_a_usage_error_naming_it(tmp_path, capsys, line, named):
    # As the same value on the command line would be: refused at once, by name, never
    # accepted to fail later inside torch or as a traceback.
    assert named in usage_error(["--config", write(tmp_path, line + "\n")], capsys)


def test_a_files_lists_and_strings_read_as_the_command_line_reads_them(tmp_path):
    cfg, _ = parse(["--config", write(tmp_path, 'hidden = [32, 16]\npreset = "none"\n')])
    assert cfg.hidden == (32, 16) and cfg.preset == "none"


def test_a_presets_algo_table_applies_when_its_algorithm_is_chosen(tmp_path, monkeypatch, capsys):
    cfg, _ = parse(["--env", "Pendulum-v1"])  # the preset's own algorithm: its top level
    assert (cfg.algo, cfg.rollout_len, cfg.obs_norm) == ("ppo", 128, False)
    cfg, _ = parse(["--env", "Pendulum-v1", "--algo", "a2c"])
    assert (cfg.preset, cfg.rollout_len, cfg.obs_norm) == ("pendulum", 8, True)
    assert (cfg.loss.gamma, cfg.loss.gae_lambda) == (0.9, 0.9)  # the top level's, the table's
    cfg, _ = parse(["--env", "Pendulum-v1", "--algo", "a2c", "--rollout-len", "16"])
    assert cfg.rollout_len == 16  # the command line still wins
    f = write(tmp_path, "[algos.a2c]\nrollout_len = 32\n", "mine.toml")
    cfg, _ = parse(["--env", "Pendulum-v1", "--algo", "a2c", "--config", f])
    assert cfg.rollout_len == 32 and cfg.obs_norm  # --config's table over the preset's
    # A preset whose table gives its algorithm a loss setting it lacks is refused.
    monkeypatch.setattr("learner.presets.CONFIGS_DIR", tmp_path)
    write(tmp_path, '[algos.a2c]\nclip = 0.1\n[preset]\nenvs = ["Acrobot-v1"]\n', "bad.toml")
    err = usage_error(["--env", "Acrobot-v1", "--algo", "a2c"], capsys)
    assert "--preset bad: [algos.a2c] clip is not a loss setting of a2c" in err


def test_load_config_refuses_tables_and_keeps_the_preset_table_out(tmp_path):
    with pytest.raises(ConfigError, match="top-level"):
        load_config(Path(write(tmp_path, "[learner]\nenvs = 2\n")), ["envs"])
    path = Path(write(tmp_path, 'envs = 2\n[preset]\nenvs = ["X"]\n'))
    assert load_config(path, ["envs"]) == {"envs": 2}


# Presets for a family or a kind of action space: an env of it.
ENV_OF = {
    "atari": "ALE/Pong-v5",
    "continuous": "MountainCarContinuous-v0",
    "discrete": "MountainCar-v0",
}


def test_without_the_configs_directory_the_learner_says_so_instead_of_training_bare(
    tmp_path, monkeypatch, capsys
):
    # An installed wheel carries no configs/: Pong must not quietly lose its preset.
    import learner.presets

    monkeypatch.setattr(learner.presets, "CONFIGS_DIR", tmp_path / "configs")
    assert "no presets" in usage_error(["--env", "CartPole-v1"], capsys)
    cfg, _ = parse(["--env", "CartPole-v1", "--preset", "none"])
    assert cfg.preset == "none"


def test_each_kind_of_action_space_gets_its_preset_unless_the_env_has_its_own():
    assert parse(["--env", "MountainCarContinuous-v0"])[0].preset == "continuous"
    assert parse(["--env", "Pendulum-v1"])[0].preset == "pendulum"  # its own comes first
    cfg, _ = parse(["--env", "MountainCar-v0"])  # discrete, no preset of its own
    assert cfg.preset == "discrete" and cfg.algo == "ppo"
    cfg, _ = parse(["--env", "zmq_a3c/Catch-v0"])  # discrete, but images: not that one
    assert cfg.preset == "none" and cfg.algo == "a2c"
    cfg, _ = parse(["--env", "CarRacing-v3"])  # Box actions, but images (--obs-norm refuses)
    assert cfg.preset == "none" and not cfg.obs_norm


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS_DIR.glob("*.toml")))
def test_every_shipped_preset_parses_and_is_chosen_for_its_env(name):
    from learner.config import LearnerConfig
    from learner.flags import build_parser

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
    for algo, table in preset.algos.items():  # each table applies to its algorithm
        cfg, _ = parse(["--env", env, "--algo", algo])
        for key, value in table.items():
            got = getattr(cfg.loss if hasattr(cfg.loss, key) else cfg, key)
            assert got == value, (algo, key)


def test_a_run_records_its_config_file_and_writes_tensorboard_and_evaluations(tmp_path):
    f = write(
        # A target no policy reaches: the run lasts its whole step budget, so an
        # evaluation finishes before the end however loaded the machine is.
        tmp_path,
        "max_env_steps = 30000\nrollout_len = 16\neval_every_s = 0.3\neval_episodes = 2\n"
        "target_return = 100000.0\n",
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


def test_every_learner_flag_is_in_exactly_one_group_and_the_help_shows_them(capsys):
    import dataclasses

    from learner.config import LearnerConfig
    from learner.flags import GROUPS

    grouped = [name for names in GROUPS.values() for name in names]
    fields = [f.name for f in dataclasses.fields(LearnerConfig) if f.name != "loss"]
    assert sorted(grouped) == sorted(fields), "each flag in one group, no group naming a stranger"
    with pytest.raises(SystemExit):
        parse(["--help"])
    out = capsys.readouterr().out
    for title in GROUPS:
        assert f"{title}:" in out
    assert "(default: 16)" in out  # --envs: a default shows though the flag parses as absent
    # A loss setting shows each algorithm's own default (its config's, under the
    # algorithm's loss_defaults), not the first config's value for all of them.
    flat = " ".join(out.split())
    assert "bonus (default: a2c, a3c-grad, ppo, appo: 0.0; a3c, impala: 0.01)" in flat
    assert "(default: a2c, a3c, a3c-grad: False; ppo, appo: True)" in flat
    assert "(default: ppo, appo, impala: 1.0)" in flat  # V-trace's: impala is shown too
    assert "discount (default: 0.99)" in flat  # every algorithm alike: the value alone


def test_a_files_strings_are_read_as_the_command_line_reads_them(tmp_path):
    f = write(tmp_path, 'hidden = "32,16"\nenvs = "4"\n')
    cfg, _ = parse(["--config", f])
    assert cfg.hidden == (32, 16) and cfg.envs == 4
