"""IMPALA's V-trace (Espeholt et al. 2018, eq. 1 and the policy gradient of section 4.2)
and its settings: the loss of ``--algo impala``.

Rollouts collected by an older policy mu are corrected twice: the value targets and the
policy-gradient advantages. With rho_t = min(rho_bar, pi/mu) and c_t = min(c_bar, pi/mu)
(pi: the network now, mu: the behaviour policy whose log-probs the actors send):

    delta_t = rho_t * (r_t + gamma * V(x_{t+1}) - V(x_t))
    v_s     = V(x_s) + sum_{t >= s} gamma^(t-s) * (c_s ... c_{t-1}) * delta_t
            = V(x_s) + delta_s + gamma * c_s * (v_{s+1} - V(x_{s+1}))       (recursion)
    A_s     = rho_s * (r_s + gamma * v_{s+1} - V(x_s))

    policy_loss = -mean[ A_s * log pi(a_s|x_s) ]      (A_s a constant)
    value_loss  = mean[ 0.5 * (v_s - V(x_s))^2 ]     (v_s a constant)
    total       = policy_loss + value_coef * value_loss - entropy_coef * entropy

Episode ends as the A2C loss has them: termination cuts the bootstrap (V after it is 0)
and the recursion; truncation bootstraps from V(obs[t+1]), the final real observation
under gymnasium's next-step autoreset, and cuts the recursion; the autoreset steps
(valid = False) carry nothing. At the rollout's end v_T = V(x_T). With pi = mu and
rho_bar, c_bar >= 1, v_s is the n-step return bootstrapped at the episode's or the
rollout's end (tests/test_vtrace.py checks that and a loop written from eq. 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.algos.base import REWARD_CLIP_HELP, LossTerms, check_loss_settings
from core.algos.returns import clipped
from core.batch import Batch
from core.cli import arg


@dataclass(frozen=True)
class VTraceConfig:
    gamma: float = arg(0.99, "discount")
    value_coef: float = arg(0.5, "weight of the value loss")
    entropy_coef: float = arg(0.01, "weight of the entropy bonus")
    vtrace_rho_bar: float = arg(1.0, "V-trace: truncation of the importance weights rho")
    vtrace_c_bar: float = arg(1.0, "V-trace: truncation of the trace coefficients c")
    reward_clip: float = arg(0.0, REWARD_CLIP_HELP)

    def __post_init__(self) -> None:
        check_loss_settings(self, "value_coef", "entropy_coef", "reward_clip")
        if not self.vtrace_rho_bar > 0 or not self.vtrace_c_bar > 0:
            raise ValueError("--vtrace-rho-bar and --vtrace-c-bar must be > 0")


@torch.no_grad()
def vtrace_targets(
    values: torch.Tensor,  # [T+1, N], V of the network now
    log_ratio: torch.Tensor,  # [T, N], log pi - log mu
    rewards: torch.Tensor,  # [T, N]
    terminated: torch.Tensor,  # [T, N] bool
    truncated: torch.Tensor,  # [T, N] bool
    valid: torch.Tensor,  # [T, N] bool
    gamma: float,
    rho_bar: float,
    c_bar: float,
    weighted: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(v_s [T, N], policy-gradient advantages [T, N]); zero where ``valid`` is False.
    ``weighted``: the advantages carry IMPALA's truncated importance weight rho; without
    it they are r + gamma * v_{s+1} - V(x_s) alone (for a loss that weights them itself,
    as PPO's ratio does)."""
    ratio = torch.exp(log_ratio)
    rho = ratio.clamp(max=rho_bar)
    c = ratio.clamp(max=c_bar)
    done = terminated | truncated
    mask = valid.to(values.dtype)
    # V(x_{t+1}) as seen from t: 0 after a termination (also right for truncation:
    # obs[t+1] is the episode's final real observation).
    next_value = torch.where(terminated, torch.zeros_like(values[1:]), values[1:])
    delta = rho * (rewards + gamma * next_value - values[:-1]) * mask
    carry = gamma * c * (~done).to(values.dtype)  # the recursion stops at an episode end
    diff = torch.zeros_like(values)  # v_s - V(x_s); diff[T] = 0: v_T = V(x_T)
    for t in range(rewards.shape[0] - 1, -1, -1):
        diff[t] = (delta[t] + carry[t] * diff[t + 1]) * mask[t]
    vs = values + diff  # [T+1, N]
    # v_{s+1} for the advantage: 0 after a termination, V(x_{s+1}) after a truncation.
    vs_next = torch.where(terminated, torch.zeros_like(values[1:]), vs[1:])
    vs_next = torch.where(truncated, values[1:], vs_next)
    adv = (rewards + gamma * vs_next - values[:-1]) * mask
    return vs[:-1] * mask, rho * adv if weighted else adv


def impala_loss(model, batch: Batch, cfg: VTraceConfig) -> LossTerms:
    out, values = model.unroll(batch)  # [T+1, N, out], [T+1, N]
    dist = model.distribution(out[:-1])
    logp = dist.log_prob(model.head.flat_actions(batch.actions))  # [T, N]
    vs, adv = vtrace_targets(
        values.detach(),
        logp.detach() - batch.behaviour_logp,
        clipped(batch.rewards, cfg.reward_clip),
        batch.terminated,
        batch.truncated,
        batch.valid,
        cfg.gamma,
        cfg.vtrace_rho_bar,
        cfg.vtrace_c_bar,
    )
    mask = batch.valid.to(values.dtype)
    count = mask.sum().clamp(min=1.0)
    policy_loss = -(logp * adv * mask).sum() / count
    value_loss = 0.5 * ((vs - values[:-1]).pow(2) * mask).sum() / count
    entropy = (dist.entropy() * mask).sum() / count
    total = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    return LossTerms(total, policy_loss, value_loss, entropy, int(batch.valid.sum()))
