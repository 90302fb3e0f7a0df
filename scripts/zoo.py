"""rl-baselines3-zoo's hyperparameters for the peers of ``bench_solve.py``, and their
translation into what Stable-Baselines3 builds, as the zoo's ExperimentManager does it.
Values copied from DLR-RM/rl-baselines3-zoo (``ZOO_COMMIT``), never its code; the
``policy_kwargs`` strings are parsed with ``ast`` and a whitelist, never evaluated. Pure:
no SB3 import (scripts/sb3_peer.py builds and runs the peers).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
