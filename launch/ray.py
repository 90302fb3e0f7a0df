"""``python -m launch.ray``: a training run on an existing Ray cluster.

    python -m launch.ray --actors 16 [--learner-gpus 1] -- --env ALE/Pong-v5 --device cuda

Ray places one learner and ``--actors`` actors (by the resources asked for) and restarts
them when they die; the data never touches Ray: the learner and the actors are the
ordinary ``python -m learner`` / ``python -m actor`` processes, talking ZeroMQ, encrypted
with keys this driver makes for the run.

    driver (here)                     Ray cluster (launch/ray_hosts.py)
      make keys ─────────────────▶  LearnerHost (max_restarts=--learner-restarts): runs
      │                               python -m learner --port 0 --address-file F;
      │                               address() reads F
      │                             ActorHost k (max_restarts=--actor-restarts): runs python -m actor
      │                               --learner-file F_k, and keeps F_k = LearnerHost.address()
      wait for the learner's run() ──▶ its exit code is the run's; then stop every actor

Restarts are Ray's: a host whose process died of a crash exits its worker, Ray starts the
host again (up to ``--learner-restarts`` / ``--actor-restarts`` times) and retries ``run()`` (``max_task_retries=-1``), which
starts the process again: the learner with ``--resume`` from its run directory, the
actor with the same id (the learner logs ``actor_restarted``). Exits a restart cannot
cure (0, 2 usage, 3 keys, 5 no learner) end ``run()`` with that code instead.

Keys travel to the hosts through Ray's control plane (turn on Ray's TLS on an untrusted
network); each host writes them mode 0600 into a private directory of its node.
``--run-dir`` should be on storage the learner's possible nodes share, for its
checkpoints to survive a move. Needs the ``ray`` extra: ``pip install -e '.[ray]'``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import ray

from launch.ray_hosts import ActorHost, LearnerHost, files_of
from protocol.keys import fleet_names, make_keys

POLL_S = 0.2
STOP_WAIT_S = 20.0
STOP_EVERY_S = 5.0
STOP_DEADLINE_S = 120.0
LEARNER_FINISH_S = 60.0  # after every actor left on its Shutdown


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, learner_flags = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m launch.ray",
        description="Run a learner and N actors on a Ray cluster (RAY_ADDRESS or --address). "
        "Flags after -- go to the learner.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--address", default=os.environ.get("RAY_ADDRESS", "auto"), help="the Ray cluster"
    )
    parser.add_argument(
        "--actors", type=int, default=2, help="actor processes (one Ray actor each)"
    )
    parser.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs Ray reserves per actor")
    parser.add_argument(
        "--learner-cpus", type=float, default=1.0, help="CPUs Ray reserves for the learner"
    )
    parser.add_argument(
        "--learner-gpus",
        type=float,
        default=0.0,
        help="GPUs for the learner (Ray places it on a node that has them)",
    )
    parser.add_argument("--actor-args", default="", help="flags for every actor, e.g. '--envs 32'")
    parser.add_argument(
        "--run-dir",
        default="",
        help="the learner's --run-dir (storage its nodes share, to resume after a move); default: runs/ray-<time> where the learner runs",
    )
    parser.add_argument(
        "--actor-run-dir", default="", help="where actors write their logs; default: --run-dir"
    )
    parser.add_argument(
        "--bind-host",
        default="0.0.0.0",
        help="what the learner binds; actors connect to its node's Ray address",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="no CurveZMQ keys (trusted networks only)"
    )
    parser.add_argument(
        "--learner-restarts",
        type=int,
        default=3,
        help="times Ray may start a crashed learner again (it resumes); then the run fails",
    )
    parser.add_argument(
        "--actor-restarts", type=int, default=100, help="times Ray may start each actor again"
    )
    args = parser.parse_args(own)
    if args.actors < 1:
        parser.error("--actors must be >= 1")
    return args, learner_flags


def main(argv: Sequence[str] | None = None) -> int:
    args, learner_flags = parse(argv)
    root = str(Path(__file__).resolve().parent.parent)
    run_dir = args.run_dir or str(Path(root) / "runs" / f"ray-{time.strftime('%Y%m%d-%H%M%S')}")
    learner_flags = ["--run-dir", run_dir, "--console", "plain", *learner_flags]
    actor_flags = ["--run-dir", args.actor_run_dir or run_dir, *args.actor_args.split()]
    names = fleet_names(args.actors)
    keys: dict[str, dict[str, bytes]] = {}
    if not args.insecure:
        with tempfile.TemporaryDirectory(prefix="zmq-a3c-keys-") as tmp:
            make_keys(Path(tmp), names, keep=True)
            keys = {n: files_of(Path(tmp) / n) for n in ["learner", *names]}
    ray.init(
        address=args.address, runtime_env={"env_vars": {"PYTHONPATH": root}}, log_to_driver=True
    )
    say(f"Ray cluster {args.address}: 1 learner, {args.actors} actors, run dir {run_dir}")
    short = shortfall(
        ray.cluster_resources(),
        cpus=args.learner_cpus + args.actors * args.actor_cpus,
        gpus=args.learner_gpus,
    )
    if short:
        # Not refused: an autoscaling cluster adds nodes for what waits. Without one,
        # what does not fit waits for ever, and this line says why.
        say(
            f"warning: the run asks for more than the cluster has now ({short}); "
            "what does not fit waits for Ray to place it"
        )
    learner = LearnerHost.options(
        num_cpus=args.learner_cpus,
        num_gpus=args.learner_gpus,
        max_restarts=args.learner_restarts,
    ).remote(keys.get("learner"))
    learner_run = learner.run.remote(learner_flags, args.bind_host, root)
    actors = {
        n: ActorHost.options(num_cpus=args.actor_cpus, max_restarts=args.actor_restarts).remote(
            n, keys.get(n)
        )
        for n in names
    }
    runs = {actors[n].run.remote(learner, actor_flags, root): n for n in names}
    stopped = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stopped.update(requested=True))
    signal.signal(signal.SIGINT, lambda *_: stopped.update(requested=True))
    try:
        code, failed = _watch(learner, learner_run, runs, stopped)
    finally:
        for host in actors.values():
            host.stop.remote()
        if runs:
            ray.wait(list(runs), num_returns=len(runs), timeout=STOP_WAIT_S)
        hosts = [*actors.values(), learner]
        # Their keys off the nodes, then the hosts themselves.
        ray.wait([h.forget.remote() for h in hosts], num_returns=len(hosts), timeout=10)
        for host in hosts:
            ray.kill(host, no_restart=True)
        ray.shutdown()
    if code == 0 and failed and len(failed) == len(actors):
        return min(failed.values())
    return code


def _watch(learner, learner_run, runs: dict, stopped: dict) -> tuple[int, dict[str, int]]:
    """Until the learner's run() ends: print every exit; stop the learner when asked
    (every STOP_EVERY_S until it ends, ray.kill after STOP_DEADLINE_S) or when every
    actor gave up; give it LEARNER_FINISH_S once every actor left on its Shutdown.
    Returns the learner's exit code and the actors that failed."""
    failed: dict[str, int] = {}
    stopping_since = finishing_since = None
    last_stop = 0.0
    while True:
        done, _ = ray.wait([learner_run, *runs], num_returns=1, timeout=POLL_S)
        for ref in done:
            if ref == learner_run:
                try:
                    code = _shell_code(ray.get(ref))
                except ray.exceptions.RayError as exc:  # restarted --learner-restarts times
                    say(f"the learner is gone for good: {type(exc).__name__}")
                    return 1, failed
                say(f"learner exited {code}")
                return code, failed
            name = runs.pop(ref)
            try:
                actor_code = _shell_code(ray.get(ref))
            except ray.exceptions.RayError as exc:  # restarted --actor-restarts times
                say(f"actor {name} is gone for good: {type(exc).__name__}")
                actor_code = 1
            say(f"actor {name} exited {actor_code}")
            if actor_code:
                failed[name] = actor_code
        now = time.monotonic()
        if stopping_since is None and (stopped["requested"] or (not runs and failed)):
            # Stopped here, or every actor gave up: the learner checkpoints and ends.
            say("stopping the learner" + ("" if stopped["requested"] else ": every actor gave up"))
            stopping_since = now
        if stopping_since is None and not runs:
            # Every actor left on the learner's Shutdown: it is finishing by itself.
            finishing_since = finishing_since or now
            if now - finishing_since > LEARNER_FINISH_S:
                stopping_since = now
        if stopping_since is not None:
            if now - stopping_since > STOP_DEADLINE_S:
                # Its process is SIGKILLed by forget(), then its host by ray.kill (main).
                say("the learner did not stop: killing it")
                return 1, failed
            if now - last_stop > STOP_EVERY_S:  # a restarting host may miss one
                learner.stop.remote()
                last_stop = now


def shortfall(resources: dict, *, cpus: float, gpus: float) -> str:
    """What the run asks for beyond ``resources`` (``ray.cluster_resources()``), in
    words; "" when it fits."""
    have_cpu, have_gpu = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    missing = []
    if cpus > have_cpu:
        missing.append(f"{cpus:g} CPUs, the cluster has {have_cpu:g}")
    if gpus > have_gpu:
        missing.append(f"{gpus:g} GPUs, the cluster has {have_gpu:g}")
    return "; ".join(missing)


def _shell_code(code: int) -> int:
    return 128 - code if code < 0 else code


def say(text: str) -> None:
    print(f"launch.ray: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
