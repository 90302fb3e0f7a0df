"""Stable-Baselines3 with rl-baselines3-zoo's settings: the peer that ``bench_solve.py``
times our trainer against, on each env in ``TARGETS``.

    python scripts/sb3_peer.py --env LunarLander-v3 --algo a2c|ppo --seed S --max-seconds 600
    -> {"system": "sb3-ppo", "env": ..., "seed": S, "solved": true, "wall_s": ..., ...}

The clock starts just before ``model.learn()`` (imports, env and model construction
are not timed) and stops when the mean return of the last 100 finished episodes
reaches the target (``TARGETS``, or ``--target``), the same rule and window our learner
uses; ``env_steps`` is SB3's ``num_timesteps`` at that moment. Returns are the raw
ones recorded by the Monitor wrapper on each env, inside any VecNormalize. Training
also stops at ``--max-seconds`` or at the zoo's ``n_timesteps`` (the linear schedules
are defined over that budget), unsolved; ``stopped`` says which.

Hyperparameters are rl-baselines3-zoo's ``hyperparams/a2c.yml`` and ``ppo.yml`` entries
(values copied into ``ZOO`` below as the zoo writes them; everything not listed is
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
import ast
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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

# The zoo's entry used for an env whose own version has none.
ZOO_ENTRY = {"HalfCheetah-v5": "HalfCheetah-v4"}
ZOO_COMMIT = "22e3ff2 of 2026-04-23"  # DLR-RM/rl-baselines3-zoo, where these were read

# rl-baselines3-zoo hyperparams/{a2c,ppo}.yml at ZOO_COMMIT: each entry's keys and values
# as the zoo writes them (1e6 for !!float 1e6, "lin_..." schedules, policy_kwargs text).
ZOO: dict[str, dict[str, dict[str, Any]]] = {
    "CartPole-v1": {
        # a2c.yml, CartPole-v1. SB3 defaults: n_steps 5, lr 7e-4, RMSprop, gae_lambda 1.
        "a2c": {"n_envs": 8, "n_timesteps": 5e5, "policy": "MlpPolicy", "ent_coef": 0.0},
        # ppo.yml, CartPole-v1 ("# Tuned").
        "ppo": {
            "n_envs": 8,
            "n_timesteps": 1e5,
            "policy": "MlpPolicy",
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "ent_coef": 0.0,
            "learning_rate": "lin_0.001",
            "clip_range": "lin_0.2",
        },
    },
    "Acrobot-v1": {
        # a2c.yml, Acrobot-v1.
        "a2c": {
            "normalize": True,
            "n_envs": 16,
            "n_timesteps": 5e5,
            "policy": "MlpPolicy",
            "ent_coef": 0.0,
        },
        # ppo.yml, Acrobot-v1.
        "ppo": {
            "normalize": True,
            "n_envs": 16,
            "n_timesteps": 1e6,
            "policy": "MlpPolicy",
            "n_steps": 256,
            "gae_lambda": 0.94,
            "gamma": 0.99,
            "n_epochs": 4,
            "ent_coef": 0.0,
        },
    },
    "LunarLander-v3": {
        # a2c.yml, LunarLander-v3 (the former LunarLander-v2 entry, renamed in zoo PR #495).
        "a2c": {
            "n_envs": 8,
            "n_timesteps": 2e5,
            "policy": "MlpPolicy",
            "gamma": 0.995,
            "n_steps": 5,
            "learning_rate": "lin_0.00083",
            "ent_coef": 0.00001,
        },
        # ppo.yml, LunarLander-v3 (likewise the former LunarLander-v2 entry).
        "ppo": {
            "n_envs": 16,
            "n_timesteps": 1e6,
            "policy": "MlpPolicy",
            "n_steps": 1024,
            "batch_size": 64,
            "gae_lambda": 0.98,
            "gamma": 0.999,
            "n_epochs": 4,
            "ent_coef": 0.01,
        },
    },
    "Pendulum-v1": {
        # a2c.yml, Pendulum-v1 ("# Tuned").
        "a2c": {
            "normalize": True,
            "n_envs": 8,
            "n_timesteps": 1e6,
            "policy": "MlpPolicy",
            "ent_coef": 0.0,
            "max_grad_norm": 0.5,
            "n_steps": 8,
            "gae_lambda": 0.9,
            "vf_coef": 0.4,
            "gamma": 0.9,
            "use_rms_prop": True,
            "normalize_advantage": False,
            "learning_rate": "lin_7e-4",
            "use_sde": True,
            "policy_kwargs": "dict(log_std_init=-2, ortho_init=False)",
        },
        # ppo.yml, Pendulum-v1 ("# Tuned").
        "ppo": {
            "n_envs": 4,
            "n_timesteps": 1e5,
            "policy": "MlpPolicy",
            "n_steps": 1024,
            "gae_lambda": 0.95,
            "gamma": 0.9,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_range": 0.2,
            "use_sde": True,
            "sde_sample_freq": 4,
        },
    },
    "HalfCheetah-v5": {
        # a2c.yml, HalfCheetah-v4 (&mujoco-defaults), used for v5: the zoo has no v5 entry.
        "a2c": {"normalize": True, "n_timesteps": 1e6, "policy": "MlpPolicy"},
        # ppo.yml, HalfCheetah-v4 ("# Tuned", under "10 mujoco envs"), used for v5 likewise.
        "ppo": {
            "normalize": True,
            "n_envs": 1,
            "policy": "MlpPolicy",
            "n_timesteps": 1e6,
            "batch_size": 64,
            "n_steps": 512,
            "gamma": 0.98,
            "learning_rate": 2.0633e-05,
            "ent_coef": 0.000401762,
            "clip_range": 0.1,
            "n_epochs": 20,
            "gae_lambda": 0.92,
            "max_grad_norm": 0.8,
            "vf_coef": 0.58096,
            "policy_kwargs": "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, "
            "net_arch=dict(pi=[256, 256], vf=[256, 256]))",
        },
    },
}

# Keys of an entry that set up the run rather than the model (the rest are model kwargs).
RUN_KEYS = frozenset({"n_envs", "n_timesteps", "policy", "normalize"})
# Hyperparameters the zoo accepts as "lin_<x>" (rl_zoo3 ExperimentManager._preprocess_schedules).
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
# The zoo's ``nn.<X>`` names in policy_kwargs that we translate: torch.nn attribute names.
ACTIVATIONS = {"nn.ReLU": "ReLU", "nn.Tanh": "Tanh", "nn.ELU": "ELU", "nn.GELU": "GELU"}


def linear(initial: float) -> Callable[[float], float]:
    """rl_zoo3.utils.linear_schedule: the zoo's ``lin_<x>`` values."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


