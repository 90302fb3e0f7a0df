"""The actor-critic network, with its config beside it.

Separate policy and value MLPs (no shared trunk): on small control tasks a shared
trunk lets the value loss disturb the policy features. The policy head is Categorical
for Discrete action spaces and a diagonal Gaussian with a state-independent log-std for
Box spaces.

Weights cross the wire as a flat ``{parameter name: float32 array}`` map; see
``weights_to_arrays`` and ``load_arrays``. Never pickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from protocol.spec import RunSpec


@dataclass(frozen=True)
class ModelConfig:
    obs_shape: tuple[int, ...]
    action_kind: str  # "discrete" | "box"
    action_n: int  # Discrete: number of actions
    action_dim: int  # Box: flattened action size
    hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self) -> None:
        if self.action_kind not in ("discrete", "box"):
            raise ValueError(f"action_kind must be discrete or box, got {self.action_kind!r}")
        if not self.obs_shape or self.obs_dim < 1 or not self.hidden:
            raise ValueError("obs_shape must be non-empty and hidden non-empty")

    @property
    def obs_dim(self) -> int:
        return math.prod(self.obs_shape)

    @property
    def out_dim(self) -> int:
        return self.action_n if self.action_kind == "discrete" else self.action_dim

    @classmethod
    def from_spec(cls, spec: RunSpec) -> ModelConfig:
        return cls(
            obs_shape=tuple(spec.obs_shape),
            action_kind=spec.action_kind,
            action_n=spec.action_n,
            action_dim=math.prod(spec.action_shape) if spec.action_shape else 0,
            hidden=tuple(spec.hidden),
        )


def _mlp(sizes: list[int], out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        lin = nn.Linear(a, b)
        last = i == len(sizes) - 2
        # Orthogonal init (as in the A2C/PPO baselines); a small last-layer gain keeps the
        # first policy close to uniform.
        nn.init.orthogonal_(lin.weight, gain=out_gain if last else math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.policy = _mlp([cfg.obs_dim, *cfg.hidden, cfg.out_dim], out_gain=0.01)
        self.value = _mlp([cfg.obs_dim, *cfg.hidden, 1], out_gain=1.0)
        if cfg.action_kind == "box":
            self.log_std = nn.Parameter(torch.zeros(cfg.action_dim))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [..., *obs_shape] -> (policy output [..., out_dim], value [...])."""
        batch = obs.shape[: obs.dim() - len(self.cfg.obs_shape)]
        x = obs.reshape(*batch, self.cfg.obs_dim)  # [..., obs_dim]
        return self.policy(x), self.value(x).squeeze(-1)

    def distribution(self, out: torch.Tensor) -> torch.distributions.Distribution:
        if self.cfg.action_kind == "discrete":
            return torch.distributions.Categorical(logits=out)
        std = self.log_std.exp().expand_as(out)
        return torch.distributions.Independent(torch.distributions.Normal(out, std), 1)


def param_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def weights_to_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Parameters as contiguous float32 CPU arrays, keyed by parameter name."""
    return {
        name: p.detach().to("cpu", torch.float32).contiguous().numpy()
        for name, p in model.named_parameters()
    }


@torch.no_grad()
def load_arrays(model: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy checked arrays (see protocol.checks.check_weights) into the parameters."""
    for name, p in model.named_parameters():
        p.copy_(torch.as_tensor(np.asarray(arrays[name])))
