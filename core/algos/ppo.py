"""The clipped-surrogate loss of PPO (Schulman et al. 2017) and its settings; with the
async queue it is asynchronous PPO (APPO, as in Sample Factory, Petrenko et al. 2020),
made correct under policy lag by decoupling the trust region from the behaviour policy
(Hilton et al. 2021, "Batch size-invariance for policy optimization", the decoupled
PPO objective).

One batch (rollouts side by side, [T, N]) gives several optimizer steps: ``targets``
computes, once and without gradients, from the network as it is (the proximal policy
pi_prox, the learner's own at this update): the values, the GAE advantages and returns
over the whole batch, and pi_prox's log-probs; then ``epochs`` passes over minibatches
each take one step on ``ppo_loss``: whole env columns when ``minibatch_size`` is at
least T (rounded to columns), single valid transitions drawn at random (as SB3 and
CleanRL) when it is smaller than a column. That loop is ``ppo_update``, here beside the
loss; the trainer only takes the steps it asks for (learner/trainer.py). The batch is
one version, one weights broadcast.

    ratio       = pi(a|s) / pi_prox(a|s)         the trust region: around the learner's
                                                 own policy, whatever acted
    w           = min(is_clip, pi_prox / mu)     mu: the behaviour policy (the log-probs
                                                 the actors sent); corrects for the lag
    policy_loss = -mean[ w * min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A) ]
    value_loss  = mean[ 0.5 * (R - V)^2 ]        or, with value_clip, the larger of that and
                                                 the loss of V clipped to old V +- value_clip
    total       = policy_loss + value_coef * value_loss - entropy_coef * entropy

That is ``trust_region="proximal"``. The default, ``"behaviour"``, keeps the ratio
against mu (pi_prox := mu, w = 1), as Sample Factory's APPO: measured on CartPole with
actors acting on weights K versions old (make staleness, 2026-12-02), it solved 3/3
seeds at every K up to 64, where the proximal form solved 2/3 at K = 2-8 and 1/3 at 16:
clipping against mu withholds the gradient of samples the policy has already moved
away from, a brake the proximal form releases. The proximal form bounds every stale
sample's gradient (below) and is there to measure at scale.
On fresh data (a rollout of the learner's current version, ``Batch.lag`` 0: every sync
PPO batch) pi_prox is mu itself, so w = 1 and both are exactly PPO's loss against the
behaviour policy. On stale data the clip no longer measures lag: a sample starts inside
the trust region (ratio 1), its weight is bounded by ``is_clip``, so however old it is
its gradient is at most ``is_clip * (1 + clip)`` times a fresh sample's (with a ratio
against mu, a sample 8 nats off had e^8 times the gradient). ``clip_frac`` and
``approx_kl`` are against pi_prox (the update's own movement); ``behaviour_kl`` (mean of
(rho - 1) - log rho, rho = pi_prox / mu) and ``is_clipped_frac`` say how far the data's
policy was from the learner's.

Advantages are normalised per minibatch (over its valid transitions) unless turned off.
Means are over valid transitions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.algos.base import (
    REWARD_CLIP_HELP,
    LossTerms,
    StepFn,
    StepLog,
    UpdateSummary,
    check_loss_settings,
)
from core.algos.returns import advantages_and_returns, clipped
from core.algos.vtrace import vtrace_targets
from core.batch import Batch
from core.cli import arg


@dataclass(frozen=True)
class PPOConfig:
    gamma: float = arg(0.99, "discount")
    gae_lambda: float = arg(0.95, "GAE lambda")
    value_coef: float = arg(0.5, "weight of the value loss")
    entropy_coef: float = arg(0.0, "weight of the entropy bonus")
    normalize_advantages: bool = arg(True, "normalise advantages per minibatch")
    clip: float = arg(0.2, "PPO: clip the probability ratio to [1 - clip, 1 + clip]")
    value_clip: float = arg(0.0, "PPO: clip value updates to +- this around the old values; 0: off")
    epochs: int = arg(4, "PPO: passes over each batch")
    minibatch_size: int = arg(
        256,
        "PPO: transitions per optimizer step: whole env columns of T steps when at least T, else single transitions drawn at random",
    )
    reward_clip: float = arg(0.0, REWARD_CLIP_HELP)
    targets: str = arg(
        "gae",
        "PPO: advantages and value targets: gae, or vtrace (V-trace's, corrected for the lag of the policy that acted, as Sample Factory's APPO)",
        choices=("gae", "vtrace"),
    )
    vtrace_rho_bar: float = arg(1.0, "V-trace: truncation of the importance weights rho")
    vtrace_c_bar: float = arg(1.0, "V-trace: truncation of the trace coefficients c")
    trust_region: str = arg(
        "behaviour",
        "APPO under lag: behaviour (clip the ratio pi/mu against the policy that acted, as Sample Factory) or proximal (clip pi/pi_prox around the learner's own policy and weight by min(is_clip, pi_prox/mu), Hilton et al. 2021); the same on fresh data",
        choices=("behaviour", "proximal"),
    )
    is_clip: float = arg(
        1.0,
        "APPO: truncate the importance weight pi_prox/mu that corrects a stale batch for the policy that acted (the trust region is around the learner's own policy); 0: no correction",
    )

    def __post_init__(self) -> None:
        check_loss_settings(
            self, "value_coef", "entropy_coef", "value_clip", "reward_clip", "is_clip"
        )
        if self.trust_region not in ("behaviour", "proximal"):
            raise ValueError("--trust-region must be behaviour or proximal")
        if self.targets not in ("gae", "vtrace"):
            raise ValueError("--targets must be gae or vtrace")
        if not self.vtrace_rho_bar > 0 or not self.vtrace_c_bar > 0:
            raise ValueError("--vtrace-rho-bar and --vtrace-c-bar must be > 0")
        if not 0 < self.clip < 1:
            raise ValueError("--clip must be in (0, 1)")
        if not 1 <= self.epochs <= 100 or self.minibatch_size < 1:
            raise ValueError("--epochs must be in [1, 100] and --minibatch-size >= 1")


# Log-probs of one policy as the actor computed them and as the learner does differ by
# float noise only (another device, another batch size): well below this.
SAME_POLICY_NATS = 1e-4


@torch.no_grad()
def ppo_targets(model, batch: Batch, cfg: PPOConfig) -> dict[str, torch.Tensor]:
    """Advantages, returns and old values [T, N] from the network as it is now: GAE's,
    or with ``targets="vtrace"`` V-trace's (Espeholt et al. 2018): the value targets
    v_s corrected for the lag between the policy that acted and this one, the
    advantages r + gamma * v_{s+1} - V(x_s) (the loss's weight w applies rho to them
    once). On fresh data (ratio 1, c-bar >= 1) the two agree at GAE lambda 1. Also
    pi_prox's log-probs (mu's on fresh columns, ``Batch.lag`` 0), the truncated weight
    w = min(is_clip, pi_prox / mu) and log(pi_prox / mu)."""
    out, values = model.unroll(batch)  # [T+1, N]
    rewards = clipped(batch.rewards, cfg.reward_clip)
    # pi_prox: the network as it is; where mu is that same policy (fresh columns, up to
    # the float noise between the actor's forward pass and this one), mu itself, to the
    # bit. Not on fresh columns whose mu differs: an actor at a --temperatures other
    # than 1, or the first batch of --obs-norm (its statistics taken in just before).
    logp = model.distribution(out[:-1]).log_prob(model.head.flat_actions(batch.actions))  # [T, N]
    fresh = torch.ones_like(batch.valid) if batch.lag is None else batch.lag == 0
    same = (logp - batch.behaviour_logp).abs() <= SAME_POLICY_NATS
    prox_logp = torch.where(fresh & same, batch.behaviour_logp, logp)
    log_rho = (prox_logp - batch.behaviour_logp).clamp(-20.0, 20.0)  # log pi_prox / mu
    weight = torch.ones_like(log_rho)
    if cfg.trust_region == "behaviour":
        prox_logp = batch.behaviour_logp  # the ratio is taken against mu itself
    elif cfg.is_clip > 0:
        weight = torch.exp(log_rho).clamp(max=cfg.is_clip)
    if cfg.targets == "vtrace":
        returns, adv = vtrace_targets(
            values,
            log_rho,
            rewards,
            batch.terminated,
            batch.truncated,
            batch.valid,
            cfg.gamma,
            cfg.vtrace_rho_bar,
            cfg.vtrace_c_bar,
            weighted=False,
        )
    else:
        adv, returns = advantages_and_returns(
            rewards,
            values,
            batch.terminated,
            batch.truncated,
            batch.valid,
            cfg.gamma,
            cfg.gae_lambda,
        )
    return {
        "advantages": adv,
        "returns": returns,
        "old_values": values[:-1],
        "prox_logp": prox_logp,
        "is_weight": weight,
        "log_rho": log_rho,
    }


def ppo_loss(model, batch: Batch, cfg: PPOConfig, targets: dict[str, torch.Tensor]) -> LossTerms:
    out, values = model.unroll(batch)  # [T+1, n, out], [T+1, n]
    dist = model.distribution(out[:-1])
    logp = dist.log_prob(model.head.flat_actions(batch.actions))  # [T, n]
    mask = batch.valid.to(values.dtype)
    count = mask.sum().clamp(min=1.0)
    adv = targets["advantages"]
    if cfg.normalize_advantages:
        mean = (adv * mask).sum() / count
        std = (((adv - mean) * mask).pow(2).sum() / count).sqrt()
        adv = (adv - mean) / (std + 1e-8) * mask
    # Bounded: a log-prob far off (a buggy or hostile actor's mu enters through the
    # weight, already clamped) must not turn a whole minibatch into inf * 0 = NaN.
    log_ratio = (logp - targets["prox_logp"]).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv)
    policy_loss = -(targets["is_weight"] * surrogate * mask).sum() / count
    v, ret = values[:-1], targets["returns"]
    value_err = (v - ret).pow(2)
    if cfg.value_clip > 0:
        old = targets["old_values"]
        clipped = old + (v - old).clamp(-cfg.value_clip, cfg.value_clip)
        value_err = torch.max(value_err, (clipped - ret).pow(2))
    value_loss = 0.5 * (value_err * mask).sum() / count
    entropy = (dist.entropy() * mask).sum() / count
    total = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    with torch.no_grad():
        clip_frac = (((ratio - 1).abs() > cfg.clip).to(mask.dtype) * mask).sum() / count
        approx_kl = (((ratio - 1) - log_ratio) * mask).sum() / count
        log_rho = targets["log_rho"]
        behaviour_kl = (((torch.exp(log_rho) - 1) - log_rho) * mask).sum() / count
        is_clipped = ((log_rho.exp() > cfg.is_clip) & (cfg.is_clip > 0)).to(mask.dtype) * mask
    return LossTerms(
        total,
        policy_loss,
        value_loss,
        entropy,
        int(batch.valid.sum()),
        extras={
            "clip_frac": clip_frac,
            "approx_kl": approx_kl,
            "behaviour_kl": behaviour_kl,
            "is_clipped_frac": is_clipped.sum() / count,
        },
    )


def ppo_update(
    model, batch: Batch, cfg: PPOConfig, step: StepFn, rng: torch.Generator
) -> UpdateSummary | None:
    """PPO's update on one batch: targets once (``ppo_targets``), then ``cfg.epochs``
    passes over minibatches (``minibatches``), one step each on ``ppo_loss``. A
    minibatch whose loss or gradient is not finite takes no step; None if none did."""
    targets = ppo_targets(model, batch, cfg)
    log = StepLog()
    for mb, mb_targets in minibatches(batch, targets, cfg, rng):
        terms = ppo_loss(model, mb, cfg, mb_targets)
        log.add(terms, step(terms) if terms.transitions else None)
    return log.summary(steps=float(log.steps))


def minibatches(batch: Batch, targets: dict, cfg: PPOConfig, rng: torch.Generator):
    """``cfg.epochs`` passes over the batch in a fresh random order each pass, as
    (minibatch, its targets). A minibatch of at least a rollout's length is whole env
    columns ([T, n]); a smaller one is single valid transitions ([1, B]), as SB3 and
    CleanRL draw them: the targets (GAE) were computed over the whole batch first, so
    nothing is cut either way. With a recurrent core, always whole columns (at least
    one), each unrolled from its own core state, as SB3-contrib's RecurrentPPO keeps
    sequences whole."""
    t = batch.rewards.shape[0]
    device = batch.rewards.device
    # A recurrent network is unrolled over whole columns from their core state: a
    # minibatch smaller than a column is one column (never single transitions).
    if cfg.minibatch_size >= t or batch.core_state is not None:
        columns = max(1, cfg.minibatch_size // t)
        for _ in range(cfg.epochs):
            perm = torch.randperm(batch.num_envs, generator=rng)
            for start in range(0, batch.num_envs, columns):
                idx = perm[start : start + columns].to(device)
                yield batch.columns(idx), {k: v.index_select(1, idx) for k, v in targets.items()}
        return
    valid = batch.valid.reshape(-1).nonzero().squeeze(1)  # flat indices of transitions
    for _ in range(cfg.epochs):
        perm = valid[torch.randperm(len(valid), generator=rng).to(valid.device)]
        for start in range(0, len(perm), cfg.minibatch_size):
            flat = perm[start : start + cfg.minibatch_size]
            yield (
                batch.steps_at(flat),
                {k: v.reshape(-1).index_select(0, flat).unsqueeze(0) for k, v in targets.items()},
            )
