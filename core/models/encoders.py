"""Observation encoders: observations [..., *obs_shape] -> features [..., out_dim].

An encoder is chosen by name (RunSpec.encoder); ``default_encoder`` picks one from the
observation space. ``SHARED`` says whether the policy and the value function share one
encoder (a trunk) or each get their own copy: on small control tasks a shared trunk lets
the value loss disturb the policy features, so the MLP is not shared; image encoders are
(too costly to run twice).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal init (as in the A2C/PPO baselines), zero bias."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


class MLPEncoder(nn.Module):
    SHARED = False

    def __init__(
        self, obs_shape: tuple[int, ...], hidden: tuple[int, ...], obs_dtype: str = "<f4"
    ) -> None:
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        # uint8 observations (images) arrive as they travel; scaled to [0, 1] here, on
        # the training device, never on the wire.
        self.scale = 1.0 / 255.0 if obs_dtype == "|u1" else 1.0
        self.obs_dim = math.prod(obs_shape)
        sizes = [self.obs_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [orthogonal(nn.Linear(a, b), math.sqrt(2)), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.out_dim = sizes[-1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch = obs.shape[: obs.dim() - len(self.obs_shape)]
        x = obs.reshape(*batch, self.obs_dim).float()  # [..., obs_dim]
        if self.scale != 1.0:
            x = x * self.scale
        return self.net(x)  # [..., out_dim]


ENCODERS: dict[str, type[nn.Module]] = {"mlp": MLPEncoder}


def default_encoder(obs_shape: tuple[int, ...], obs_dtype: str) -> str:
    """The encoder for an observation space: the MLP for vectors. (Images get the CNN
    once it exists; until then they are flattened into the MLP.)"""
    return "mlp"


def build_encoder(
    name: str, obs_shape: tuple[int, ...], hidden: tuple[int, ...], obs_dtype: str = "<f4"
) -> nn.Module:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name](obs_shape, hidden, obs_dtype)
