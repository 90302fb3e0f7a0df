"""scripts/procs.py on tiny child processes (sh, sleep, a few lines of Python): every
way ``stop_process`` must end a child, and ``run_process``'s timeout; ``LogTail`` on a
file written by the test. No learner here;
each case takes well under a second."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripts.procs import LogTail, run_process, stop_process

# A Python child that exits 7 on SIGTERM, as the learner and the actor exit cleanly.
HANDLES_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def gone(pid: int, timeout_s: float = 5.0) -> bool:
    """Whether ``pid`` exits (or is a zombie waiting for its reaper) within the bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def started(args: list[str], **kwargs) -> tuple[subprocess.Popen, str]:
    """A child that has printed its first line (so its signal set-up is done), and the
    line. Its stdout is closed: it prints nothing more."""
    popen = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, **kwargs)
    assert popen.stdout is not None
    with popen.stdout:
        line = popen.stdout.readline()
    assert line, f"{args} exited before its first line"
    return popen, line


def test_a_child_that_handles_sigterm_exits_cleanly():
    popen, _ = started([sys.executable, "-c", HANDLES_TERM])
    assert stop_process(popen, 5.0) == 7


def test_a_frozen_child_is_continued_so_it_can_act_on_sigterm():
    popen, _ = started([sys.executable, "-c", HANDLES_TERM])
    popen.send_signal(signal.SIGSTOP)
    assert stop_process(popen, 5.0) == 7  # not -SIGKILL: SIGCONT let the handler run


def test_a_child_that_ignores_sigterm_is_killed_after_the_bound():
    popen, _ = started(["sh", "-c", 'trap "" TERM; echo ready; exec sleep 60'])
    # Killed (not the 0 of a sleep that ran out): stop_process gave up on SIGTERM.
    assert stop_process(popen, 0.3) == -signal.SIGKILL
    assert popen.poll() == -signal.SIGKILL, "reaped, not left a zombie"


def test_an_exited_child_is_left_alone():
    popen = subprocess.Popen(["true"])
    popen.wait(timeout=5)
    assert stop_process(popen, 0.1) == 0


def test_group_mode_sweeps_up_what_the_leader_left_behind():
    # The leader dies on SIGTERM; its child ignores SIGTERM and is only gone after the
    # group's SIGKILL.
    popen, orphan = started(
        ["sh", "-c", '(trap "" TERM; exec sleep 60) & echo $!; wait'], start_new_session=True
    )
    stop_process(popen, 0.3, group=True)
    assert gone(int(orphan)), "the leader's child outlived the group's SIGKILL"


def test_run_process_returns_none_and_the_output_so_far_on_timeout(tmp_path):
    code, seconds, out = run_process(
        ["sh", "-c", "echo started; exec sleep 60"], tmp_path / "err.log", timeout_s=0.5
    )
    # None: stopped on the timeout (a sleep that ran out would give 0); the seconds
    # reported cover the wait (a lower bound, the rule itself; load only adds to it).
    assert code is None and out == "started\n" and seconds >= 0.5
    code, _, out = run_process(["sh", "-c", "echo done"], tmp_path / "err.log", timeout_s=10)
    assert (code, out) == (0, "done\n")


def line(event: str, **fields) -> bytes:
    return (json.dumps({"event": event, **fields}) + "\n").encode()


def test_log_tail_reads_what_was_added_and_holds_back_a_line_being_written(tmp_path):
    path = tmp_path / "run.jsonl"
    tail = LogTail(path)
    assert tail.events() == []  # no file yet
    path.write_bytes(line("a", n=1) + line("b") + b'{"event": "a", "n"')
    assert [e["event"] for e in tail.events()] == ["a", "b"]
    with path.open("ab") as f:
        f.write(b': 2}\n{"torn\n' + line("a", n=3))
    # the held-back line completed, the torn one skipped, nothing read twice
    assert [e["n"] for e in tail.events("a")] == [1, 2, 3]
    assert len(tail.events()) == 4


def test_log_tail_from_an_offset_and_after_truncation(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_bytes(line("old"))
    tail = LogTail(path, start=path.stat().st_size)  # a resumed learner: only new lines
    with path.open("ab") as f:
        f.write(line("new"))
    assert [e["event"] for e in tail.events()] == ["new"]
    path.write_bytes(line("fresh"))  # rewritten shorter: read from the start again
    assert [e["event"] for e in tail.events()] == ["fresh"]
    other = tmp_path / "other.jsonl"
    other.write_bytes(line("replaced", pad="x" * 100))  # longer, and another file
    other.replace(path)
    assert [e["event"] for e in tail.events()] == ["replaced"]
