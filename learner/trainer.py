"""The learner's pure core: the network, the optimizer, one update at a time.

    trainer = Trainer(spec, TrainerConfig(...), device)
    stats = trainer.train_on([experience.arrays, ...])   # a2c / a3c: experience in
    stats = trainer.apply_gradient(gradient.arrays)      # a3c-grad: gradients in
    publish(trainer.version, trainer.weights())

Inputs are checked messages (protocol.checks); nothing here touches a socket. An
update whose loss or gradient is not finite is skipped: the parameters and the
optimizer state stay as they were, and the stats say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.loss import LossConfig, a2c_loss
from core.model import ActorCritic, ModelConfig, weights_to_arrays
from protocol.spec import RunSpec


@dataclass(frozen=True)
class TrainerConfig:
    lr: float = 1e-3
    optimizer: str = "adam"
    max_grad_norm: float = 0.5
    normalize_advantages: bool = False
    is_clip: float = 1.0
    seed: int = 1


@dataclass(frozen=True)
class UpdateStats:
    applied: bool
    grad_norm: float
    policy_loss: float
    value_loss: float
    entropy: float
    transitions: int


class Trainer:
    def __init__(self, spec: RunSpec, cfg: TrainerConfig, device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.spec = spec
        self.cfg = cfg
        self.device = device
        self.model = ActorCritic(ModelConfig.from_spec(spec)).to(device)
        for p in self.model.parameters():
            p.grad = torch.zeros_like(p)
        params = self.model.parameters()
        if cfg.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)
        else:
            self.optimizer = torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.99, eps=1e-5)
        self.loss_cfg = LossConfig(spec.gamma, spec.gae_lambda, spec.value_coef, spec.entropy_coef)
        self.version = 0

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, non_blocking=True)

    def train_on(self, batches: Sequence[Mapping[str, np.ndarray]]) -> UpdateStats:
        """One A2C update on rollouts from one or more actors, side by side on the env
        axis: [T, N1 + N2 + ..., ...]."""
        keys = ("obs", "actions", "logp", "rewards", "terminated", "truncated", "valid")
        if len(batches) == 1:
            b = {k: self._tensor(batches[0][k]) for k in keys}
        else:
            b = {k: self._tensor(np.concatenate([x[k] for x in batches], axis=1)) for k in keys}
        terms = a2c_loss(
            self.model,
            b["obs"],
            b["actions"],
            b["rewards"],
            b["terminated"],
            b["truncated"],
            b["valid"],
            self.loss_cfg,
            normalize_advantages=self.cfg.normalize_advantages,
            behaviour_logp=b["logp"],
            is_clip=self.cfg.is_clip,
        )
        self.optimizer.zero_grad(set_to_none=False)
        if not torch.isfinite(terms.total):
            return self._skipped(terms.transitions)
        terms.total.backward()
        return self._step(
            terms.transitions,
            terms.policy_loss.item(),
            terms.value_loss.item(),
            terms.entropy.item(),
        )

    def apply_gradient(
        self,
        grads: Mapping[str, np.ndarray],
        *,
        transitions: int = 0,
        policy_loss: float = 0.0,
        value_loss: float = 0.0,
        entropy: float = 0.0,
    ) -> UpdateStats:
        """Apply gradients an actor computed (names ``grad/<param>``), exactly as if the
        loss had been backpropagated here."""
        self.optimizer.zero_grad(set_to_none=False)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.grad.copy_(self._tensor(grads[f"grad/{name}"]))
        return self._step(transitions, policy_loss, value_loss, entropy)

    def _step(
        self, transitions: int, policy_loss: float, value_loss: float, entropy: float
    ) -> UpdateStats:
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=False)
            return self._skipped(transitions)
        self.optimizer.step()
        self.version += 1
        return UpdateStats(True, float(norm), policy_loss, value_loss, entropy, transitions)

    def _skipped(self, transitions: int) -> UpdateStats:
        nan = float("nan")
        return UpdateStats(False, nan, nan, nan, nan, transitions)

    def weights(self) -> dict[str, np.ndarray]:
        return weights_to_arrays(self.model)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "version": self.version,
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
