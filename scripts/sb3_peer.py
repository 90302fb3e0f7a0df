"""Stable-Baselines3 with rl-baselines3-zoo's settings: the peer that ``bench_solve.py``
times our trainer against, on each env in ``TARGETS``.

    python -m scripts.sb3_peer --env LunarLander-v3 --algo a2c|ppo --seed S --max-seconds 600
    -> {"system": "sb3-ppo", "env": ..., "seed": S, "solved": true, "wall_s": ..., ...}

The clock starts just before ``model.learn()`` (imports, env and model construction
are not timed) and stops when the mean return of the last 100 finished episodes
reaches the target (``TARGETS``, or ``--target``), the same rule and window our learner
uses; ``env_steps`` is SB3's ``num_timesteps`` at that moment. Returns are the raw
ones recorded by the Monitor wrapper on each env, inside any VecNormalize. Training
also stops at ``--max-seconds`` or at the zoo's ``n_timesteps`` (the linear schedules
are defined over that budget), unsolved; ``stopped`` says which.

Hyperparameters are rl-baselines3-zoo's ``hyperparams/a2c.yml`` and ``ppo.yml`` entries
(values copied into ``ZOO`` in scripts/zoo.py as the zoo writes them; everything not listed is
SB3's default, as in the zoo) and are translated as the zoo's ExperimentManager does:
``lin_<x>`` -> a linear schedule, ``normalize`` -> VecNormalize with the entry's gamma,
``policy_kwargs`` -> a dict (parsed, never evaluated). Like the zoo: ``make_vec_env``
(Monitor per env, DummyVecEnv), ``n_envs`` 1 unless given. Unlike the zoo: one torch
thread and ``device="cpu"``, so that the peer runs under the same rules as our processes.

Stable-Baselines3 is an optional extra (``pip install -e '.[bench]'``); nothing in
the trainer imports this file, and nothing here imports SB3 until a run starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from scripts.zoo import settings

WINDOW = 100  # episodes in the solved criterion, as learner/stats.py

# The return that counts as solved, per supported env (the envs of ZOO): gymnasium's
# reward_threshold unless said otherwise.
TARGETS: dict[str, float] = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "LunarLander-v3": 200.0,
    "Pendulum-v1": -200.0,  # gymnasium gives none; -200 is the usual one (configs/pendulum.toml)
    # gymnasium says 4800; 3000 is the target (the zoo's SB3 A2C reaches 3041
    # after 1M steps, so every system can reach it).
    "HalfCheetah-v5": 3000.0,
}

INSTALL_HINT = (
    "stable-baselines3 is not installed; it is an optional extra for benchmarks: "
    "pip install -e '.[bench]'"
)


class SolveTracker:
    """Episode returns from Monitor infos; solved when the last ``window`` average at
    least ``target``. Pure: no SB3 import, so tests can drive it."""

    def __init__(self, target: float, window: int = WINDOW) -> None:
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


def build(env_id: str, algo: str, seed: int) -> Any:
    """The SB3 model on its vectorised envs (Monitor on each env, then VecNormalize
    when the entry says so), as the zoo builds it; nothing trained."""
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    s = settings(env_id, algo)
    envs = make_vec_env(env_id, n_envs=s.n_envs, seed=seed)
    if s.normalize is not None:
        envs = VecNormalize(envs, **s.normalize)
    model_cls = {"a2c": sb3.A2C, "ppo": sb3.PPO}[algo]
    return model_cls(s.policy, envs, seed=seed, device="cpu", verbose=0, **s.kwargs)


def run(env_id: str, algo: str, seed: int, max_seconds: float, target: float) -> dict[str, Any]:
    """Train until solved, out of time, or out of the zoo's budget; the JSON result."""
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    tracker = SolveTracker(target)
    clock: dict[str, Any] = {}

    class StopWhenSolved(BaseCallback):
        def _on_step(self) -> bool:
            # The infos pass through VecNormalize untouched: Monitor's raw returns.
            solved = tracker.update(self.locals["infos"])
            elapsed = time.perf_counter() - clock["t0"]
            if solved or elapsed >= max_seconds:
                clock["wall_s"], clock["env_steps"] = elapsed, self.num_timesteps
                clock["stopped"] = "solved" if solved else "max_seconds"
                return False
            return True

    model = build(env_id, algo, seed)
    budget = settings(env_id, algo).n_timesteps
    clock["t0"] = time.perf_counter()
    model.learn(total_timesteps=budget, callback=StopWhenSolved())
    if "wall_s" not in clock:  # the zoo's budget ran out first
        clock["wall_s"], clock["env_steps"] = time.perf_counter() - clock["t0"], model.num_timesteps
        clock["stopped"] = "n_timesteps"
    model.get_env().close()
    mean = tracker.mean_return
    return {
        "system": f"sb3-{algo}",
        "env": env_id,
        "seed": seed,
        "target": target,
        "solved": tracker.solved,
        "wall_s": round(clock["wall_s"], 3),
        "env_steps": int(clock["env_steps"]),
        "stopped": clock["stopped"],
        "n_timesteps": budget,
        "episodes": tracker.episodes,
        "mean_return_100": None if mean is None else round(mean, 2),
        "sb3_version": sb3.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.sb3_peer",
        description="Time Stable-Baselines3 (rl-zoo settings) to solve an env; "
        "prints one JSON line.",
    )
    parser.add_argument("--env", choices=list(TARGETS), default="CartPole-v1")
    parser.add_argument("--algo", choices=("a2c", "ppo"), required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="give up after this")
    parser.add_argument(
        "--target", type=float, default=None, help="solved return; default: TARGETS[env]"
    )
    args = parser.parse_args(argv)
    if _sb3_missing():
        print(f"sb3_peer: {INSTALL_HINT}", file=sys.stderr)
        return 2
    target = TARGETS[args.env] if args.target is None else args.target
    result = run(args.env, args.algo, args.seed, args.max_seconds, target)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