def schedule(text: str) -> Callable[[float], float]:
    """A zoo schedule string: ``lin_<x>`` only."""
    kind, _, initial = text.partition("_")
    if kind != "lin":
        raise ValueError(f"schedule {text!r}: only lin_<value> is supported")
    return linear(float(initial))


def parse_policy_kwargs(text: str) -> dict[str, Any]:
    """The zoo's policy_kwargs text, e.g. ``dict(log_std_init=-2, ortho_init=False,
    activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256]))``, as a dict.

    The text is parsed, never evaluated: ``dict(...)`` with keyword arguments, lists,
    numbers (signed), booleans and the activations in ``ACTIVATIONS`` (-> torch.nn
    classes); anything else is a ValueError naming it."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"policy_kwargs {text!r}: not a dict(...) expression: {exc}") from None
    value = _literal(tree.body, text)
    if not isinstance(value, dict):
        raise ValueError(f"policy_kwargs {text!r}: not a dict(...) expression")
    return value


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if not node.args and all(kw.arg is not None for kw in node.keywords):
            return {kw.arg: _literal(kw.value, text) for kw in node.keywords}
    elif isinstance(node, ast.List):
        return [_literal(e, text) for e in node.elts]
    elif isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float)):
        return node.value
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = _literal(node.operand, text)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand
    elif isinstance(node, ast.Attribute) and ast.unparse(node) in ACTIVATIONS:
        from torch import nn

        return getattr(nn, ACTIVATIONS[ast.unparse(node)])
    raise ValueError(
        f"policy_kwargs {text!r}: {ast.unparse(node)!r} is not supported "
        f"(dict(...), lists, numbers, booleans, {', '.join(ACTIVATIONS)})"
    )


@dataclass(frozen=True)
class PeerSettings:
    """A zoo entry translated into what ``run`` builds."""

    n_envs: int
    n_timesteps: int  # the training budget: learn(total_timesteps=...)
    policy: str
    normalize: dict[str, Any] | None  # VecNormalize kwargs; None: no VecNormalize
    kwargs: dict[str, Any]  # the model's constructor kwargs


def settings(env_id: str, algo: str) -> PeerSettings:
    """ZOO[env_id][algo] translated as the zoo's ExperimentManager does."""
    entry = ZOO[env_id][algo]
    kwargs = {k: v for k, v in entry.items() if k not in RUN_KEYS}
    for key in SCHEDULE_KEYS:
        if isinstance(kwargs.get(key), str):
            kwargs[key] = schedule(kwargs[key])
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs["policy_kwargs"])
    normalize = entry.get("normalize", False)
    norm: dict[str, Any] | None = None
    if normalize:
        norm = dict(normalize) if isinstance(normalize, Mapping) else {}
        if "gamma" in entry:  # the zoo normalises rewards with the algorithm's discount
            norm["gamma"] = entry["gamma"]
    return PeerSettings(
        n_envs=int(entry.get("n_envs", 1)),
        n_timesteps=int(entry["n_timesteps"]),
        policy=str(entry["policy"]),
        normalize=norm,
        kwargs=kwargs,
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
        prog="python scripts/sb3_peer.py",
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
