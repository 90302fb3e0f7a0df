"""What an algorithm is: a loss with its own config, a coordination mode, and, where it
takes more than one optimizer step per batch, its own update.

    algo = core.algos.get("a3c")
    cfg = algo.config(entropy_coef=0.01)           # frozen, checks itself
    batch = Batch.from_rollouts(rollouts, device)  # core/batch.py
    terms = algo.loss(model, batch, cfg)           # LossTerms; terms.total.backward()
    summary = algo.train(model, batch, cfg, step, rng)   # what the learner's trainer calls

``step(terms)`` is the trainer's (learner/trainer.py): backpropagate ``terms.total``,
clip the global gradient norm, take one optimizer step, keep the parameters in their
bounds; a non-finite loss or gradient takes no step. An algorithm's ``update`` decides
which steps to take on a batch (PPO: targets once, then epochs of minibatches; one with
phases or state across batches does the same in its module); without one, ``train`` is
one step on the whole batch. Either way the batch is one version, one weights broadcast.

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


# loss(model, batch, cfg) -> LossTerms (an algorithm with its own update may take more)
LossFn = Callable[..., LossTerms]
# step(terms) -> the gradient norm before clipping, or None: no step taken (non-finite)
StepFn = Callable[[LossTerms], "torch.Tensor | None"]


@dataclass(frozen=True)
class UpdateSummary:
    """The steps one update took on a batch: mean loss terms and gradient norm over
    them; ``extras``: the loss's own statistics, and what the update adds."""

    steps: int
    grad_norm: float
    policy_loss: float
    value_loss: float
    entropy: float
    extras: dict[str, float]


class StepLog:
    """Sums of the terms of the steps taken, kept on the device (no sync per step)."""

    def __init__(self) -> None:
        self.steps = 0
        self.norms: list[torch.Tensor] = []
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, terms: LossTerms, norm: torch.Tensor | None) -> None:
        if norm is None:  # not taken
            return
        self.steps += 1
        self.norms.append(norm)
        values = {
            "policy_loss": terms.policy_loss,
            "value_loss": terms.value_loss,
            "entropy": terms.entropy,
            **terms.extras,
        }
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.detach()

    def summary(self, **more: float) -> UpdateSummary | None:
        """None when no step was taken (the update is skipped); ``more``: extras of
        the update's own (e.g. the number of steps)."""
        if self.steps == 0:
            return None
        mean = {k: float(v) / self.steps for k, v in self.sums.items()}
        core = {k: mean.pop(k) for k in ("policy_loss", "value_loss", "entropy")}
        return UpdateSummary(
            self.steps, float(torch.stack(self.norms).mean()), **core, extras={**mean, **more}
        )


# update(model, batch, cfg, step, rng) -> UpdateSummary | None; rng: a torch.Generator
# seeded from the run's seed and the version, for any order the update draws.
UpdateFn = Callable[[Any, Any, Any, StepFn, torch.Generator], "UpdateSummary | None"]


@dataclass(frozen=True)
class Algorithm:
    name: str
    coordination: str  # a mode's name in core/coordination
    config: type  # frozen dataclass of the loss settings; fields made with core.cli.arg
    loss: LossFn
    lr: float  # default learning rate
    max_policy_lag: int  # default staleness bound (async and gradients)
    summary: str  # one line for --help and the README
    # The algorithm's own update, where it takes more than one step per batch (PPO's
    # epochs of minibatches). None: one step on ``loss(model, batch, cfg)``.
    update: UpdateFn | None = None
    optimizer: str = "adam"  # default optimizer (trainer.make_optimizer's names)
    # Loss settings this algorithm starts from where they differ from its config's
    # defaults (a config shared by several algorithms); presets and flags override them.
    loss_defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        mode = self.mode  # a ValueError unless the mode is registered
        if self.update is not None and mode.sends_gradients:
            raise ValueError("gradient coordination sends one gradient per rollout: no epochs")
        if not dataclasses.is_dataclass(self.config):
            raise ValueError("config must be a dataclass")
        self.make_config(self.loss_defaults)  # a ValueError naming a wrong setting

    @property
    def mode(self) -> coordination.Coordination:
        """How actors and the learner take turns in this algorithm."""
        return coordination.get(self.coordination)

    def train(
        self, model, batch, cfg: Any, step: StepFn, rng: torch.Generator
    ) -> UpdateSummary | None:
        """One update on ``batch``: the algorithm's own, or one step on its loss. None
        when no step was taken."""
        if self.update is not None:
            return self.update(model, batch, cfg, step, rng)
        log = StepLog()
        terms = self.loss(model, batch, cfg)
        log.add(terms, step(terms))
        return log.summary()

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
