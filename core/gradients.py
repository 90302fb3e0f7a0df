"""Gradient-parallel A3C's actor side: an algorithm's loss on one rollout, and its
gradients as the arrays of a Gradient message (``{"grad/<param>": float32 array}``).
The learner applies them with its optimizer as if it had computed them itself
(tests/test_trainer.py checks exactly that)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.algos import Algorithm, LossTerms
from core.batch import Batch
from protocol.rollout import Rollout


def rollout_gradients(
    model: torch.nn.Module, rollout: Rollout, algo: Algorithm, loss_cfg: Any
) -> tuple[dict[str, np.ndarray], LossTerms]:
    model.zero_grad(set_to_none=False)
    batch = Batch.from_rollouts([rollout], torch.device("cpu"))
    terms = algo.loss(model, batch, loss_cfg)
    terms.total.backward()
    grads = {}
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        grads[f"grad/{name}"] = g.detach().numpy().copy()
    return grads, terms
