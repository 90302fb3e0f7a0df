"""What both learner loops do every so often (learner/housekeeping.py): the stopping
rules, milestones, progress cadence and checkpoint timing. Times are passed in."""

from __future__ import annotations

from learner.flags import parse
from learner.housekeeping import Housekeeping
from learner.reporting import Reporter
from learner.stats import WINDOW, RunStats
from tests.fakes import RecordingLog


def house(*flags: str, target: float | None = 475.0, stop=lambda: False):
    cfg, _ = parse(["--confirm-episodes", "0", *flags])
    log, stats = RecordingLog(), RunStats()
    h = Housekeeping(
        cfg, stats, Reporter(log), log, target=target, latest=lambda: (0, {}),
        stop_requested=stop,
    )  # fmt: skip
    return h, stats, log


def test_solved_needs_a_full_window_at_the_target():
    h, stats, _ = house()
    stats.returns.extend([500.0] * (WINDOW - 1))
    assert h.stop(1.0, started=True) is None
    stats.returns.append(500.0)
    outcome = h.stop(1.0, started=True)
    assert outcome is not None and outcome.solved and outcome.reason == "solved"


def test_the_budget_rules_and_a_signal_end_a_run_unsolved():
    h, stats, _ = house("--max-env-steps", "1000", "--max-seconds", "10")
    assert h.stop(5.0, started=True) is None
    stats.env_steps = 1000
    assert h.stop(5.0, started=True).reason == "max_env_steps"
    h, _, _ = house("--max-seconds", "10")
    assert h.stop(11.0, started=False) is None, "the clock runs from the first join"
    assert h.stop(11.0, started=True).reason == "max_seconds"
    h, _, _ = house(stop=lambda: True)
    outcome = h.stop(0.0, started=False)
    assert outcome is not None and not outcome.solved and outcome.reason == "signal"


def test_each_milestone_is_logged_once_when_the_window_first_reaches_it():
    h, stats, log = house("--milestones", "100,200")
    stats.returns.extend([150.0] * WINDOW)
    h.after_intake(3.0)
    h.after_intake(4.0)
    assert [e["threshold"] for e in log.named("return_reached")] == [100.0]
    stats.returns.extend([250.0] * WINDOW)
    h.after_intake(5.0)
    assert [e["threshold"] for e in log.named("return_reached")] == [100.0, 200.0]


def test_a_resumed_run_does_not_log_again_the_milestones_its_window_had_reached():
    cfg, _ = parse(["--milestones", "100,200"])
    stats, log = RunStats(), RecordingLog()
    stats.returns.extend([150.0] * WINDOW)  # as restored from the checkpoint
    h = Housekeeping(
        cfg, stats, Reporter(log), log, target=None, latest=lambda: (0, {}),
        stop_requested=lambda: False,
    )  # fmt: skip
    h.after_intake(1.0)
    assert log.named("return_reached") == []
    stats.returns.extend([250.0] * WINDOW)
    h.after_intake(2.0)
    assert [e["threshold"] for e in log.named("return_reached")] == [200.0]


def test_progress_comes_at_the_log_interval_with_the_loops_own_fields():
    h, _, log = house("--log-interval-s", "2")
    for now in (10.0, 10.5, 11.9, 12.0, 13.0):
        h.tick(now, now, lambda: {"actors": 3})
    progress = log.named("progress")
    assert len(progress) == 2 and all(p["actors"] == 3 for p in progress)


def test_checkpoints_fall_due_every_interval_of_training_from_where_a_resume_began():
    cfg, _ = parse(["--checkpoint-every-s", "60"])
    h = Housekeeping(
        cfg, RunStats(), Reporter(RecordingLog()), RecordingLog(), target=None, latest=lambda: (0, {}),
        stop_requested=lambda: False, checkpoint_from_s=100.0,
    )  # fmt: skip
    assert not h.checkpoint_due(159.0) and h.checkpoint_due(160.0)
    h.checkpointed(160.0)
    assert not h.checkpoint_due(200.0) and h.checkpoint_due(220.0)
    never, _ = parse(["--checkpoint-every-s", "0"])
    assert not Housekeeping(
        never, RunStats(), Reporter(RecordingLog()), RecordingLog(), target=None, latest=lambda: (0, {}),
        stop_requested=lambda: False,
    ).checkpoint_due(1e9)  # fmt: skip
