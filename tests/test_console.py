"""The learner's console (learner/console.py) and the console side of core/logs.py:
the plain progress line, how far a run is toward each stopping rule, the mode chosen,
that progress stays off the log's console lines but not off learner.jsonl, and the live
view rendered into a rich Console. No learner processes."""

from __future__ import annotations

import io
import json
import logging

import pytest
import rich.console
import structlog
from rich.text import Text

from core import logs
from learner import console
from learner.console import Toward, choose_mode, plain_line, target_fraction, toward, view

FIELDS = {
    "wall_s": 12.345,
    "env_steps": 123456,
    "steps_per_s": 45210.4,
    "updates": 87,
    "episodes": 240,
    "mean_return_100": 187.34,
    "return_std_100": 40.12,
    "policy_lag_mean": 0.4,
    "policy_lag_max": 2,
    "dropped_stale": 0,
    "rejected": 0,
    "actors": 2,
    "version": 87,
    "train_busy": 0.83,
}


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def clean_logging():
    """configure() sets process-wide logging state: put it back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _rich(width: int = 100) -> tuple[rich.console.Console, io.StringIO]:
    out = io.StringIO()
    return rich.console.Console(file=out, force_terminal=True, width=width), out


# The plain line.


def test_plain_line_is_short_and_fixed_format():
    rules = toward(FIELDS, target=475.0, max_env_steps=None, max_seconds=None)
    assert plain_line(FIELDS, rules) == (
        "12.3s | steps 123,456 | 45,210/s | return 187.3 ± 40.1 (100 ep) | upd 87 | "
        "lag 0.4/2 | actors 2 | 39% of target 475"
    )


def test_plain_line_before_any_episode_and_with_trouble():
    fields = {
        **FIELDS,
        "episodes": 0,
        "mean_return_100": None,
        "return_std_100": None,
        "policy_lag_mean": None,
        "policy_lag_max": None,
        "dropped_stale": 3,
        "rejected": 1200,
    }
    del fields["actors"]  # the serial mode's and older events may lack a field
    line = plain_line(fields, [])
    assert line == (
        "12.3s | steps 123,456 | 45,210/s | return - (0 ep) | upd 87 | lag -/- | "
        "dropped 3 | rejected 1,200"
    )


def test_plain_line_names_every_rule_target_first():
    rules = toward(FIELDS, target=475.0, max_env_steps=200_000, max_seconds=None)
    assert plain_line(FIELDS, rules).endswith("| 39% of target 475, 62% of 200,000 env steps")


# How far toward each stopping rule.


def test_target_with_positive_returns_counts_from_zero():
    (rule,) = toward(FIELDS, target=475.0, max_env_steps=None, max_seconds=None, lowest=20.0)
    assert rule.rule == "target" and rule.label == "target 475"
    assert rule.fraction == pytest.approx(187.34 / 475)
    assert target_fraction(None, 475.0, None) == 0.0
    assert target_fraction(500.0, 475.0, 20.0) == 1.0  # over the target: full, never more


def test_target_with_negative_returns_counts_from_the_lowest_mean_seen():
    # Acrobot: target -100, a random policy scores about -500.
    assert target_fraction(-500.0, -100.0, -500.0) == 0.0
    assert target_fraction(-300.0, -100.0, -500.0) == pytest.approx(0.5)
    assert target_fraction(-100.0, -100.0, -500.0) == 1.0
    # A positive target reached from below zero (LunarLander: 200 from -250).
    assert target_fraction(-25.0, 200.0, -250.0) == pytest.approx(0.5)
    # The first mean seen is the lowest until a lower one comes.
    assert target_fraction(-400.0, -100.0, None) == 0.0
    assert target_fraction(-200.0, -100.0, -400.0) == pytest.approx(2 / 3)


def test_max_env_steps_and_max_seconds():
    (steps,) = toward(FIELDS, target=None, max_env_steps=1_000_000, max_seconds=None)
    assert steps == Toward("max_env_steps", pytest.approx(0.123456), "1,000,000 env steps")
    (secs,) = toward(FIELDS, target=None, max_env_steps=None, max_seconds=50.0)
    assert secs == Toward("max_seconds", pytest.approx(12.345 / 50), "50 s of training")
    # Both limits: the one nearer its end first; past the end is full, never more.
    both = toward(FIELDS, target=None, max_env_steps=100_000, max_seconds=50.0)
    assert [r.rule for r in both] == ["max_env_steps", "max_seconds"]
    assert both[0].fraction == 1.0
    # A target comes first whatever the limits say.
    first = toward(FIELDS, target=475.0, max_env_steps=100_000, max_seconds=50.0)
    assert [r.rule for r in first] == ["target", "max_env_steps", "max_seconds"]


def test_no_stopping_rule():
    assert toward(FIELDS, target=None, max_env_steps=None, max_seconds=None) == []
    assert plain_line(FIELDS, []).endswith("| actors 2")


# The mode.


@pytest.mark.parametrize(
    ("requested", "tty", "term", "expected"),
    [
        ("auto", True, "xterm-256color", "live"),
        ("auto", False, "xterm-256color", "plain"),
        ("auto", True, "dumb", "plain"),
        ("auto", True, None, "live"),
        ("live", False, "dumb", "live"),
        ("plain", True, "xterm", "plain"),
        ("off", True, "xterm", "off"),
    ],
)
def test_mode(requested, tty, term, expected):
    environ = {} if term is None else {"TERM": term}
    assert choose_mode(requested, _Stream(tty), environ) == expected


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="console mode"):
        choose_mode("fancy", _Stream(True), {})


# Through logging: progress reaches the Console and the JSON file, not the log lines.


def _log_run(log) -> None:
    log.info("actor_joined", actor_id="local-0", actors=1)
    log.info("progress", **FIELDS)
    log.warning("message_rejected", reason="bad_shape")


def _json_events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_live_console_keeps_progress_off_the_log_lines_but_in_the_file(tmp_path, clean_logging):
    terminal, out = _rich()
    log = logs.configure(
        "learner", tmp_path / "learner.jsonl", console="live", terminal=terminal, hide=("progress",)
    )
    seen = console.Console(
        env="CartPole-v1",
        algo="a2c",
        target=475.0,
        max_env_steps=None,
        max_seconds=None,
        mode="plain",  # the fields it receives are what this test looks at
        stream=io.StringIO(),
    )
    logging.getLogger().addHandler(console.ProgressTap(seen))
    _log_run(log)
    text = out.getvalue()
    assert "actor_joined" in text and "message_rejected" in text
    assert "progress" not in text and "env_steps" not in text
    events = _json_events(tmp_path / "learner.jsonl")
    assert [e["event"] for e in events] == ["actor_joined", "progress", "message_rejected"]
    assert events[1]["env_steps"] == 123456 and events[1]["role"] == "learner"
    assert seen.fields == FIELDS  # the fields only, no level, timestamp or role


def test_plain_console_prints_a_short_line_for_progress(tmp_path, capsys, clean_logging):
    log = logs.configure("learner", tmp_path / "learner.jsonl", console="plain", hide=("progress",))
    logging.getLogger().addHandler(
        console.ProgressTap(
            console.Console(
                env="CartPole-v1",
                algo="a2c",
                target=475.0,
                max_env_steps=None,
                max_seconds=None,
                mode="plain",
            )
        )
    )
    _log_run(log)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert "actor_joined" in lines[0] and "actors=1" in lines[0]
    assert lines[1].startswith("12.3s | steps 123,456 |") and "progress" not in lines[1]
    assert "message_rejected" in lines[2] and "\x1b[" not in lines[2]  # not a TTY: no colors
    assert len(_json_events(tmp_path / "learner.jsonl")) == 3


def test_without_hide_the_console_shows_progress_as_today(tmp_path, capsys, clean_logging):
    log = logs.configure("actor", tmp_path / "actor.jsonl", actor_id="a1")
    log.info("progress", env_steps=5)
    err = capsys.readouterr().err
    assert "progress" in err and "env_steps=5" in err and "actor_id=a1" in err


# The live view.


def test_live_view_shows_the_numbers():
    terminal, out = _rich()
    fields = {**FIELDS, "dropped_stale": 3, "rejected": 1}
    rules = toward(fields, target=475.0, max_env_steps=None, max_seconds=None)
    terminal.print(view(fields, rules, env="CartPole-v1", algo="a2c"))
    text = Text.from_ansi(out.getvalue()).plain
    for shown in (
        "a2c CartPole-v1",
        "12.3 s",
        "2 actors",
        "123,456",
        "45,210/s",
        "187.3 ± 40.1",
        "last 100 of 240 episodes",
        "lag 0.4 mean · 2 max",
        "3 dropped stale · 1 rejected",
        "target 475",
        "39%",
    ):
        assert shown in text, (shown, text)


def test_console_live_draws_updates_and_closes(tmp_path):
    terminal, out = _rich()
    live = console.Console(
        env="Acrobot-v1",
        algo="a3c",
        target=-100.0,
        max_env_steps=None,
        max_seconds=60.0,
        mode="live",
        terminal=terminal,
    )
    live.progress({**FIELDS, "mean_return_100": -500.0, "return_std_100": 0.0})
    terminal.print("actor_lost above the view")
    live.progress({**FIELDS, "mean_return_100": -300.0, "return_std_100": 12.0})
    live.close()
    live.close()  # idempotent
    live.progress(FIELDS)  # after close: ignored, not an error
    text = Text.from_ansi(out.getvalue()).plain
    assert "actor_lost above the view" in text
    assert "-300.0 ± 12.0" in text and "50%" in text  # half way from -500 to -100
    assert "60 s of training" in text and "21%" in text  # 12.3 of 60 s
    assert out.getvalue().rstrip().endswith("\x1b[?25h")  # the cursor is shown again


def test_console_off_prints_nothing():
    stream = io.StringIO()
    off = console.Console(
        env="CartPole-v1",
        algo="a2c",
        target=None,
        max_env_steps=None,
        max_seconds=None,
        mode="off",
        stream=stream,
    )
    off.progress(FIELDS)
    off.close()
    assert stream.getvalue() == ""
