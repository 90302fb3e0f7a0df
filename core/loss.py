"""A2C loss on a time-major rollout (Mnih et al. 2016, Algorithm S3).

Rollout layout (T steps, N envs), as the Experience message carries it:

    obs[t]        observation before step t, t = 0..T (obs[T] is for bootstrapping)
    rewards[t]    reward of step t
    terminated[t] the episode ended in a terminal state at step t: no bootstrap
    truncated[t]  the episode was cut (time limit) at step t: bootstrap from V(obs[t+1]),
                  which under gymnasium's next-step autoreset is the final real
                  observation of that episode
    valid[t]      False for the autoreset step that follows a finished episode: its
                  action was ignored and it is not a transition (no loss, no return)

Advantages are generalised advantage estimates (Schulman et al. 2016). With
``gae_lambda = 1`` they are exactly the n-step return bootstrapped from the value of
the last observation minus the value: the A3C estimator.

No sockets, no torch.optim here: the learner (experience) and the actor
(gradient-parallel A3C) both call ``a2c_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.model import ActorCritic


@dataclass(frozen=True)
class LossConfig:
    gamma: float = 0.99
    gae_lambda: float = 1.0
    value_coef: float = 0.5
    entropy_coef: float = 0.01


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
    for t in range(t_len - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        adv[t] = last
    adv = adv * valid
    returns = (adv + values[:-1]) * valid
    return adv, returns


@dataclass(frozen=True)
class LossTerms:
    total: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    transitions: int


def a2c_loss(
    model: ActorCritic,
    obs: torch.Tensor,  # [T+1, N, *obs_shape]
    actions: torch.Tensor,  # [T, N] (Discrete) or [T, N, *act_shape] (Box)
    rewards: torch.Tensor,  # [T, N]
    terminated: torch.Tensor,  # [T, N] bool
    truncated: torch.Tensor,  # [T, N] bool
    valid: torch.Tensor,  # [T, N] bool
    cfg: LossConfig,
    *,
    normalize_advantages: bool = False,
    behaviour_logp: torch.Tensor | None = None,  # [T, N], log-prob under the acting policy
    is_clip: float = 0.0,
) -> LossTerms:
    """The A2C loss. With ``behaviour_logp`` and ``is_clip > 0`` each policy-gradient
    term is weighted by the truncated importance ratio min(is_clip, pi/mu) (Espeholt et
    al. 2018, eq. 4's rho-bar), which keeps rollouts collected a few versions ago (A3C's
    policy lag, or an actor's softmax temperature) from pushing the policy off a cliff.
    For on-policy data the ratio is 1 and this is the plain A2C loss."""
    out, values = model(obs)  # [T+1, N, out], [T+1, N]
    adv, returns = advantages_and_returns(
        rewards, values.detach(), terminated, truncated, valid, cfg.gamma, cfg.gae_lambda
    )
    dist = model.distribution(out[:-1])
    if model.cfg.action_kind == "box":
        actions = actions.reshape(*actions.shape[:2], -1)  # [T, N, act_dim]
    logp = dist.log_prob(actions)  # [T, N]
    mask = valid.to(values.dtype)
    count = mask.sum().clamp(min=1.0)
    if normalize_advantages:
        mean = (adv * mask).sum() / count
        std = (((adv - mean) * mask).pow(2).sum() / count).sqrt()
        adv = (adv - mean) / (std + 1e-8) * mask
    if behaviour_logp is not None and is_clip > 0:
        rho = torch.exp(logp.detach() - behaviour_logp).clamp(max=is_clip)  # [T, N]
        adv = adv * rho
    # The advantage is a constant in the policy gradient (already detached above).
    policy_loss = -(logp * adv * mask).sum() / count
    value_loss = 0.5 * ((returns - values[:-1]).pow(2) * mask).sum() / count
    entropy = (dist.entropy() * mask).sum() / count
    total = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    return LossTerms(total, policy_loss, value_loss, entropy, int(valid.sum()))


def rollout_gradients(
    model: ActorCritic, rollout: dict, cfg: LossConfig
) -> tuple[dict[str, np.ndarray], LossTerms]:
    """Gradient-parallel A3C's actor side: the A2C loss on one rollout (the arrays of an
    Experience message) and its gradients, as ``{"grad/<param>": float32 array}``."""
    model.zero_grad(set_to_none=False)
    t = {k: torch.from_numpy(v) for k, v in rollout.items() if not k.startswith("ep_")}
    terms = a2c_loss(
        model,
        t["obs"],
        t["actions"],
        t["rewards"],
        t["terminated"],
        t["truncated"],
        t["valid"],
        cfg,
    )
    terms.total.backward()
    grads = {f"grad/{n}": p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
    return grads, terms
