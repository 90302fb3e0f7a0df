"""Atari: the actor against the raw emulator, the wire, and the learner's CNN.

    python -m scripts.bench_atari [--env ALE/Pong-v5] [--envs 16] [--rollout-len 80]
                                  [--seconds 5] [--device auto] [--core none] [--out DIR]

All in this process, one torch thread, one emulator thread (the actor's defaults):

a. raw: ``AtariVectorEnv`` (ale-py's C++ vector env, the family's settings) stepped with
   random actions: the emulator's own rate on one thread, and on two.
b. actor: ``build_acting(...).collect()`` (emulator + the CNN's forward pass on the CPU
   + rollout bookkeeping) plus packing and encoding the Experience message, as an actor
   does per rollout; the ratio to (a). Twice: the envs as one vector env, then in
   ``--env-groups`` groups stepped in turn (core/collector.py: one group's emulator
   thread runs while the policy computes the other's actions).
c. wire: bytes per transition of the encoded message, packed (each frame once) and, for
   comparison, with whole stacked observations; and the learner's receive path per
   rollout (decode + check_experience + Rollout.from_arrays + the batch on the device).
d. learner: transitions trained per second on the CNN (the preset's APPO, and a3c's
   single step), one rollout per update, on ``--device``.
e. the overlap alone: the policy's forward pass and the emulator with no rollout
   bookkeeping, three ways: in lockstep (one vector env), two vector envs stepped in
   turn (the actor's env groups), and ale-py's own asynchronous mode (one vector env,
   ``batch_size = envs / 2``: ``recv`` returns whichever half is ready, ``send`` steps
   it), so the choice between the two overlapping mechanisms rests on a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from core import algos
from core.acting import build_acting
from core.batch import Batch
from core.envs import describe, make_vec_env
from core.models import ModelConfig
from core.policy import Policy
from learner.flags import parse
from learner.trainer import Trainer, TrainerConfig
from protocol.checks import check_experience
from protocol.codec import decode, encode
from protocol.messages import Experience
from protocol.rollout import Rollout
from protocol.spec import RunSpec
from scripts.bench_throughput import timed
from scripts.procs import ROOT
from scripts.report import machine_lines, markdown_table, write_report
from scripts.runlog import machine_info


def atari_spec(env: str, envs: int, rollout_len: int, core: str = "none") -> tuple[RunSpec, object]:
    """The Atari preset's spec, with a recurrent ``core`` on the CNN unless none."""
    cfg, _ = parse(
        ["--env", env, "--envs", str(envs), "--rollout-len", str(rollout_len), "--core", core]
    )
    spec = RunSpec(
        env_id=env,
        algo=cfg.algo,
        coordination=cfg.algorithm.coordination,
        loss=algos.config_dict(cfg.loss),
        num_envs=envs,
        rollout_len=rollout_len,
        model={"encoder": "cnn"} if core == "none" else {"encoder": "cnn", "core": core},
        **describe(env),
    )
    size = ModelConfig.from_spec(spec).core_state_size
    return dataclasses.replace(spec, core_state_size=size), cfg


def raw_rate(env: str, envs: int, seconds: float, threads: int = 1) -> float:
    vec = make_vec_env(env, envs, {"num_threads": threads})
    try:
        vec.reset(seed=0)
        rng = np.random.default_rng(0)
        n_actions = vec.single_action_space.n

        def step() -> None:
            vec.step(rng.integers(0, n_actions, envs))

        iters, elapsed = timed(step, seconds, warmup=5)
    finally:
        vec.close()
    return iters * envs / elapsed


def actor_rate(
    spec: RunSpec, envs: int, seconds: float, env_groups: int = 0
) -> tuple[float, list, dict]:
    acting = build_acting(spec, num_envs=envs, seed=1, temperature=1.0, env_groups=env_groups)
    collected: list[Rollout] = []
    spent = {"collect": 0.0, "pack_encode": 0.0}

    def step() -> None:
        t0 = time.perf_counter()
        rollout = acting.collect()
        t1 = time.perf_counter()
        encode(Experience(arrays=rollout.wire_arrays(spec), actor_id="bench", seq=1))
        spent["collect"] += t1 - t0
        spent["pack_encode"] += time.perf_counter() - t1
        if len(collected) < 4:
            collected.append(rollout)

    try:
        step()  # warm-up
        spent.update(collect=0.0, pack_encode=0.0)
        iters, elapsed = timed(step, seconds, warmup=0, min_iters=2)
    finally:
        acting.close()
    per = {k: round(v / iters * 1000, 1) for k, v in spent.items()}
    return iters * envs * spec.rollout_len / elapsed, collected, per


