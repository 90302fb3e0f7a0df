"""Does gymnasium's AsyncVectorEnv pay for an env that is slow to step (MuJoCo, Box2D)?

Env steps per second of ``--envs`` copies with a 64-64 MLP choosing the actions (torch,
one thread, as an actor's policy), three ways, alternating ``--repeats`` times:

- ``sync``: one SyncVectorEnv, the policy and the envs taking turns (the actor today);
- ``async``: one AsyncVectorEnv (a process per env), the same turns;
- ``async x2``: two AsyncVectorEnvs double-buffered as the collector's env groups are
  (``--env-groups 2``): one group's envs step in their processes while the policy
  computes the other group's actions.

    python -m scripts.bench_vector --env HalfCheetah-v5 --envs 16 --seconds 4

No sockets, no learner: this measures whether the actor should step such envs in
processes of their own, which is worth it only where the cores are there to run them.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode


def make(env_id: str, n: int, mode: str) -> gym.vector.VectorEnv:
    return gym.make_vec(
        env_id,
        num_envs=n,
        vectorization_mode=mode,
        vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
    )


def policy_for(envs: gym.vector.VectorEnv):
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    space = envs.single_action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    out = int(space.n) if discrete else int(np.prod(space.shape))
    net = torch.nn.Sequential(
        torch.nn.Linear(obs_dim, 64), torch.nn.Tanh(),
        torch.nn.Linear(64, 64), torch.nn.Tanh(),
        torch.nn.Linear(64, out),
    )  # fmt: skip

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        y = net(torch.as_tensor(obs, dtype=torch.float32).reshape(len(obs), -1)).numpy()
        return (
            y.argmax(1)
            if discrete
            else np.clip(y, space.low, space.high).reshape(len(obs), *space.shape)
        )

    return act


def steps_per_s(env_id: str, num_envs: int, groups: int, mode: str, seconds: float) -> float:
    envs = [make(env_id, num_envs // groups, mode) for _ in range(groups)]
    try:
        act = policy_for(envs[0])
        obs = [e.reset(seed=g)[0] for g, e in enumerate(envs)]
        steps, start = 0, time.perf_counter()
        if mode == "sync":
            while time.perf_counter() - start < seconds:
                for g, e in enumerate(envs):
                    obs[g] = e.step(act(obs[g]))[0]
                    steps += e.num_envs
        else:
            for g, e in enumerate(envs):
                e.step_async(act(obs[g]))
            while time.perf_counter() - start < seconds:
                for e in envs:  # while this group's actions are computed, the others step
                    o = e.step_wait()[0]
                    steps += e.num_envs
                    e.step_async(act(o))
            for e in envs:
                e.step_wait()
        return steps / (time.perf_counter() - start)
    finally:
        for e in envs:
            e.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_vector", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.envs < 2 or args.envs % 2:
        parser.error(
            f"--envs must be even and at least 2 to split into two groups, got {args.envs}"
        )
    torch.set_num_threads(1)
    ways = (("sync", 1, "sync"), ("async", 1, "async"), ("async x2", 2, "async"))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in ways}
    for _ in range(args.repeats):
        for name, groups, mode in ways:
            rates[name].append(steps_per_s(args.env, args.envs, groups, mode, args.seconds))
    print(f"{args.env}, {args.envs} envs, MLP 64-64 policy, {args.seconds:g} s x {args.repeats}")
    for name, values in rates.items():
        shown = ", ".join(f"{v:,.0f}" for v in values)
        print(
            f"  {name:9s} {shown} env steps/s ({np.median(values) / np.median(rates['sync']):.2f}x sync)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
