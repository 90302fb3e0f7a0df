"""What an algorithm is: a loss with its own config, and a coordination mode.

    algo = core.algos.get("a3c")
    cfg = algo.config(entropy_coef=0.01)           # frozen, checks itself
    batch = Batch.from_rollouts(rollouts, device)  # core/batch.py
    terms = algo.loss(model, batch, cfg)           # LossTerms; terms.total.backward()

The coordination mode (a row of core/coordination: sync, async, gradients) says how
actors and the learner take turns; the learner's loop and the actor's loop call the
mode, never look at the algorithm's name. Adding an algorithm is one module (its config
dataclass and loss function) and one ``register`` call (core/algos/__init__.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from core import coordination


@dataclass(frozen=True)
class LossTerms:
    """A loss and the terms the learner logs; ``total`` carries the gradient."""

    total: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    transitions: int
    # Further statistics the learner logs with its progress (e.g. PPO's clip_frac).
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


# loss(model, batch, cfg) -> LossTerms; with targets: loss(model, minibatch, cfg, targets)
LossFn = Callable[..., LossTerms]
# targets(model, batch, cfg) -> {name: [T, N] tensor}, computed once per batch, no grad
TargetsFn = Callable[[Any, Any, Any], dict]


@dataclass(frozen=True)
class Algorithm:
    name: str
    coordination: str  # a mode's name in core/coordination
    config: type  # frozen dataclass of the loss settings; fields made with core.cli.arg
    loss: LossFn
    lr: float  # default learning rate
    max_policy_lag: int  # default staleness bound (async and gradients)
    summary: str  # one line for --help and the README
    # Several optimizer steps per batch (PPO): targets computed once, then the config's
    # ``epochs`` passes over minibatches of ``minibatch_size`` transitions, each a step
    # on ``loss(model, minibatch, cfg, targets)``. None: one step on the whole batch.
    targets: TargetsFn | None = None

    def __post_init__(self) -> None:
        mode = self.mode  # a ValueError unless the mode is registered
        if self.targets is not None and mode.sends_gradients:
            raise ValueError("gradient coordination sends one gradient per rollout: no epochs")
        if not dataclasses.is_dataclass(self.config):
            raise ValueError("config must be a dataclass")

    @property
    def mode(self) -> coordination.Coordination:
        """How actors and the learner take turns in this algorithm."""
        return coordination.get(self.coordination)

    def make_config(self, values: Mapping[str, Any] | None = None) -> Any:
        """The loss config from a map (flags, or a RunSpec's ``loss``); unknown keys and
        wrong types raise ValueError with the field's name."""
        values = dict(values or {})
        names = {f.name: f for f in dataclasses.fields(self.config)}
        unknown = values.keys() - names.keys()
        if unknown:
            raise ValueError(f"{self.name} has no loss setting {sorted(map(str, unknown))[:4]}")
        for name, value in values.items():
            typ = names[name].type
            if typ in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
                values[name] = float(value)
            elif typ in ("bool", bool) and not isinstance(value, bool):
                raise ValueError(f"loss setting {name} must be a bool")
            elif typ in ("float", float, "int", int) and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise ValueError(f"loss setting {name} must be a number")
        return self.config(**values)


REWARD_CLIP_HELP = (
    "clip rewards to [-c, c] in the loss only (Atari's usual 1); "
    "episode returns stay the game's score; 0: off"
)


def check_loss_settings(cfg: Any, *nonnegative: str) -> None:
    """The checks every return-based loss config shares: gamma and gae_lambda in
    [0, 1], and the named settings >= 0."""
    if not 0.0 <= cfg.gamma <= 1.0 or not 0.0 <= getattr(cfg, "gae_lambda", 1.0) <= 1.0:
        raise ValueError("--gamma and --gae-lambda must be in [0, 1]")
    if min(getattr(cfg, name) for name in nonnegative) < 0:
        flags = ", ".join("--" + name.replace("_", "-") for name in nonnegative)
        raise ValueError(f"{flags} must be >= 0")


def config_dict(cfg: Any) -> dict[str, Any]:
    """A loss config as the map a RunSpec carries."""
    return dataclasses.asdict(cfg)
