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
    log_ratio: torch.Tensor | None = None,  # [T, N], log pi - log mu
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages [T, N], returns [T, N]); both zero where ``valid`` is False.

    With ``log_ratio`` the traces are cut where the policy now disagrees with the one
    that acted (V-trace with lambda, Espeholt et al. 2018 section 4.1 and Retrace,
    Munos et al. 2016): the returns are the V-trace targets with c_t = lambda *
    min(c_bar, pi/mu) and each delta weighted by rho_t = min(rho_bar, pi/mu); the
    advantage of step t is delta_t + gamma * lambda * (v_{t+1} - V(x_{t+1})), the GAE
    of the corrected tail, unweighted (the loss weights it). With pi = mu both are
    exactly the GAE advantages and returns."""
    if log_ratio is not None:
        return _traced(
            rewards,
            values,
            terminated,
            truncated,
            valid,
            gamma,
            gae_lambda,
            log_ratio,
            rho_bar,
            c_bar,
        )
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


def _traced(
    rewards, values, terminated, truncated, valid, gamma, gae_lambda, log_ratio, rho_bar, c_bar
):
    ratio = torch.exp(log_ratio)
    rho = ratio.clamp(max=rho_bar)
    c = ratio.clamp(max=c_bar)
    done = terminated | truncated
    mask = valid.to(values.dtype)
    next_value = torch.where(terminated, torch.zeros_like(values[1:]), values[1:])
    deltas = (rewards + gamma * next_value - values[:-1]) * mask  # [T, N]
    keep = gamma * gae_lambda * (~done).to(values.dtype)  # the recursion stops at an end
    diff = torch.zeros_like(values)  # v_t - V(x_t); diff[T] = 0: v_T = V(x_T)
    for t in range(rewards.shape[0] - 1, -1, -1):
        diff[t] = (rho[t] * deltas[t] + keep[t] * c[t] * diff[t + 1]) * mask[t]
    adv = (deltas + keep * diff[1:]) * mask
    return adv, (values[:-1] + diff[:-1]) * mask
