"""The A2C loss (Mnih et al. 2016, Algorithm S3) and its settings.

Used by three algorithms that differ only in how actors and learner take turns (see
core/algos/__init__.py): ``a2c`` (sync barrier), ``a3c`` (async queue of rollouts) and
``a3c-grad`` (actors compute this loss and send gradients). The settings travel to
gradient-computing actors in the RunSpec, so every one of them is honoured wherever the
loss is computed.

    policy_loss = -mean_t,n[ rho * A * log pi(a|s) ]      A: GAE advantages (returns.py)
    value_loss  = mean_t,n[ 0.5 * (R - V(s))^2 ]           R = A + V(s)
    total       = policy_loss + value_coef * value_loss - entropy_coef * entropy

rho = min(is_clip, pi/mu) is the truncated importance weight of the behaviour policy mu
(Espeholt et al. 2018, eq. 4's rho-bar): 1 for on-policy data, and it keeps rollouts
collected a few versions ago (A3C's policy lag, or an actor's softmax temperature)
from pushing the policy off a cliff. Means are over valid transitions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.algos.base import REWARD_CLIP_HELP, LossTerms, check_loss_settings
from core.algos.returns import advantages_and_returns, clipped
from core.batch import Batch
from core.cli import arg


@dataclass(frozen=True)
class A2CConfig:
    gamma: float = arg(0.99, "discount")
    gae_lambda: float = arg(
        0.95, "GAE lambda; 1.0 gives exactly the n-step return of A3C (advantage = return - value)"
    )
    value_coef: float = arg(0.5, "weight of the value loss")
    entropy_coef: float = arg(0.0, "weight of the entropy bonus")
    normalize_advantages: bool = arg(False, "normalise advantages per update (zero mean, unit std)")
    is_clip: float = arg(
        1.0,
        "truncate the importance ratio pi/mu of each policy-gradient term at this "
        "(corrects policy lag and temperature); 0: plain A2C/A3C loss",
    )
    trace_clip: float = arg(
        0.0,
        "cut GAE's traces where pi/mu falls below 1: the returns become V-trace targets "
        "with lambda and c = min(trace_clip, pi/mu) (needs --is-clip); 0: GAE's traces uncut",
    )
    reward_clip: float = arg(0.0, REWARD_CLIP_HELP)

    def __post_init__(self) -> None:
        check_loss_settings(
            self, "value_coef", "entropy_coef", "is_clip", "trace_clip", "reward_clip"
        )
        if self.trace_clip > 0 and not self.is_clip > 0:
            raise ValueError("--trace-clip needs --is-clip > 0 (the weights it corrects with)")


def a2c_loss(model, batch: Batch, cfg: A2CConfig) -> LossTerms:
    out, values = model.unroll(batch)  # [T+1, N, out], [T+1, N]
    dist = model.distribution(out[:-1])
    logp = dist.log_prob(model.head.flat_actions(batch.actions))  # [T, N]
    traced = cfg.trace_clip > 0
    adv, returns = advantages_and_returns(
        clipped(batch.rewards, cfg.reward_clip),
        values.detach(),
        batch.terminated,
        batch.truncated,
        batch.valid,
        cfg.gamma,
        cfg.gae_lambda,
        log_ratio=logp.detach() - batch.behaviour_logp if traced else None,
        rho_bar=cfg.is_clip,
        c_bar=cfg.trace_clip,
    )  # [T, N] each, constants for the policy gradient
    mask = batch.valid.to(values.dtype)  # [T, N]
    count = mask.sum().clamp(min=1.0)
    if cfg.normalize_advantages:
        mean = (adv * mask).sum() / count
        std = (((adv - mean) * mask).pow(2).sum() / count).sqrt()
        adv = (adv - mean) / (std + 1e-8) * mask
    if cfg.is_clip > 0:
        rho = torch.exp(logp.detach() - batch.behaviour_logp).clamp(max=cfg.is_clip)  # [T, N]
        adv = adv * rho
    policy_loss = -(logp * adv * mask).sum() / count
    value_loss = 0.5 * ((returns - values[:-1]).pow(2) * mask).sum() / count
    entropy = (dist.entropy() * mask).sum() / count
    total = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    return LossTerms(total, policy_loss, value_loss, entropy, int(batch.valid.sum()))
