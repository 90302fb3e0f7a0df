"""Advantages and returns on a time-major rollout (layout: protocol/rollout.py).

Generalised advantage estimates (Schulman et al. 2016): with ``gae_lambda = 1`` they are
exactly the n-step return bootstrapped from the value of the last observation minus
the value, the A3C estimator (Mnih et al. 2016, Algorithm S3). Termination cuts the
bootstrap; truncation bootstraps from V(obs[t+1]), the final real observation under
gymnasium's next-step autoreset; the autoreset steps themselves (valid = False) carry
nothing. Shared by every loss that needs them; no torch.optim here.
"""

from __future__ import annotations

import torch


def clipped(rewards: torch.Tensor, clip: float) -> torch.Tensor:
    """Rewards clipped to [-clip, clip] (``clip`` 0: unchanged)."""
    return rewards.clamp(-clip, clip) if clip > 0 else rewards


@torch.no_grad()
def advantages_and_returns(
    rewards: torch.Tensor,  # [T, N]
    values: torch.Tensor,  # [T+1, N]
    terminated: torch.Tensor,  # [T, N] bool
    truncated: torch.Tensor,  # [T, N] bool
    valid: torch.Tensor,  # [T, N] bool
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages [T, N], returns [T, N]); both zero where ``valid`` is False."""
    t_len = rewards.shape[0]
    done = terminated | truncated
    # Value of the next state as seen from step t: 0 after termination, V(obs[t+1])
    # otherwise (for truncation that is the final real observation).
    next_value = torch.where(terminated, torch.zeros_like(values[1:]), values[1:])  # [T, N]
    deltas = rewards + gamma * next_value - values[:-1]  # [T, N]
    # The GAE recursion continues only inside an episode.
    carry = gamma * gae_lambda * (~done).to(values.dtype)  # [T, N]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    mask = valid.to(values.dtype)  # [T, N]
    for t in range(t_len - 1, -1, -1):
        # Masked inside the recursion: a step that is not a transition passes nothing
        # back, even to a valid step before it that did not end (the content checks
        # refuse that pattern; the estimate must not depend on them).
        last = (deltas[t] + carry[t] * last) * mask[t]
        adv[t] = last
    returns = (adv + values[:-1]) * valid
    return adv, returns
