"""What a resumed run may change (learner/resume.compare), and the learner's flags as
parsed in process (learner.config.parse): the run spec and the settings are built by the
real functions from real flags, and the saved side goes through JSON as a checkpoint's
does (learner/build.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from core import algos
from core.algos.a2c import A2CConfig, a2c_loss
from core.cli import arg
from learner.flags import parse
from learner.resume import IncompatibleResume, compare
from learner.spec import build_spec

BASE = ["--run-dir", "runs/first", "--port", "5555"]


def settings(*flags: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run spec, resolved settings) as the learner records them for these flags."""
    cfg, _ = parse([*BASE, *flags])
    return build_spec(cfg).to_dict(), cfg.resolved()


def saved(*flags: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a checkpoint written under these flags holds (JSON round trip)."""
    spec, config = settings(*flags)
    return json.loads(json.dumps(spec)), json.loads(json.dumps(config))


# --- resume.compare ---------------------------------------------------------------------


def test_resuming_with_the_same_flags_changes_nothing():
    assert compare(*saved(), *settings()) == {}


def test_a_checkpoint_from_before_the_model_map_resumes_and_is_still_checked():
    """Checkpoints written before wire schema 6 keep encoder, hidden and obs_norm as run
    spec fields of their own: they resume under the same network, and a different one
    is still refused by name."""
    spec, config = saved()
    old = {k: v for k, v in spec.items() if k != "model"}
    old.update(encoder="mlp", hidden=[64, 64])  # obs_norm is older still: absent
    assert compare(old, config, *settings()) == {}
    with pytest.raises(IncompatibleResume, match="hidden"):
        compare(old, config, *settings("--hidden", "32"))
    with pytest.raises(IncompatibleResume, match="obs_norm"):
        compare(old, config, *settings("--obs-norm"))


@pytest.mark.parametrize(
    "flags, fields, shown",
    [
        (["--env", "Acrobot-v1"], ["env_id", "obs_shape", "action_n"], "'CartPole-v1'"),
        (["--algo", "a3c"], ["algo", "coordination"], "'a3c'"),
        (["--hidden", "32,32"], ["hidden"], "[32, 32]"),
        (["--optimizer", "rmsprop"], ["optimizer"], "'rmsprop'"),
    ],
    ids=["env_id", "algo", "hidden", "optimizer"],
)
def test_an_incompatible_change_is_refused_naming_each_differing_field(flags, fields, shown):
    with pytest.raises(IncompatibleResume) as exc:
        compare(*saved(), *settings(*flags))
    message = str(exc.value)
    for name in fields:
        assert name in message, (name, message)
    assert shown in message, message
    assert "--run-dir" in message, "the message says what to do"


def test_a_recurrent_core_resumes_as_itself_and_only_so():
    """A checkpoint of a recurrent run carries its core: it resumes with the same core,
    and without it (or with another kind or size) the refusal names what differs; a
    feed-forward checkpoint's map names no core and resumes as before cores existed."""
    lstm = ("--core", "lstm")
    assert compare(*saved(*lstm), *settings(*lstm)) == {}
    for flags, shown in [
        ((), "core: 'lstm' -> 'none'"),
        (("--core", "gru"), "core: 'lstm' -> 'gru'"),
        ((*lstm, "--core-size", "32"), "core_size: 0 -> 32"),
    ]:
        with pytest.raises(IncompatibleResume) as exc:
            compare(*saved(*lstm), *settings(*flags))
        assert shown in str(exc.value), str(exc.value)
    assert "core" not in saved()[0]["model"]
    with pytest.raises(IncompatibleResume, match="core: 'none' -> 'lstm'"):
        compare(*saved(), *settings(*lstm))


def test_a_different_observation_shape_is_refused():
    spec, config = settings()
    spec = {**spec, "obs_shape": [8]}
    with pytest.raises(IncompatibleResume, match=r"obs_shape: \[4\] -> \[8\]"):
        compare(*saved(), spec, config)


def test_every_incompatible_field_is_named_at_once():
    spec, config = settings("--env", "Acrobot-v1", "--hidden", "16", "--optimizer", "rmsprop")
    spec = {**spec, "algo": "a3c"}
    with pytest.raises(IncompatibleResume) as exc:
        compare(*saved(), spec, config)
    message = str(exc.value)
    for name in ("env_id", "algo", "hidden", "obs_shape", "optimizer"):
        assert name in message, (name, message)
    assert "coordination" not in message, "only fields that differ are named"


def test_learning_rate_and_loss_settings_may_change_and_are_reported():
    now = settings(
        "--lr",
        "0.01",
        "--entropy-coef",
        "0.02",
        "--run-dir",
        "runs/elsewhere",
        "--port",
        "6000",
        "--pub-port",
        "6100",
        "--resume",
    )
    assert compare(*saved(), *now) == {"lr": (0.004, 0.01), "entropy_coef": (0.0, 0.02)}


def test_ignored_settings_alone_report_nothing():
    now = settings("--run-dir", "runs/elsewhere", "--port", "6000", "--log-level", "debug")
    assert compare(*saved(), *now) == {}


# --- learner.config.parse ---------------------------------------------------------------


def test_lr_flag_sets_the_learning_rate_and_the_default_comes_from_the_algorithm():
    cfg, _ = parse(["--lr", "0.01"])
    assert cfg.learning_rate == 0.01 and cfg.resolved()["lr"] == 0.01
    assert parse([])[0].learning_rate == algos.get("a2c").lr == 4e-3
    assert parse(["--algo", "a3c"])[0].learning_rate == algos.get("a3c").lr == 2e-3


def test_the_optimizer_and_loss_settings_an_algorithm_starts_from_give_way_to_presets_and_flags():
    a3c = parse(["--algo", "a3c"])[0]
    assert a3c.optimizer_name == "rmsprop" == a3c.resolved()["optimizer"]
    assert a3c.loss.entropy_coef == 0.01 and parse([])[0].loss.entropy_coef == 0.0
    assert parse([])[0].optimizer_name == "adam"
    assert parse(["--algo", "impala"])[0].optimizer_name == "rmsprop"
    flagged = parse(["--algo", "a3c", "--optimizer", "adam", "--entropy-coef", "0"])[0]
    assert (flagged.optimizer_name, flagged.loss.entropy_coef) == ("adam", 0.0)
    # The pendulum preset was measured with Adam and no bonus: its table and top level win.
    pendulum = parse(["--env", "Pendulum-v1", "--algo", "a3c"])[0]
    assert (pendulum.optimizer_name, pendulum.loss.entropy_coef) == ("adam", 0.0)


def test_a_resume_across_the_optimizer_default_is_refused_by_name():
    """A checkpoint written when a3c defaulted to Adam resumes only with --optimizer adam."""
    spec, config = saved("--algo", "a3c")
    config["optimizer"] = "adam"
    with pytest.raises(IncompatibleResume, match="optimizer: 'adam' -> 'rmsprop'"):
        compare(spec, config, *settings("--algo", "a3c"))
    assert "optimizer" not in compare(
        spec, config, *settings("--algo", "a3c", "--optimizer", "adam")
    )


def test_an_algorithm_with_a_loss_default_it_does_not_have_is_refused_when_registered():
    with pytest.raises(ValueError, match="no loss setting"):
        algos.Algorithm(
            "bad",
            "async",
            A2CConfig,
            a2c_loss,
            lr=1e-3,
            max_policy_lag=4,
            summary="",
            loss_defaults={"clip": 0.2},
        )


def test_a_loss_flag_lands_in_the_algorithms_loss_config():
    cfg, _ = parse(["--entropy-coef", "0.02"])
    assert cfg.loss == A2CConfig(entropy_coef=0.02)
    assert cfg.resolved()["loss"]["entropy_coef"] == 0.02
    assert parse([])[0].loss == A2CConfig()


def test_a_bad_loss_value_exits_with_the_configs_reason(capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["--entropy-coef", "-1"])
    assert exc.value.code == 2
    assert "--entropy-coef" in capsys.readouterr().err


@dataclass(frozen=True)
class ToyConfig:
    toy_coef: float = arg(0.5, "weight of the toy term")


@pytest.fixture
def toy_algorithm():
    toy = algos.register(
        algos.Algorithm(
            "toy",
            "async",
            ToyConfig,
            a2c_loss,
            lr=1e-3,
            max_policy_lag=2,
            summary="a test's own algorithm",
        )
    )
    try:
        yield toy
    finally:
        algos.ALGORITHMS.pop("toy", None)


def test_a_loss_flag_the_chosen_algorithm_does_not_have_is_refused(toy_algorithm, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["--algo", "a2c", "--toy-coef", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--toy-coef" in err and "a2c" in err, err


def test_a_registered_algorithms_loss_flags_are_offered(toy_algorithm):
    # The registry is read when the parser is built, so the toy's flag exists, shown
    # with the algorithm that has it.
    text = " ".join(parse([])[1].format_help().split())
    assert "--toy-coef" in text and "weight of the toy term (default: toy: 0.5)" in text


def test_an_algorithm_registered_later_can_be_chosen_with_its_loss_flags(toy_algorithm):
    cfg, _ = parse(["--algo", "toy", "--toy-coef", "1"])
    assert cfg.loss == ToyConfig(toy_coef=1.0)
    assert cfg.learning_rate == 1e-3
