"""``python -m launch.ray`` on a real Ray cluster: a head started here on 127.0.0.1
(`ray start --head --block` in a session of its own) and stopped by the processes of
that session only (never `ray stop`, which stops every Ray of the user). Ray places the
learner and the actors and restarts a killed actor; the training is real CartPole over
CurveZMQ. Skipped, with the reason, without the ``ray`` extra; .ci/run installs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from scripts.procs import ROOT, python_path
from scripts.procs import read_events as events

pytestmark = pytest.mark.slow
ray = pytest.importorskip(
    "ray", reason="the ray extra is not installed: pip install -e '.[ray]' (.ci/run does)"
)

HANG_S = 150  # a guard against a hang, never what is measured
# Ray on Linux swaps 127.0.0.1 for the machine's address unless told not to; a token
# file in ~/.ray would turn authentication on for one side only: say it for both.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_members(sid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


def stop_session(sid: int) -> None:
    """SIGTERM to every process of the head's session, then SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        for pid in session_members(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while session_members(sid) and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def ray_head():
    port = free_port()
    # Short: Ray's unix sockets live under it (a path limit of about 107 bytes).
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, **RAY_ENV}
    head = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-port={free_port()}",
            "--num-cpus=4",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(Path(temp) / "head.log", "wb"),  # noqa: SIM115 - closed with the session
        start_new_session=True,
    )
    try:
        ready = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import ray; ray.init(address='127.0.0.1:{port}'); ray.shutdown()",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ready.returncode == 0, ready.stderr[-3000:]
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:
        stop_session(head.pid)
        head.wait(timeout=30)


def wait_event(path: Path, name: str, proc: subprocess.Popen, where=lambda e: True) -> dict:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        for ev in events(path, name):
            if where(ev):
                return ev
        assert proc.poll() is None, f"the launcher exited {proc.returncode} before {name}"
        time.sleep(0.1)
    raise AssertionError(f"no {name} in {path} within {HANG_S}s")


def test_ray_launches_a_run_that_solves_and_brings_a_killed_actor_back(ray_head, tmp_path):
    run = tmp_path / "run"
    out = open(tmp_path / "launcher.out", "wb")  # noqa: SIM115 - closed below
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launch.ray",
            "--actors",
            "2",
            "--bind-host",
            "127.0.0.1",
            "--run-dir",
            str(run),
            "--",
            "--env",
            "CartPole-v1",
            "--max-seconds",
            str(int(HANG_S * 5)),  # a hang guard: the run ends when it solves
        ],
        cwd=ROOT,
        env={**ray_head, "PYTHONPATH": python_path()},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        learner_log = run / "learner.jsonl"
        assert events(learner_log, "curve_enabled") or wait_event(
            learner_log, "curve_enabled", launcher
        )
        victim = wait_event(
            learner_log, "actor_joined", launcher, lambda e: e["actor_id"] == "task-1"
        )
        os.kill(victim["pid"], signal.SIGKILL)  # the actor process inside Ray's worker
        back = wait_event(
            learner_log,
            "actor_joined",
            launcher,
            lambda e: e["actor_id"] == "task-1" and e["pid"] != victim["pid"],
        )
        restarted = events(learner_log, "actor_restarted")
        assert [e["old_incarnation"] for e in restarted if e["actor_id"] == "task-1"] == [
            victim["incarnation"]
        ], "Ray restarted it as the same actor, which re-joined"
        assert back["incarnation"] != victim["incarnation"]
        code = launcher.wait(timeout=HANG_S)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGTERM)
            launcher.wait(timeout=30)
        out.close()
    text = (tmp_path / "launcher.out").read_text(errors="replace")
    assert code == 0, text[-4000:]
    assert json.loads((run / "summary.json").read_text())["solved"] is True
    assert "learner exited 0" in text and "Ray restarts it" in text
    for k in range(2):
        assert events(run / f"actor-task-{k}.jsonl", "actor_exit")[-1]["code"] == 0


def test_the_hosts_process_that_ignores_sigterm_is_killed_when_the_run_is_over(tmp_path):
    # A host's only tie to its process is a SIGTERM when the host dies; Ray does not
    # reap the children of a worker it kills. So forget() SIGKILLs what outlived stop().
    from launch.ray_hosts import _Process

    ready = tmp_path / "ignoring"
    child = (
        "import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(300)"
    )
    process, codes = _Process(), []
    runner = threading.Thread(
        target=lambda: codes.append(process.run([sys.executable, "-c", child], {}))
    )
    runner.start()
    try:
        deadline = time.monotonic() + HANG_S
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the child never started"
        process.stop()
        runner.join(1.0)
        assert runner.is_alive(), "it ignored SIGTERM: still running"
        process.kill()
        runner.join(HANG_S)
        assert not runner.is_alive() and codes == [-signal.SIGKILL]
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.proc.kill()
        runner.join(HANG_S)


def test_a_run_that_does_not_fit_the_cluster_says_what_is_short():
    from launch.ray import shortfall

    assert shortfall({"CPU": 4.0}, cpus=3, gpus=0) == ""
    assert shortfall({"CPU": 4.0}, cpus=9, gpus=1) == (
        "9 CPUs, the cluster has 4; 1 GPUs, the cluster has 0"
    )
