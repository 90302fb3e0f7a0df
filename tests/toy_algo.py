"""A toy algorithm, written as a user would add one: A2C with a Huber value loss.

One module (this file: a config dataclass and a loss) plus one line,
``core.algos.register(TOY)``, is all it takes; tests/test_algorithm_home.py trains it
through the real learner."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.algos import Algorithm, LossTerms
from core.algos.returns import advantages_and_returns
from core.batch import Batch
from core.cli import arg


@dataclass(frozen=True)
class HuberA2CConfig:
    gamma: float = arg(0.99, "discount")
    gae_lambda: float = arg(0.95, "GAE lambda")
    value_coef: float = arg(0.5, "weight of the value loss")
    huber_delta: float = arg(1.0, "Huber loss threshold of the value loss")


def huber_a2c_loss(model, batch: Batch, cfg: HuberA2CConfig) -> LossTerms:
    out, values = model(batch.obs)  # [T+1, N, out], [T+1, N]
    adv, returns = advantages_and_returns(
        batch.rewards,
        values.detach(),
        batch.terminated,
        batch.truncated,
        batch.valid,
        cfg.gamma,
        cfg.gae_lambda,
    )
    dist = model.distribution(out[:-1])
    logp = dist.log_prob(model.head.flat_actions(batch.actions))  # [T, N]
    mask = batch.valid.to(values.dtype)
    count = mask.sum().clamp(min=1.0)
    policy_loss = -(logp * adv * mask).sum() / count
    huber = torch.nn.functional.huber_loss(
        values[:-1], returns, reduction="none", delta=cfg.huber_delta
    )
    value_loss = (huber * mask).sum() / count
    entropy = (dist.entropy() * mask).sum() / count
    total = policy_loss + cfg.value_coef * value_loss
    return LossTerms(total, policy_loss, value_loss, entropy, int(batch.valid.sum()))


TOY = Algorithm(
    "toy-huber-a2c",
    "async",
    HuberA2CConfig,
    huber_a2c_loss,
    lr=2e-3,
    max_policy_lag=4,
    summary="A2C with a Huber value loss (a test's toy)",
)
