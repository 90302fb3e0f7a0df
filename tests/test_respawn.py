"""The actor's supervisor (actor/respawn.py): which exits it restarts, the back-off, the
crash-loop bound, and the child's command line. The child is scripted here (its exit
codes); tests/test_launch.py kills a real one."""

from __future__ import annotations

import signal

import pytest

from actor import respawn
from actor.config import ActorConfig
from tests.fakes import FakeClock, RecordingLog


class Scripted(respawn.Supervisor):
    """A supervisor whose children exit with the given codes after living ``lives``."""

    def __init__(self, codes, lives=None, stop_after=None, **cfg):
        self.clock_ = FakeClock()
        self.log_ = RecordingLog()
        self.codes = list(codes)
        self.lives = list(lives or [1.0] * len(codes))
        self.argvs: list[list[str]] = []
        self.stop_after = stop_after
        super().__init__(
            ActorConfig(actor_id="task-3", **cfg),
            self.log_,
            lambda: self.stop_after is not None and len(self.argvs) >= self.stop_after,
            clock=self.clock_,
            sleep=self.clock_.sleep,
        )

    def _run_child(self) -> int:
        self.argvs.append(respawn.child_argv(self.cfg, self.restarts))
        self.clock_.t += self.lives[len(self.argvs) - 1]
        return self.codes[len(self.argvs) - 1]


@pytest.mark.parametrize("final", [0, 2, 3, 5])
def test_exits_a_restart_cannot_cure_end_the_supervisor_with_that_code(final):
    sup = Scripted([final])
    assert sup.run() == final
    assert len(sup.argvs) == 1 and not sup.log_.named("actor_died")


def test_crashes_and_signals_are_restarted_with_a_doubling_backoff():
    sup = Scripted([-signal.SIGKILL, 1, 4, -signal.SIGSEGV, 0])
    assert sup.run() == 0
    died = sup.log_.named("actor_died")
    assert [d["restart_in_s"] for d in died] == [0.5, 1.0, 2.0, 4.0]
    assert died[0]["signal"] == "SIGKILL" and died[1]["signal"] is None
    assert len(sup.argvs) == 5


def test_a_child_that_lived_long_starts_the_backoff_over():
    sup = Scripted([1, 1, 1, 0], lives=[1.0, 1.0, respawn.HEALTHY_S + 1, 1.0])
    sup.run()
    assert [d["restart_in_s"] for d in sup.log_.named("actor_died")] == [0.5, 1.0, 0.5]


def test_a_crash_loop_gives_up_with_the_childs_code():
    sup = Scripted([4] * 10, max_restarts=3, restart_window_s=60.0)
    assert sup.run() == 4
    assert len(sup.argvs) == 4  # the first start and three restarts
    (loop,) = sup.log_.named("actor_crash_loop")
    assert loop["restarts"] == 3


def test_a_killed_child_that_crash_loops_exits_as_a_shell_reports_the_signal():
    sup = Scripted([-signal.SIGKILL] * 3, max_restarts=1)
    assert sup.run() == 128 + signal.SIGKILL


def test_restarts_spread_over_more_than_the_window_are_not_a_loop():
    # Each child lives 40 s; with a 60 s window at most one earlier restart counts.
    sup = Scripted([1] * 6 + [0], lives=[40.0] * 7, max_restarts=2, restart_window_s=60.0)
    assert sup.run() == 0
    assert len(sup.argvs) == 7


@pytest.mark.parametrize("code", [0, -signal.SIGTERM, -signal.SIGINT])
def test_a_stop_request_ends_it_without_a_restart_and_exit_0(code):
    # A child the signal ended before it had its handler installed stopped as asked too.
    sup = Scripted([code, 0], stop_after=1)
    assert sup.run() == 0
    assert len(sup.argvs) == 1 and sup.log_.named("respawn_stopped")


def test_a_child_that_crashed_while_stopping_reports_it():
    assert Scripted([-signal.SIGSEGV], stop_after=1).run() == 128 + signal.SIGSEGV


def test_the_child_keeps_the_actor_id_and_moves_its_seed_offset():
    sup = Scripted([1, 1, 0], seed_offset=5, learner_file="/shared/run/learner.addr")
    sup.run()
    first, third = sup.argvs[0], sup.argvs[2]
    for argv in sup.argvs:
        assert argv[argv.index("--actor-id") + 1] == "task-3"
        assert argv[argv.index("--learner-file") + 1] == "/shared/run/learner.addr"
        assert "--respawn" not in argv and "--max-restarts" not in argv
    assert first[first.index("--seed-offset") + 1] == "5"
    assert third[third.index("--seed-offset") + 1] == str(5 + 2 * respawn.SEED_STRIDE)


def test_without_an_id_the_supervisor_fixes_one_for_every_child():
    cfg = respawn.with_stable_id(ActorConfig())
    assert cfg.actor_id and respawn.with_stable_id(cfg) == cfg
    argv = respawn.child_argv(cfg, 0)
    assert argv[argv.index("--actor-id") + 1] == cfg.actor_id
