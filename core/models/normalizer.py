"""Observation normalisation that is the same on every actor and on the learner.

    obs -> clip((obs - mean) / sqrt(var + EPS), -CLIP, CLIP)

The running mean and variance are buffers of the network: the learner updates them
from the observations of each batch it trains on (after the update's step, so the
version that carries them is the one that was trained with them), and they travel with
the weights (``wire_tensors`` in actor_critic.py) under the weights' version and are
saved in checkpoints with the model. So an actor, the learner, a late or restarted
actor and ``python -m evaluate`` all normalise with the statistics of the policy
version they hold, and never with their own. The count stays on the learner (and in
checkpoints): actors only need the mean and variance.

Merging batch moments into the running ones is Chan et al.'s parallel algorithm
(``merge_moments``), exact against the moments of the concatenated data.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-8
CLIP = 10.0


def merge_moments(
    mean: torch.Tensor,
    var: torch.Tensor,
    count: torch.Tensor,
    batch_mean: torch.Tensor,
    batch_var: torch.Tensor,
    batch_count: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mean and (population) variance of two sets from theirs (float64)."""
    total = count + batch_count
    delta = batch_mean - mean
    new_mean = mean + delta * (batch_count / total)
    m2 = var * count + batch_var * batch_count + delta.square() * (count * batch_count / total)
    return new_mean, m2 / total, total


class ObsNormalizer(nn.Module):
    # Buffers that cross the wire with the weights (the count does not).
    SHIPPED = ("mean", "var")

    def __init__(self, obs_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_shape, dtype=torch.float32))
        self.register_buffer("var", torch.ones(obs_shape, dtype=torch.float32))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [..., *obs_shape] -> the same shape, normalised and clipped."""
        return ((obs - self.mean) / torch.sqrt(self.var + EPS)).clamp(-CLIP, CLIP)

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Merge the moments of ``obs`` [B, *obs_shape] (B >= 1) into the running ones."""
        if obs.shape[0] == 0:
            return
        x = obs.to(torch.float64)
        mean, var, count = merge_moments(
            self.mean.to(torch.float64),
            self.var.to(torch.float64),
            self.count,
            x.mean(dim=0),
            x.var(dim=0, unbiased=False),
            x.shape[0],
        )
        mean32, var32 = mean.to(torch.float32), var.to(torch.float32)
        if not (torch.isfinite(mean32).all() and torch.isfinite(var32).all()):
            # Observations too large for float32 moments (the checks refuse them on the
            # wire; this guards every other way in): the statistics stay as they were,
            # since a non-finite one would poison every later update and the weights.
            return
        self.mean.copy_(mean32)
        self.var.copy_(var32)
        self.count.copy_(count)
