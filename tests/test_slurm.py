"""The project's Slurm batch script (deploy/slurm/train.sbatch), unchanged, on a real
Slurm cluster: slurmctld, three slurmd as virtual nodes n1-n3 and munged, all on
127.0.0.1, started for this module by deploy/slurm/ci/cluster.sh and stopped by it.

Nothing here imitates Slurm: jobs are submitted with sbatch, cancelled with scancel,
and Slurm places the learner (heterogeneous component 0) on one node and the actor
tasks (component 1) on two others. The processes are real learners and actors
training CartPole-v1 over CurveZMQ. Skipped, with the reason, where Slurm is not
installed; CI's .ci/run installs it, so CI never skips."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.procs import ROOT
from scripts.procs import read_events as events
from scripts.runlog import event_time

pytestmark = pytest.mark.slow

CLUSTER = ROOT / "deploy" / "slurm" / "ci" / "cluster.sh"
SCRIPT = ROOT / "deploy" / "slurm" / "train.sbatch"
HANG_S = 150  # a guard against a hang (sbatch --wait is always under `timeout`)
NEEDED = ("slurmctld", "slurmd", "sbatch", "munged")
missing = [c for c in NEEDED if shutil.which(c) is None]
if missing:
    pytestmark = [
        pytestmark,
        pytest.mark.skip(
            reason=f"Slurm is not installed ({', '.join(missing)} missing): "
            "apt-get install -y --no-install-recommends slurm-wlm munge (.ci/run does)"
        ),
    ]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    where = tmp_path_factory.mktemp("slurm-cluster")
    started = subprocess.run(
        [str(CLUSTER), "start", str(where)], capture_output=True, text=True, timeout=120
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        conf = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
        yield {**os.environ, "SLURM_CONF": conf}
    finally:
        subprocess.run([str(CLUSTER), "stop", str(where)], timeout=120)


def slow_learner_python(where: Path) -> str:
    """An interpreter for the job (its PYTHON) that runs ``-m learner`` as
    tests/slow_learner.py, every update 0.05 s longer, and anything else as it is."""
    path = where / "python-slow-learner"
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -m ] && [ "$2" = learner ]; then\n'
        f'  shift 2; exec "{sys.executable}" -m tests.slow_learner 0.05 "$@"\n'
        "fi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    path.chmod(0o755)
    return str(path)


def job_env(slurm, run_dir: Path, **settings: str) -> dict:
    return {
        **slurm,
        "REPO": str(ROOT),
        "PYTHON": sys.executable,
        "RUN_DIR": str(run_dir),
        # The learner binds and advertises loopback: every virtual node is this machine.
        "BIND_HOST": "127.0.0.1",
        "ADVERTISE_HOST": "127.0.0.1",
        **settings,
    }


def submit(env: dict, out: Path, *sbatch_args: str) -> subprocess.Popen:
    """sbatch --wait in the background (always under `timeout`)."""
    return subprocess.Popen(
        ["timeout", str(HANG_S), "sbatch", "--wait", f"--output={out}", *sbatch_args, str(SCRIPT)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(job: subprocess.Popen) -> tuple[int, str]:
    text, _ = job.communicate(timeout=HANG_S + 30)
    return job.returncode, text


def wait_event(path: Path, name: str, job: subprocess.Popen | None, where=lambda e: True) -> dict:
    """The first ``name`` event in ``path`` that ``where`` accepts; fails early if ``job``
    (sbatch --wait) has returned without it."""
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        for ev in events(path, name):
            if where(ev):
                return ev
        if job is not None and job.poll() is not None:
            raise AssertionError(f"the job ended before {name}: {job.communicate()[0][-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {name} in {path} within {HANG_S}s")


def wait_gone(slurm, jid: str) -> None:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        queued = subprocess.run(
            ["squeue", "-h", "-j", jid], env=slurm, capture_output=True, text=True, timeout=30
        )
        if not queued.stdout.strip():
            return
        time.sleep(0.2)
    raise AssertionError(f"job {jid} still in the queue after {HANG_S}s")


def ts(event: dict) -> float:
    return event_time(event)


def job_id(run_dir: Path) -> str:
    return events(run_dir / "learner.jsonl", "learner_config")[0]["slurm_job_id"]


def test_the_batch_script_trains_cartpole_to_solved_across_nodes_encrypted(slurm, tmp_path):
    run = tmp_path / "run"
    # The first update waits for all four actors: a run that solved before an actor had
    # started would stop it unjoined (a clean exit, but not the one asserted below).
    env = job_env(slurm, run, LEARNER_ARGS="--min-actors 4")
    rc, text = finish(submit(env, tmp_path / "job.out"))
    output = (tmp_path / "job.out").read_text()
    assert rc == 0, text + output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["solved"] is True, summary
    learner_log = run / "learner.jsonl"
    assert events(learner_log, "curve_enabled")[0]["authorized"] == [f"task-{k}" for k in range(4)]
    (learner_node,) = {e["slurm_node"] for e in events(learner_log, "learner_config")}
    actor_nodes = set()
    for k in range(4):
        log = run / f"actor-task-{k}.jsonl"
        assert events(log, "actor_exit")[-1]["code"] == 0, f"task-{k}"
        assert events(log, "respawn_done")[-1]["code"] == 0, f"task-{k}'s supervisor"
        actor_nodes |= {e["slurm_node"] for e in events(log, "joined")}
    assert learner_node not in actor_nodes and len(actor_nodes) == 2, (learner_node, actor_nodes)
    assert "SOLVED" in output and "done: learner exit 0" in output


def test_a_killed_learner_and_a_killed_actor_come_back_and_the_run_still_solves(slurm, tmp_path):
    run = tmp_path / "run"
    # The run must outlast both kills: every update takes 0.05 s longer (the job's
    # interpreter runs the learner as tests/slow_learner.py; a2c waits for each update,
    # so what is learned per update is unchanged).
    slower = {"LEARNER_ARGS": "--checkpoint-every-s 1", "PYTHON": slow_learner_python(tmp_path)}
    job = submit(job_env(slurm, run, **slower), tmp_path / "job.out")
    learner_log = run / "learner.jsonl"
    try:
        saved = wait_event(learner_log, "checkpoint_saved", job, lambda e: e["env_steps"] > 0)
        first = events(learner_log, "address_written")[0]
        os.kill(first["pid"], signal.SIGKILL)  # every virtual node is this machine
        resumed = wait_event(learner_log, "resumed", job)
        assert resumed["env_steps"] >= saved["env_steps"]
        moved = wait_event(learner_log, "address_written", job, lambda e: e["pid"] != first["pid"])
        assert moved["router"] != first["router"], "the restarted learner has another port"
        # The actors found it by its new address file; now kill one of them.
        victim = wait_event(
            learner_log,
            "actor_joined",
            job,
            lambda e: e["actor_id"] == "task-1" and ts(e) > ts(moved),
        )
        os.kill(victim["pid"], signal.SIGKILL)
        back = wait_event(
            learner_log,
            "actor_joined",
            job,
            lambda e: e["actor_id"] == "task-1" and e["pid"] != victim["pid"] and ts(e) > ts(moved),
        )
        restarted = [e for e in events(learner_log, "actor_restarted") if ts(e) > ts(moved)]
        assert [e["old_incarnation"] for e in restarted if e["actor_id"] == "task-1"] == [
            victim["incarnation"]
        ], "a re-join of a known actor, not a new stranger"
        assert back["seed"] == victim["seed"]
        died = events(run / "actor-task-1.jsonl", "actor_died")
        assert died and died[-1]["signal"] == "SIGKILL"
    finally:
        rc, text = finish(job)
    output = (tmp_path / "job.out").read_text()
    assert rc == 0, text + output
    assert "restart 1 of 3" in output
    assert json.loads((run / "summary.json").read_text())["solved"] is True
    for k in range(4):
        assert events(run / f"actor-task-{k}.jsonl", "respawn_done")[-1]["code"] == 0


def test_scancel_leaves_a_final_checkpoint_and_a_resubmission_resumes_from_it(slurm, tmp_path):
    run = tmp_path / "run"
    endless = {"LEARNER_ARGS": "--target-return 1e9 --checkpoint-every-s 600"}
    job = submit(job_env(slurm, run, **endless), tmp_path / "job1.out")
    learner_log = run / "learner.jsonl"
    try:
        wait_event(learner_log, "progress", job, lambda e: e["env_steps"] >= 20_000)
        jid = job_id(run)
        subprocess.run(["scancel", jid], env=slurm, check=True, timeout=30)
    finally:
        finish(job)
    # sbatch --wait returns once the job is marked cancelled, before its processes are
    # gone: wait for the learner's own last word and for the job to leave the queue.
    wait_event(learner_log, "run_finished", None)
    wait_gone(slurm, jid)
    saved = events(learner_log, "checkpoint_saved")
    assert len(saved) == 1, "the one checkpoint is the final one, written on scancel's SIGTERM"
    saved = saved[0]
    assert saved["env_steps"] >= 20_000
    assert events(learner_log, "run_finished")[-1]["reason"] == "signal"
    # The same RUN_DIR again: the learner resumes; the fleet's keys are the same ones.
    more = {"LEARNER_ARGS": f"--target-return 1e9 --max-env-steps {saved['env_steps'] + 20_000}"}
    rc, text = finish(submit(job_env(slurm, run, **more), tmp_path / "job2.out"))
    assert rc == 0, text + (tmp_path / "job2.out").read_text()
    (resumed,) = events(learner_log, "resumed")
    assert resumed["env_steps"] == saved["env_steps"] and resumed["version"] == saved["version"]
    final = events(learner_log, "checkpoint_saved")[-1]
    assert final["env_steps"] >= saved["env_steps"] + 20_000
    assert final["version"] > saved["version"]


@pytest.mark.parametrize(
    "case, says, code",
    [
        ("unknown learner flag", "unrecognized arguments: --no-such-flag", 2),
        ("run directory no node can write", "cannot be created or written", 2),
        ("missing keys", "holds no learner/learner.key_secret", 2),
        ("keys for too few actors", "task-3", 3),
    ],
)
def test_a_wrong_setting_fails_the_job_at_once_with_a_clear_message(
    slurm, tmp_path, case, says, code
):
    run = tmp_path / "run"
    settings = {}
    if case == "unknown learner flag":
        settings["LEARNER_ARGS"] = "--no-such-flag 1"
    elif case == "run directory no node can write":
        (tmp_path / "file").write_text("")
        run = tmp_path / "file" / "run"
    elif case == "missing keys":
        settings["KEYS"] = str(tmp_path / "no-keys-here")
    else:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "keys.py"),
                "--out",
                str(tmp_path / "k"),
                "--fleet",
                "2",
            ],
            check=True,
        )
        settings["KEYS"] = str(tmp_path / "k")
    # "At once": a job that waited for anything (the actors wait 300 s for a learner) would
    # be ended by `timeout` first, with its code (124), not the one asserted.
    rc, text = finish(submit(job_env(slurm, run, **settings), tmp_path / "job.out"))
    output = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert rc == code, text + output
    assert says in output, output