def wire(spec: RunSpec, rollouts: list[Rollout], device: torch.device) -> dict:
    r = rollouts[0]
    transitions = r.num_steps * r.num_envs
    packed = encode(Experience(arrays=r.wire_arrays(spec), actor_id="bench", seq=1))
    whole = encode(Experience(arrays=r.arrays(), actor_id="bench", seq=1))
    frames = [bytes(f) for f in packed]

    def receive() -> None:
        msg = decode(frames)
        check_experience(msg, spec, r.num_envs)
        batch = Batch.from_rollouts([Rollout.from_arrays(msg.arrays)], device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        del batch

    iters, elapsed = timed(receive, 2.0)
    return {
        "bytes_per_transition_packed": round(sum(len(f) for f in frames) / transitions),
        "bytes_per_transition_whole": round(sum(memoryview(f).nbytes for f in whole) / transitions),
        "receive_ms_per_rollout": round(elapsed / iters * 1000, 2),
    }


def learner_rate(
    spec: RunSpec, cfg, rollouts: list[Rollout], device: torch.device, seconds: float
) -> dict:
    out = {}
    for name in (cfg.algo, "a3c"):
        algo = algos.get(name)
        loss = cfg.loss if name == cfg.algo else algo.make_config({"reward_clip": 1.0})
        trainer = Trainer(spec, algo, loss, TrainerConfig(lr=cfg.learning_rate), device)
        received = [Rollout.from_arrays(r.wire_arrays(spec)) for r in rollouts]
        k = {"i": 0}

        def step(trainer=trainer, received=received, k=k) -> None:
            trainer.train_on([received[k["i"] % len(received)]])
            k["i"] += 1
            if device.type == "cuda":
                torch.cuda.synchronize()

        iters, elapsed = timed(step, seconds, warmup=1, min_iters=2)
        out[name] = iters * received[0].num_envs * received[0].num_steps / elapsed
    return out


def overlap_rates(spec: RunSpec, envs: int, seconds: float) -> dict[str, float]:
    """Env steps/s of the policy + emulator loop alone (e. in the docstring), each way
    with the same two emulator threads; ``lockstep_1`` is the one-thread lockstep."""
    from ale_py.vector_env import AtariVectorEnv

    from core.envs.ale_family import game_of

    policy = Policy(ModelConfig.from_spec(spec), temperature=1.0, seed=1)
    half = envs // 2

    def vec(n: int, threads: int, batch: int = 0) -> AtariVectorEnv:
        return AtariVectorEnv(
            game=game_of(spec.env_id),
            num_envs=n,
            batch_size=batch,
            num_threads=threads,
            repeat_action_probability=0.25,
            reward_clipping=False,
        )

    def lockstep(threads: int) -> float:
        v = vec(envs, threads)
        obs = {"o": v.reset(seed=0)[0]}

        def step() -> None:
            obs["o"] = v.step(policy.act(obs["o"])[0])[0]

        try:
            iters, elapsed = timed(step, seconds, warmup=5)
        finally:
            v.close()
        return iters * envs / elapsed

    def groups() -> float:
        vs = [vec(half, 1), vec(envs - half, 1)]
        obs = [v.reset(seed=100 * i)[0] for i, v in enumerate(vs)]
        vs[0].send(policy.act(obs[0])[0])
        turn = {"g": 1}

        def step() -> None:  # act for group g while the other emulates
            g = turn["g"]
            vs[g].send(policy.act(obs[g])[0])
            obs[1 - g] = vs[1 - g].recv()[0]
            turn["g"] = 1 - g

        try:
            iters, elapsed = timed(step, seconds, warmup=5)
        finally:
            for v in vs:
                v.close()
        return iters * envs / 2 / elapsed

    def asynchronous() -> float:
        v = vec(envs, 2, batch=half)
        obs = {"o": v.reset(seed=0)[0]}

        def step() -> None:  # act for the half that is ready; the rest emulates
            v.send(policy.act(obs["o"])[0])
            obs["o"] = v.recv()[0]

        try:
            iters, elapsed = timed(step, seconds, warmup=5)
        finally:
            v.close()
        return iters * half / elapsed

    return {
        "lockstep_1": lockstep(1),
        "lockstep_2": lockstep(2),
        "groups": groups(),
        "ale_async": asynchronous(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_atari", description=__doc__)
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--rollout-len", type=int, default=80)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--core", default="none", choices=("none", "lstm", "gru"))
    p.add_argument("--env-groups", type=int, default=2, help="groups for the second actor figure")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    spec, cfg = atari_spec(args.env, args.envs, args.rollout_len, args.core)
    raw = raw_rate(args.env, args.envs, args.seconds)
    # One vector env stepped in lockstep with the policy (as before env groups), then
    # the envs in groups stepped in turn (the ALE default, core/collector.py).
    raw2 = raw_rate(args.env, args.envs, args.seconds, threads=2)
    one, _, _ = actor_rate(spec, args.envs, args.seconds, env_groups=1)
    actor, rollouts, per = actor_rate(spec, args.envs, args.seconds, env_groups=args.env_groups)
    w = wire(spec, rollouts, device)
    learn = learner_rate(spec, cfg, rollouts, device, args.seconds)
    overlap = overlap_rates(spec, args.envs, args.seconds)
    results = {
        "env": args.env,
        "envs": args.envs,
        "rollout_len": args.rollout_len,
        "device": str(device),
        "core": args.core,
        "raw_env_steps_per_s": round(raw),
        "raw_two_threads_env_steps_per_s": round(raw2),
        "actor_one_group_env_steps_per_s": round(one),
        "actor_one_group_vs_raw": round(one / raw, 3),
        "env_groups": args.env_groups,
        "actor_env_steps_per_s": round(actor),
        "actor_vs_raw": round(actor / raw, 3),
        "actor_ms_per_rollout": per,
        **w,
        "learner_samples_per_s": {k: round(v) for k, v in learn.items()},
        "policy_loop_env_steps_per_s": {k: round(v) for k, v in overlap.items()},
        "machine": machine_info(),
    }
    rows = [
        ["raw AtariVectorEnv, 1 thread, random actions", f"{raw:,.0f} env steps/s"],
        ["raw AtariVectorEnv, 2 threads, random actions", f"{raw2:,.0f} env steps/s"],
        [
            "actor, one group: collect with the CNN + pack + encode",
            f"{one:,.0f} env steps/s ({one / raw:.0%} of raw)",
        ],
        [
            f"actor, {args.env_groups} groups stepped in turn",
            f"{actor:,.0f} env steps/s ({actor / raw:.0%} of raw)",
        ],
        [
            "actor per rollout (collect / pack+encode)",
            f"{per['collect']} / {per['pack_encode']} ms",
        ],
        ["wire, each frame once", f"{w['bytes_per_transition_packed']:,} B per transition"],
        ["wire, whole stacks (for comparison)", f"{w['bytes_per_transition_whole']:,} B"],
        ["learner receive path per rollout", f"{w['receive_ms_per_rollout']} ms"],
    ]
    rows += [[f"learner {k} on {device}", f"{v:,.0f} samples/s"] for k, v in learn.items()]
    half = args.envs // 2
    rows += [
        [f"policy loop alone, {label}", f"{overlap[key]:,.0f} env steps/s"]
        for key, label in (
            ("lockstep_1", "lockstep, 1 emulator thread"),
            ("lockstep_2", "lockstep, 2 emulator threads"),
            ("groups", f"two groups of {half} in turn, a thread each"),
            ("ale_async", f"ale-py async, batch {half}, 2 threads"),
        )
    ]
    body = (
        f"`python -m scripts.bench_atari --env {args.env} --envs {args.envs} "
        f"--rollout-len {args.rollout_len} --core {args.core} --env-groups {args.env_groups}`\n\n"
        + markdown_table(["what", "measured"], rows)
        + "\n\n"
        + machine_lines(results["machine"])
    )
    out = Path(args.out or ROOT / "runs" / time.strftime("bench-atari-%Y%m%d-%H%M%S"))
    write_report(out, "Atari benchmark", body, results)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
