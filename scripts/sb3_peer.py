"""Stable-Baselines3 on CartPole-v1 with rl-baselines3-zoo's settings: the peer that
``bench_solve.py`` times our trainer against.

    python scripts/sb3_peer.py --algo a2c|ppo --seed S --max-seconds 120
    -> {"system": "sb3-ppo", "seed": S, "solved": true, "wall_s": ..., "env_steps": ...}

The clock starts just before ``model.learn()`` (imports, env and model construction
are not timed) and stops when the mean return of the last 100 finished episodes
reaches 475, the same rule and window our learner uses; ``env_steps`` is SB3's
``num_timesteps`` at that moment. Training also stops at ``--max-seconds`` or at the
zoo's ``n_timesteps`` (the linear schedules are defined over that budget), unsolved.

Hyperparameters are rl-baselines3-zoo's ``hyperparams/a2c.yml`` and ``ppo.yml``
entries for CartPole-v1 (keys and values copied in ``ZOO`` below; everything not
listed is SB3's default, as in the zoo). Like the zoo: ``make_vec_env`` (Monitor per
env, DummyVecEnv), MlpPolicy. Unlike the zoo: one torch thread and ``device="cpu"``,
so that the peer runs under the same rules as our processes.

Stable-Baselines3 is an optional extra (``pip install -e '.[bench]'``); nothing in
the trainer imports this file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ENV_ID = "CartPole-v1"
TARGET_RETURN = 475.0  # CartPole-v1's reward_threshold
WINDOW = 100  # episodes in the solved criterion, as learner/stats.py

INSTALL_HINT = (
    "stable-baselines3 is not installed; it is an optional extra for benchmarks: "
    "pip install -e '.[bench]'"
)


def linear(initial: float) -> Callable[[float], float]:
    """rl_zoo3.utils.linear_schedule: the zoo's ``lin_<x>`` values."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


# rl-baselines3-zoo hyperparams/{a2c,ppo}.yml, entry CartPole-v1.
ZOO: dict[str, dict[str, Any]] = {
    "a2c": {
        "n_envs": 8,
        "n_timesteps": int(5e5),
        "policy": "MlpPolicy",
        # SB3 defaults: n_steps 5, lr 7e-4, RMSprop (eps 1e-5), gamma 0.99, gae_lambda 1.
        "kwargs": {"ent_coef": 0.0},
    },
    "ppo": {
        "n_envs": 8,
        "n_timesteps": int(1e5),
        "policy": "MlpPolicy",
        "kwargs": {
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "ent_coef": 0.0,
            "learning_rate": linear(1e-3),
            "clip_range": linear(0.2),
        },
    },
}


class SolveTracker:
    """Episode returns from Monitor infos; solved when the last ``window`` average at
    least ``target``. Pure: no SB3 import, so tests can drive it."""

    def __init__(self, target: float = TARGET_RETURN, window: int = WINDOW) -> None:
        self.target = target
        self.returns: deque[float] = deque(maxlen=window)
        self.episodes = 0

    def update(self, infos: Iterable[Mapping[str, Any]]) -> bool:
        for info in infos:
            episode = info.get("episode")
            if episode is not None:
                self.returns.append(float(episode["r"]))
                self.episodes += 1
        return self.solved

    @property
    def solved(self) -> bool:
        full = len(self.returns) == self.returns.maxlen
        return full and sum(self.returns) / len(self.returns) >= self.target

    @property
    def mean_return(self) -> float | None:
        return sum(self.returns) / len(self.returns) if self.returns else None


def _sb3_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("stable_baselines3") is None


def run(algo: str, seed: int, max_seconds: float) -> dict[str, Any]:
    """Train until solved, out of time, or out of the zoo's budget; the JSON result."""
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    zoo = ZOO[algo]
    tracker = SolveTracker()
    clock: dict[str, float] = {}

    class StopWhenSolved(BaseCallback):
        def _on_step(self) -> bool:
            solved = tracker.update(self.locals["infos"])
            elapsed = time.perf_counter() - clock["t0"]
            if solved or elapsed >= max_seconds:
                clock["wall_s"], clock["env_steps"] = elapsed, self.num_timesteps
                return False
            return True

    envs = make_vec_env(ENV_ID, n_envs=zoo["n_envs"], seed=seed)
    model_cls = {"a2c": sb3.A2C, "ppo": sb3.PPO}[algo]
    model = model_cls(zoo["policy"], envs, seed=seed, device="cpu", verbose=0, **zoo["kwargs"])
    clock["t0"] = time.perf_counter()
    model.learn(total_timesteps=zoo["n_timesteps"], callback=StopWhenSolved())
    if "wall_s" not in clock:  # the zoo's budget ran out first
        clock["wall_s"], clock["env_steps"] = time.perf_counter() - clock["t0"], model.num_timesteps
    envs.close()
    mean = tracker.mean_return
    return {
        "system": f"sb3-{algo}",
        "seed": seed,
        "solved": tracker.solved,
        "wall_s": round(clock["wall_s"], 3),
        "env_steps": int(clock["env_steps"]),
        "episodes": tracker.episodes,
        "mean_return_100": None if mean is None else round(mean, 2),
        "sb3_version": sb3.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/sb3_peer.py",
        description="Time Stable-Baselines3 (rl-zoo settings) to solve CartPole-v1; "
        "prints one JSON line.",
    )
    parser.add_argument("--algo", choices=sorted(ZOO), required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="give up after this")
    args = parser.parse_args(argv)
    if _sb3_missing():
        print(f"sb3_peer: {INSTALL_HINT}", file=sys.stderr)
        return 2
    print(json.dumps(run(args.algo, args.seed, args.max_seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
