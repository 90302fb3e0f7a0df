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


def orthogonal(layer: nn.Module, gain: float) -> nn.Module:
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


def image_layout(obs_shape: tuple[int, ...]) -> tuple[str, int, int, int] | None:
    """(layout, channels, height, width) of an image observation shape, None for any
    other: "chw" [C, H, W] (stacked grey frames, ALE's preprocessing), "hwc" [H, W, C]
    with C of 1, 3 or 4 (gymnasium's own layout: CarRacing, rendered pixels), "shwc"
    [S, H, W, 3] (stacked RGB frames, colours folded into channels)."""
    if len(obs_shape) == 4:
        s, h, w, c = obs_shape
        return "shwc", s * c, h, w
    if len(obs_shape) == 3:
        if obs_shape[2] <= 4 < obs_shape[0]:
            h, w, c = obs_shape
            return "hwc", c, h, w
        c, h, w = obs_shape
        return "chw", c, h, w
    return None


class NatureCNN(nn.Module):
    """The DQN network of Mnih et al. 2015 (also A3C's and IMPALA's shallow model):
    conv 32x8x8/4, 64x4x4/2, 64x3x3/1, each with ReLU, then a 512-unit ReLU layer.
    Input [..., C, H, W], [..., H, W, C] or [..., S, H, W, 3] (``image_layout``); uint8
    is scaled to [0, 1] here, on the training device. ``hidden`` (the MLP's layer sizes)
    does not apply. Inputs must be at least 36x36."""

    SHARED = True
    FEATURES = 512

    def __init__(
        self, obs_shape: tuple[int, ...], hidden: tuple[int, ...], obs_dtype: str = "<f4"
    ) -> None:
        super().__init__()
        found = image_layout(tuple(obs_shape))
        if found is None:
            raise ValueError(
                f"the CNN needs [C, H, W], [H, W, C] or [S, H, W, 3] observations, got {obs_shape}"
            )
        self.layout, in_ch, h, w = found
        if min(h, w) < 36:
            raise ValueError(f"the CNN needs images of at least 36x36, got {h}x{w}")
        self.obs_shape = tuple(obs_shape)
        self.scale = 1.0 / 255.0 if obs_dtype == "|u1" else 1.0
        gain = math.sqrt(2)
        self.convs = nn.Sequential(
            orthogonal(nn.Conv2d(in_ch, 32, 8, stride=4), gain),
            nn.ReLU(),
            orthogonal(nn.Conv2d(32, 64, 4, stride=2), gain),
            nn.ReLU(),
            orthogonal(nn.Conv2d(64, 64, 3, stride=1), gain),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, in_ch, h, w)).shape[1]
        self.dense = nn.Sequential(orthogonal(nn.Linear(flat, self.FEATURES), gain), nn.ReLU())
        self.in_ch, self.h, self.w = in_ch, h, w
        self.out_dim = self.FEATURES

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch = obs.shape[: obs.dim() - len(self.obs_shape)]
        x = obs.reshape(-1, *self.obs_shape)
        if self.layout == "shwc":  # [B, S, H, W, 3] -> [B, S*3, H, W]
            x = x.permute(0, 1, 4, 2, 3).reshape(-1, self.in_ch, self.h, self.w)
        elif self.layout == "hwc":  # [B, H, W, C] -> [B, C, H, W]
            x = x.permute(0, 3, 1, 2)
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        return self.dense(self.convs(x)).reshape(*batch, self.out_dim)


class DictEncoder(nn.Module):
    """A Dict observation: each key by the encoder its own space calls for
    (``default_encoder``: the CNN for images, the MLP with ``hidden`` for the rest), the
    features concatenated in the keys' order. Shared by policy and value when any key's
    encoder is (a CNN is too costly to run twice)."""

    def __init__(
        self, parts: tuple[tuple[str, tuple[int, ...], str], ...], hidden: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(
            {
                key: build_encoder(default_encoder(shape, dtype), shape, hidden, dtype)
                for key, shape, dtype in parts
            }
        )
        self.SHARED = any(getattr(e, "SHARED", False) for e in self.parts.values())
        self.out_dim = sum(e.out_dim for e in self.parts.values())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs {key: [..., *shape]} -> features [..., sum of the keys' out_dim]."""
        return torch.cat([enc(obs[key]) for key, enc in self.parts.items()], dim=-1)


ENCODERS: dict[str, type[nn.Module]] = {"mlp": MLPEncoder, "cnn": NatureCNN}


def default_encoder(obs_shape: tuple[int, ...], obs_dtype: str) -> str:
    """The encoder for an observation space: the CNN for images (uint8 observations of 3
    or 4 dimensions in a layout ``image_layout`` reads, at least 36x36), the MLP for
    everything else."""
    found = image_layout(tuple(obs_shape)) if obs_dtype == "|u1" else None
    return "cnn" if found is not None and min(found[2], found[3]) >= 36 else "mlp"


def build_encoder(
    name: str, obs_shape: tuple[int, ...], hidden: tuple[int, ...], obs_dtype: str = "<f4"
) -> nn.Module:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name](obs_shape, hidden, obs_dtype)
