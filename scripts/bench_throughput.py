"""Where the time goes: env + forward pass, rollout collection, the wire, the learner.

    python -m scripts.bench_throughput [--envs 8,64,256] [--rollout-len 8] [--seconds 1]
                                       [--e2e-actors 1,2,4,8]

(a)-(d) run in this process on one torch thread; (a)-(c) never update the network,
(d) updates it on fixed, pre-collected rollouts; only (e) learns as a run would:

a. raw limit: ``gymnasium.make_vec(..., "vector_entry_point")`` stepped with actions
   from the actor's batched forward pass (``Policy.act``); no rollout bookkeeping.
b. actor rollout: ``RolloutCollector.collect(policy.act)`` plus ``encode`` of the
   Experience message, as the actor does per rollout; ratio to (a).
c. wire: encode + send on a DEALER -> ROUTER pair on 127.0.0.1 (protocol.sockets, the
   real options) + receive (copy=False) + decode + check_experience, per batch, and as
   a share of the time to collect that batch; bytes per transition slot (all frames of
   the message / T*N).
d. learner: ``Trainer.train_on`` on K actors' rollouts (N=32, T=8 each).
e. optional, ``--e2e-actors``: ``python -m learner --algo a3c --actors K`` (N=32, T=8) for
   ``--e2e-seconds`` each, steady-state env steps/s from its progress events. On a
   machine with few cores this measures contention between K+1 processes more than
   the learner.

Rates are the best of ``--repeats`` timed windows of ``--seconds`` (noise from other
processes only slows a run down). Env steps count every ``step`` call (autoreset steps
included) so (a) and (b) count alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import zmq

from core import algos
from core.acting import build_acting
from core.envs import describe
from core.models import ModelConfig
from core.policy import Policy
from learner.trainer import Trainer, TrainerConfig
from protocol import sockets
from protocol.checks import check_experience
from protocol.codec import decode, encode
from protocol.messages import Experience
from protocol.spec import RunSpec
from scripts.procs import ROOT, fresh_run_dir, run_process
from scripts.report import machine_lines, markdown_table, write_report
from scripts.runlog import machine_info

ENV_ID = "CartPole-v1"
POLL_MS = 5000


def run_spec(num_envs: int, rollout_len: int, algo: str = "a2c", core: str = "none") -> RunSpec:
    """CartPole's spec, with the default MLP and, unless ``core`` is none, a recurrent
    core of its default width."""
    spec = RunSpec(
        env_id=ENV_ID,
        algo=algo,
        num_envs=num_envs,
        rollout_len=rollout_len,
        coordination=algos.get(algo).coordination,
        model={} if core == "none" else {"core": core},
        **describe(ENV_ID),
    )
    return dataclasses.replace(spec, core_state_size=ModelConfig.from_spec(spec).core_state_size)


def timed(step: Callable[[], object], seconds: float, *, warmup: int = 2, min_iters: int = 3):
    """(iterations, elapsed s) of calling ``step`` for at least ``seconds``."""
    for _ in range(warmup):
        step()
    iters, t0 = 0, time.perf_counter()
    while True:
        step()
        iters += 1
        elapsed = time.perf_counter() - t0
        if iters >= min_iters and elapsed >= seconds:
            return iters, elapsed


def raw_rate(num_envs: int, seconds: float, core: str = "none") -> dict:
    """(a) env steps/s of the numpy CartPole stepped by the batched forward pass."""
    envs = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point")
    policy = Policy(ModelConfig.from_spec(run_spec(num_envs, 1, core=core)), seed=0)
    obs, _ = envs.reset(seed=0)

    def step() -> None:
        nonlocal obs
        actions, _ = policy.act(obs)
        obs, *_ = envs.step(actions)

    try:
        iters, elapsed = timed(step, seconds)
    finally:
        envs.close()
    return {"steps_per_s": iters * num_envs / elapsed}


def _experience(arrays: dict[str, np.ndarray], seq: int) -> Experience:
    return Experience(arrays=arrays, actor_id="bench", incarnation="0", seq=seq, learner_id="x")


def _collector(num_envs: int, rollout_len: int, core: str = "none", seed: int = 0) -> tuple:
    spec = run_spec(num_envs, rollout_len, core=core)
    acting = build_acting(spec, num_envs=num_envs, seed=seed, temperature=1.0)
    return spec, acting.collector, acting.policy


def rollout_rate(num_envs: int, rollout_len: int, seconds: float, core: str = "none") -> dict:
    """(b) env steps/s of collect + encode, and the time per batch of each."""
    _, collector, policy = _collector(num_envs, rollout_len, core)
    spent = {"collect": 0.0, "encode": 0.0}

    def step() -> None:
        t0 = time.perf_counter()
        rollout = collector.collect(policy.act)
        t1 = time.perf_counter()
        encode(_experience(rollout.wire_arrays(collector.spec), 0))
        spent["collect"] += t1 - t0
        spent["encode"] += time.perf_counter() - t1

    try:
        for _ in range(2):  # warm-up, not counted
            step()
        spent.update(collect=0.0, encode=0.0)
        iters, elapsed = timed(step, seconds, warmup=0)
    finally:
        collector.close()
    return {
        "steps_per_s": iters * num_envs * rollout_len / elapsed,
        "collect_us": 1e6 * spent["collect"] / iters,
        "encode_us": 1e6 * spent["encode"] / iters,
    }


def wire_cost(
    num_envs: int, rollout_len: int, seconds: float, distinct: int = 4, core: str = "none"
) -> dict:
    """(c) µs per batch for encode -> DEALER -> ROUTER -> decode -> check, and bytes."""
    spec, collector, policy = _collector(num_envs, rollout_len, core)
    try:
        batches = [collector.collect(policy.act) for _ in range(distinct)]
    finally:
        collector.close()
    ctx = sockets.new_context()
    router, port = sockets.bind_router(ctx, "127.0.0.1", 0)
    dealer, _ = sockets.connect_dealer(ctx, sockets.tcp("127.0.0.1", port))  # no monitor
    dealer.setsockopt(zmq.SNDTIMEO, POLL_MS)  # IMMEDIATE: a send waits for the connection
    sent = {"seq": 0, "bytes": 0}  # over warm-up and timed batches alike
    # CPU time of the work itself, excluding the wait for the message to cross loopback
    # (a streaming actor overlaps that wait with its next rollout).
    work = {"encode": 0.0, "send": 0.0, "recv": 0.0, "decode_check": 0.0}
    clock = time.perf_counter

    def step() -> None:
        sent["seq"] += 1
        t0 = clock()
        batch = batches[sent["seq"] % distinct]
        frames = encode(_experience(batch.wire_arrays(spec), sent["seq"]))
        t1 = clock()
        dealer.send_multipart(frames, copy=False)
        t2 = clock()
        sent["bytes"] += sum(memoryview(f).nbytes for f in frames)
        if not router.poll(POLL_MS):
            raise TimeoutError("the ROUTER received nothing within 5 s")
        t3 = clock()
        got = router.recv_multipart(copy=False)
        t4 = clock()
        check_experience(decode(got[1:]), spec, num_envs)  # got[0]: the DEALER's identity
        t5 = clock()
        work["encode"] += t1 - t0
        work["send"] += t2 - t1
        work["recv"] += t4 - t3
        work["decode_check"] += t5 - t4

    try:
        iters, elapsed = timed(step, seconds)
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        ctx.term()
    per_batch = sent["bytes"] / sent["seq"]
    return {
        "wire_us": 1e6 * sum(work.values()) / sent["seq"],
        **{f"{k}_us": 1e6 * v / sent["seq"] for k, v in work.items()},
        "round_trip_us": 1e6 * elapsed / iters,
        "bytes_per_batch": per_batch,
        "bytes_per_transition": per_batch / (num_envs * rollout_len),
    }


def learner_rate(
    actors: int, seconds: float, num_envs: int = 32, rollout_len: int = 8, core: str = "none"
) -> dict:
    """(d) samples/s of one A2C update on ``actors`` rollouts side by side."""
    spec, collector, policy = _collector(num_envs, rollout_len, core)
    try:
        batches = [collector.collect(policy.act) for _ in range(actors)]
    finally:
        collector.close()
    algo = algos.get("a2c")
    trainer = Trainer(spec, algo, algo.make_config(), TrainerConfig(), torch.device("cpu"))
    iters, elapsed = timed(lambda: trainer.train_on(batches), seconds)
    samples = actors * num_envs * rollout_len
    return {
        "samples_per_update": samples,
        "updates_per_s": iters / elapsed,
        "samples_per_s": iters * samples / elapsed,
    }


def e2e_rate(actors: int, seconds: float, run_dir: Path, core: str = "none") -> dict:
    """(e) a real a3c learner with ``actors`` local actor processes."""
    fresh_run_dir(run_dir)
    cmd = [sys.executable, "-m", "learner", "--algo", "a3c", "--actors", str(actors)]
    cmd += ["--core", core]
    cmd += ["--envs", "32", "--rollout-len", "8", "--max-seconds", str(seconds)]
    cmd += ["--target-return", "100000", "--port", "0", "--run-dir", str(run_dir)]
    cmd += ["--checkpoint-every-s", "0"]
    code, _, _ = run_process(cmd, run_dir / "console.log", seconds + 90)
    events = []
    log = run_dir / "learner.jsonl"
    for line in log.read_text().splitlines() if log.is_file() else []:
        ev = json.loads(line)
        if ev.get("event") == "progress" and ev.get("env_steps"):
            events.append(ev)
    if code != 0 or len(events) < 2:
        return {"steps_per_s": None, "error": f"exit {code}, {len(events)} progress events"}
    # Steady state: from the first progress event with steps to the last.
    first, last = events[0], events[-1]
    dt = last["wall_s"] - first["wall_s"]
    return {
        "steps_per_s": (last["env_steps"] - first["env_steps"]) / dt if dt > 0 else None,
        "updates_per_s": (last["updates"] - first["updates"]) / dt if dt > 0 else None,
    }


def best_of(repeats: int, measure: Callable[[], dict], key: str, higher: bool = True) -> dict:
    runs = [measure() for _ in range(repeats)]
    return (max if higher else min)(runs, key=lambda r: r[key])


def _n(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def report(results: dict) -> str:
    actor_rows = [
        [
            r["num_envs"],
            _n(r["raw"]["steps_per_s"]),
            _n(r["rollout"]["steps_per_s"]),
            f"{r['rollout']['steps_per_s'] / r['raw']['steps_per_s']:.2f}",
            _n(r["wire"]["wire_us"], 1),
            f"{100 * r['wire']['wire_us'] / r['rollout']['collect_us']:.1f}%",
            _n(r["wire"]["bytes_per_transition"], 1),
            " / ".join(
                _n(r["wire"][f"{k}_us"], 1) for k in ("encode", "send", "recv", "decode_check")
            ),
            _n(r["wire"]["round_trip_us"], 1),
        ]
        for r in results["actor"]
    ]
    learner_rows = [
        [r["actors"], r["samples_per_update"], _n(r["updates_per_s"], 1), _n(r["samples_per_s"])]
        for r in results["learner"]
    ]
    t = results["rollout_len"]
    parts = [
        f"One torch thread; (d) updates on fixed rollouts. T = {t}; best of {results['repeats']} "
        f"windows of {results['seconds']:g} s.",
        markdown_table(
            [
                "N envs",
                "(a) raw env+forward steps/s",
                "(b) rollout+encode steps/s",
                "(b)/(a)",
                "(c) wire µs/batch",
                "(c) % of collect",
                "bytes/transition",
                "encode / send / recv / decode+check µs",
                "loopback round trip µs",
            ],
            actor_rows,
        ),
        "(c) is the work the wire costs per [T=" + str(t) + ", N] batch: encode + the send "
        "call + the receive call + decode + check_experience, against the time to collect "
        "that batch. It leaves out the wait while the message crosses loopback (ZeroMQ's I/O "
        "thread carries it while a streaming actor collects its next rollout); that wait is "
        "in the round-trip column, measured with one message in flight at a time.",
        markdown_table(
            ["actors per update (N=32, T=8 each)", "samples/update", "updates/s", "samples/s"],
            learner_rows,
        ),
    ]
    if results.get("e2e"):
        rows = [
            [r["actors"], _n(r["steps_per_s"]), _n(r.get("updates_per_s"), 1)]
            for r in results["e2e"]
        ]
        parts += [
            markdown_table(
                ["a3c actors (processes, N=32, T=8 each)", "env steps/s", "updates/s"], rows
            ),
            f"(e) a real learner with K actor processes on {results['machine']['nproc']} "
            "cores: beyond one process per core this measures contention, not the learner.",
        ]
    parts.append("Machine:\n" + machine_lines(results["machine"]))
    return "\n\n".join(parts)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scripts.bench_throughput",
        description="Throughput of the env, the actor, the wire and the learner update.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--envs", default="8,64,256", help="env counts N for (a)-(c)")
    p.add_argument("--rollout-len", type=int, default=8, help="T for (b) and (c)")
    p.add_argument("--learner-actors", default="1,2,4,8", help="rollouts per update for (d)")
    p.add_argument("--seconds", type=float, default=1.0, help="length of one timed window")
    p.add_argument("--repeats", type=int, default=3, help="timed windows; the best counts")
    p.add_argument("--e2e-actors", default="", help="(e) actor counts, e.g. 1,2,4,8; off if empty")
    p.add_argument("--e2e-seconds", type=float, default=10.0, help="length of each (e) run")
    p.add_argument(
        "--core",
        default="none",
        choices=("none", "lstm", "gru"),
        help="the network's recurrent core",
    )
    p.add_argument("--out", default=str(ROOT / "runs"), help="parent of the report directory")
    args = p.parse_args(argv)
    c = args.core
    torch.set_num_threads(1)
    out_dir = Path(args.out) / f"bench-throughput-{time.strftime('%Y%m%d-%H%M%S')}"
    t, s, k = args.rollout_len, args.seconds, args.repeats
    results: dict = {
        "machine": machine_info(),
        "rollout_len": t,
        "seconds": s,
        "repeats": k,
        "core": c,
    }
    results["actor"] = [
        {
            "num_envs": n,
            "raw": best_of(k, lambda n=n: raw_rate(n, s, c), "steps_per_s"),
            "rollout": best_of(k, lambda n=n: rollout_rate(n, t, s, c), "steps_per_s"),
            "wire": best_of(k, lambda n=n: wire_cost(n, t, s, core=c), "wire_us", higher=False),
        }
        for n in _ints(args.envs)
    ]
    results["learner"] = [
        {"actors": a, **best_of(k, lambda a=a: learner_rate(a, s, core=c), "samples_per_s")}
        for a in _ints(args.learner_actors)
    ]
    results["e2e"] = [
        {"actors": a, **e2e_rate(a, args.e2e_seconds, out_dir / f"e2e-{a}", c)}
        for a in _ints(args.e2e_actors)
    ]
    body = report(results)
    title = "Throughput (CartPole-v1)" if c == "none" else f"Throughput (CartPole-v1, --core {c})"
    write_report(out_dir, title, body, results)
    print(body)
    print(f"\nreport: {out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
