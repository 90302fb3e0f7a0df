"""Action heads: how the policy's output becomes a distribution over actions.

Each head owns, for its kind of action space: the output size, the torch distribution
the loss uses (log-prob, entropy), sampling in numpy on the actor (cheaper than
building a torch distribution every step, reproducible from the actor's generator),
and the map from a sampled action to what the env accepts. The numpy and torch
log-probs must agree, or every importance ratio pi/mu is wrong (tests/test_models.py).

Heads: Categorical (Discrete), Gaussian (Box), a product of categoricals
(MultiDiscrete) and of Bernoullis (MultiBinary); ``build_head`` picks by the spec's
action kind.

``temperature`` divides the logits (the discrete heads) or scales the std (Gaussian): the
per-actor exploration setting of asynchronous methods (Mnih et al. 2016, section 4).
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import torch
from torch import nn

from protocol.spec import component_sizes


class CategoricalHead(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.out_dim = n
        self.action_shape: tuple[int, ...] = ()
        self.action_dtype = np.dtype(np.int64)

    def distribution(self, out: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Categorical(logits=out)

    def flat_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions  # [T, N]

    def sample(
        self, out: np.ndarray, rng: np.random.Generator, temperature: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """out [N, n] -> (actions [N] int64, logp [N] float32): Gumbel-max."""
        actions, logp = _gumbel_max(out, rng, temperature)
        return actions.astype(np.int64), logp.astype(np.float32)

    def mode(self, out: np.ndarray) -> np.ndarray:
        """out [N, n] -> the most likely actions [N] int64 (deterministic evaluation)."""
        return np.argmax(out, axis=1).astype(np.int64)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions


class GaussianHead(nn.Module):
    """A diagonal Gaussian with a state-independent log-std, bounded to
    [LOG_STD_MIN, LOG_STD_MAX] so the policy can neither collapse nor explode.

    The env gets the sample clipped into its bounds and reshaped to its action shape;
    the rollout keeps the unclipped sample, whose log-prob is exact. (A tanh squash
    would need a log-det correction and distorts the mean near the bounds; clipping is
    what the A2C/PPO baselines do.)"""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, shape: tuple[int, ...], low: tuple[float, ...], high: tuple[float, ...]):
        super().__init__()
        self.action_shape = tuple(shape)
        self.out_dim = math.prod(shape)
        self.action_dtype = np.dtype(np.float32)
        self.low = np.asarray(low, dtype=np.float32).reshape(shape)
        self.high = np.asarray(high, dtype=np.float32).reshape(shape)
        self.log_std = nn.Parameter(torch.zeros(self.out_dim))

    @torch.no_grad()
    def keep_in_bounds(self) -> None:
        """After each optimizer step: the parameter itself back inside the bounds, so
        that it never wanders past them (where the value is clamped anyway) and takes
        as long to come back; a projected gradient step."""
        self.log_std.clamp_(self.LOG_STD_MIN, self.LOG_STD_MAX)

    def _log_std(self) -> torch.Tensor:
        # The value is clamped, the gradient passes through (straight-through): a plain
        # clamp has zero gradient outside the bounds and would pin the std there. The
        # parameter is kept inside by keep_in_bounds; this guards what is loaded.
        clamped = self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        return self.log_std + (clamped - self.log_std).detach()

    def distribution(self, out: torch.Tensor) -> torch.distributions.Distribution:
        std = self._log_std().exp().expand_as(out)
        return torch.distributions.Independent(torch.distributions.Normal(out, std), 1)

    def flat_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions.reshape(*actions.shape[:2], self.out_dim)  # [T, N, act_dim]

    def sample(
        self, out: np.ndarray, rng: np.random.Generator, temperature: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """out [N, act_dim] -> (actions [N, *action_shape] float32, logp [N] float32)."""
        log_std = self._log_std().detach().numpy().astype(np.float64) + math.log(temperature)
        noise = rng.standard_normal(out.shape)
        actions = out.astype(np.float64) + np.exp(log_std) * noise  # [N, act_dim]
        logp = (-0.5 * noise**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(axis=1)
        return (
            actions.astype(np.float32).reshape(len(out), *self.action_shape),
            logp.astype(np.float32),
        )

    def mode(self, out: np.ndarray) -> np.ndarray:
        """out [N, act_dim] -> the means [N, *action_shape] (deterministic evaluation)."""
        return out.astype(np.float32).reshape(len(out), *self.action_shape)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(actions, self.low, self.high)


class MultiCategoricalHead(nn.Module):
    """MultiDiscrete: one categorical per component, each over its own number of
    choices; the components are independent given the observation, so log-probs and
    entropies add. Actions are indices from 0; ``to_env`` adds the space's start."""

    def __init__(
        self, shape: tuple[int, ...], low: tuple[float, ...], high: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.action_shape = tuple(shape)
        self.start = np.asarray(low, dtype=np.int64).reshape(shape)
        self.nvec = list(component_sizes(low, high))
        self.out_dim = sum(self.nvec)
        self.action_dtype = np.dtype(np.int64)
        self._bounds = np.cumsum([0, *self.nvec])  # each component's slice of the output

    def distribution(self, out: torch.Tensor) -> torch.distributions.Distribution:
        return _Product(
            [torch.distributions.Categorical(logits=part) for part in out.split(self.nvec, -1)]
        )

    def flat_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return actions.reshape(*actions.shape[:2], len(self.nvec))  # [T, N, k]

    def sample(
        self, out: np.ndarray, rng: np.random.Generator, temperature: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """out [N, sum(nvec)] -> (actions [N, *action_shape] int64, logp [N] float32)."""
        n = len(out)
        actions = np.empty((n, len(self.nvec)), dtype=np.int64)
        logp = np.zeros(n, dtype=np.float64)
        for i, (lo, hi) in enumerate(pairwise(self._bounds)):
            a, lp = _gumbel_max(out[:, lo:hi], rng, temperature)
            actions[:, i] = a
            logp += lp
        return actions.reshape(n, *self.action_shape), logp.astype(np.float32)

    def mode(self, out: np.ndarray) -> np.ndarray:
        """out [N, sum(nvec)] -> each component's most likely choice."""
        best = [np.argmax(out[:, lo:hi], axis=1) for lo, hi in pairwise(self._bounds)]
        return np.stack(best, axis=1).astype(np.int64).reshape(len(out), *self.action_shape)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions + self.start


class BernoulliHead(nn.Module):
    """MultiBinary: one independent bit per component, a logit each (temperature
    divides the logits, as the categorical head's)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.action_shape = tuple(shape)
        self.out_dim = math.prod(shape)
        self.action_dtype = np.dtype(np.int64)

    def distribution(self, out: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Independent(torch.distributions.Bernoulli(logits=out), 1)

    def flat_actions(self, actions: torch.Tensor) -> torch.Tensor:
        # Bernoulli's log_prob takes the bits as floats.
        return actions.reshape(*actions.shape[:2], self.out_dim).to(torch.float32)

    def sample(
        self, out: np.ndarray, rng: np.random.Generator, temperature: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """out [N, k] -> (actions [N, *action_shape] int64 in {0, 1}, logp [N] float32)."""
        logits = out.astype(np.float64) / temperature
        log_p1 = -np.logaddexp(0.0, -logits)  # log sigmoid(l), stable both ways
        log_p0 = -np.logaddexp(0.0, logits)  # log (1 - sigmoid(l))
        bits = np.log(rng.random(logits.shape)) < log_p1  # P(bit) = sigmoid(l)
        logp = np.where(bits, log_p1, log_p0).sum(axis=1)
        return (
            bits.astype(np.int64).reshape(len(out), *self.action_shape),
            logp.astype(np.float32),
        )

    def mode(self, out: np.ndarray) -> np.ndarray:
        return (out > 0).astype(np.int64).reshape(len(out), *self.action_shape)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions.astype(np.int8)  # gymnasium's MultiBinary dtype


class _Product:
    """Independent distributions over the last axis of the actions: what the losses ask
    of a distribution (log_prob, entropy), summed over the parts."""

    def __init__(self, parts: list[torch.distributions.Distribution]) -> None:
        self.parts = parts

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return sum(p.log_prob(actions[..., i]) for i, p in enumerate(self.parts))

    def entropy(self) -> torch.Tensor:
        return sum(p.entropy() for p in self.parts)


def _gumbel_max(
    out: np.ndarray, rng: np.random.Generator, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, n] -> (a sample of each row's categorical [N], its log-prob [N])."""
    logits = out.astype(np.float64) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    gumbel = -np.log(-np.log(rng.random(logits.shape)))
    actions = np.argmax(log_probs + gumbel, axis=1)
    return actions, np.take_along_axis(log_probs, actions[:, None], axis=1)[:, 0]


def build_head(spec) -> nn.Module:
    """The head for a RunSpec's (or a ModelConfig's) action space."""
    if spec.action_kind == "discrete":
        return CategoricalHead(spec.action_n)
    if spec.action_kind == "multi_discrete":
        return MultiCategoricalHead(spec.action_shape, spec.action_low, spec.action_high)
    if spec.action_kind == "multi_binary":
        return BernoulliHead(spec.action_shape)
    return GaussianHead(spec.action_shape, spec.action_low, spec.action_high)
