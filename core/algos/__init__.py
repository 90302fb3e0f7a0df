"""The algorithm table: name -> loss + coordination mode (see base.py for the contract).

| name       | coordination | loss | what crosses the wire |
|------------|--------------|------|-----------------------|
| a2c        | sync         | A2C  | rollouts; one update per barrier (a rollout from every live actor) |
| a3c        | async        | A2C  | rollouts; updates as they come (what queued is merged) |
| a3c-grad   | gradients    | A2C  | gradients computed by the actors on their own rollouts |
| ppo        | sync         | PPO  | rollouts; several minibatch steps per barrier |
| appo       | async        | PPO  | rollouts; several minibatch steps per arriving batch, ratio against the behaviour policy |
| impala     | async        | V-trace | rollouts; updates as they come, values and policy gradient corrected for lag |

A new algorithm: one module with its config dataclass and loss function (and its own
``update`` if it takes more than one step per batch, as PPO's epochs), one ``register``
line below, and its tests.
"""

from __future__ import annotations

from core.algos.a2c import A2CConfig, a2c_loss
from core.algos.base import Algorithm, LossTerms, config_dict
from core.algos.ppo import PPOConfig, ppo_loss, ppo_update
from core.algos.vtrace import VTraceConfig, impala_loss

ALGORITHMS: dict[str, Algorithm] = {}


def register(algo: Algorithm) -> Algorithm:
    """Add ``algo`` to the table (a test may register its own); returns it."""
    if algo.name in ALGORITHMS:
        raise ValueError(f"algorithm {algo.name!r} is already registered")
    ALGORITHMS[algo.name] = algo
    return algo


def get(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


register(
    Algorithm(
        "a2c",
        "sync",
        A2CConfig,
        a2c_loss,
        lr=4e-3,
        max_policy_lag=4,
        summary="synchronous: one update on a rollout from every live actor",
    )
)
register(
    Algorithm(
        "a3c",
        "async",
        A2CConfig,
        a2c_loss,
        lr=2e-3,
        max_policy_lag=4,
        summary="asynchronous: actors send rollouts, updates as they come",
        # Mnih et al. 2016's RMSProp and entropy bonus of 0.01: with Adam and no bonus,
        # CartPole runs fell into a deterministic policy and some never left it
        # (README, "A3C's reliability").
        optimizer="rmsprop",
        loss_defaults={"entropy_coef": 0.01},
    )
)
register(
    Algorithm(
        "a3c-grad",
        "gradients",
        A2CConfig,
        a2c_loss,
        lr=2e-3,
        max_policy_lag=4,
        summary="asynchronous: actors send gradients of the A2C loss",
    )
)

register(
    Algorithm(
        "ppo",
        "sync",
        PPOConfig,
        ppo_loss,
        lr=1e-3,
        max_policy_lag=4,
        summary="synchronous PPO: clipped surrogate, epochs of minibatch steps per barrier",
        update=ppo_update,
    )
)
register(
    Algorithm(
        "appo",
        "async",
        PPOConfig,
        ppo_loss,
        lr=1e-3,
        max_policy_lag=16,
        summary="asynchronous PPO (Sample Factory's APPO): epochs of minibatch steps per arriving batch",
        update=ppo_update,
    )
)

register(
    Algorithm(
        "impala",
        "async",
        VTraceConfig,
        impala_loss,
        lr=2e-3,
        max_policy_lag=16,
        summary="asynchronous with IMPALA's V-trace: value targets and policy gradient corrected for policy lag",
        optimizer="rmsprop",  # Espeholt et al. 2018's (and TorchBeast's); measured: README
    )
)

__all__ = ["ALGORITHMS", "Algorithm", "LossTerms", "config_dict", "get", "register"]
