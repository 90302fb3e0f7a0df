"""Rollouts from a real actor's acting parts holding a fresh network's weights, and the
learner's view of them: what the recurrent, Dict and env-group tests compare."""

from __future__ import annotations

import torch

from core.acting import build_acting
from core.batch import Batch
from core.models import ActorCritic, ModelConfig, weights_to_arrays
from protocol.spec import RunSpec


def collect(spec: RunSpec, rollouts: int, seed: int = 1):
    """(the network, ``rollouts`` rollouts an actor collected with its weights)."""
    acting = build_acting(spec, num_envs=spec.num_envs, seed=seed, temperature=1.0)
    torch.manual_seed(seed)
    model = ActorCritic(ModelConfig.from_spec(spec))
    acting.policy.load(weights_to_arrays(model), 1)
    try:
        return model, [acting.collect() for _ in range(rollouts)]
    finally:
        acting.close()


def learner_logp(model, batch: Batch) -> torch.Tensor:
    """The log-probs [T, N] of the batch's actions under the network, unrolled as the
    learner's losses unroll it."""
    with torch.no_grad():
        out, _ = model.unroll(batch)
        return model.distribution(out[:-1]).log_prob(model.head.flat_actions(batch.actions))
