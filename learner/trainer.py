"""The learner's pure core: the network, the optimizer, one update at a time.

    trainer = Trainer(spec, algo, loss_cfg, TrainerConfig(...), device)
    stats = trainer.train_on([rollout, ...])          # sync / async: rollouts in
    stats = trainer.apply_gradient(gradient.arrays)   # gradients: gradients in
    publish(trainer.version, trainer.weights())

The loss is the algorithm's (core/algos); nothing here depends on which one. One thread
at a time uses the network: the learner's training thread runs ``train_batch`` and
``apply_gradient`` (learner/pipeline.py); the loop reads the network (``weights``,
``state_dict``) only when no update is in flight, and ``prepare`` touches no parameter.
Inputs are checked messages (protocol.checks); nothing here touches a socket. An update whose loss
or gradient is not finite, or whose batch holds no valid transition, is skipped: the
parameters and the optimizer state stay as they were (an Adam step on a zero gradient
would still move the parameters), and the stats say why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.algos import Algorithm, LossTerms
from core.batch import Batch
from core.models import ActorCritic, ModelConfig, weights_to_arrays
from learner.reward_scale import RewardScale
from protocol.rollout import Rollout
from protocol.spec import RunSpec


@dataclass(frozen=True)
class TrainerConfig:
    lr: float = 1e-3
    optimizer: str = "adam"
    max_grad_norm: float = 0.5
    seed: int = 1
    log_std_init: float = 0.0  # Box actions: the Gaussian's initial log-std
    # Linear anneals to 0 over the run's env-step budget (CleanRL's anneal_lr, rl-zoo's
    # lin_ schedules): the fraction left comes from set_progress before each update.
    lr_schedule: str = "constant"  # or "linear"
    clip_schedule: str = "constant"  # or "linear": PPO's clip (a loss with a ``clip``)


@dataclass(frozen=True)
class UpdateStats:
    applied: bool
    grad_norm: float
    policy_loss: float
    value_loss: float
    entropy: float
    transitions: int
    skipped: str = ""  # why not applied: "non_finite" or "no_valid_transitions"
    version: int = 0  # the trainer's version after this update
    extras: dict[str, float] = field(default_factory=dict)  # the loss's own statistics


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=1e-5)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-5)
    raise ValueError(f"unknown optimizer {name!r}")


class Trainer:
    def __init__(
        self,
        spec: RunSpec,
        algo: Algorithm,
        loss_cfg: Any,
        cfg: TrainerConfig,
        device: torch.device,
    ) -> None:
        torch.manual_seed(cfg.seed)
        self.spec = spec
        self.algo = algo
        self.loss_cfg = loss_cfg
        self.cfg = cfg
        self.device = device
        self.model = ActorCritic(ModelConfig.from_spec(spec)).to(device)
        log_std = getattr(self.model.head, "log_std", None)
        if log_std is not None:
            with torch.no_grad():
                log_std.fill_(cfg.log_std_init)
        for p in self.model.parameters():
            p.grad = torch.zeros_like(p)
        self.optimizer = make_optimizer(cfg.optimizer, self.model.parameters(), cfg.lr)
        self.base_lr = cfg.lr
        self.base_loss_cfg = loss_cfg
        self._left = 1.0  # share of the env-step budget left (set_progress)
        self.version = 0
        # On a GPU, batches are copied on a stream of their own, so the copy of the next
        # batch runs while the current one trains (see prepare / train_batch).
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def set_progress(self, env_steps: int, budget: int | None) -> None:
        """The run's progress, for the linear schedules; read by the next update. Called
        from the learner's loop (a float written whole: no lock needed)."""
        if budget:
            self._left = max(0.0, 1.0 - env_steps / budget)

    def _apply_schedules(self) -> None:
        if self.cfg.lr_schedule == "linear":
            self.set_lr(self.base_lr * self._left)
        if self.cfg.clip_schedule == "linear":
            # A clip of exactly 0 would freeze the policy; CleanRL's anneal ends at its
            # last update, above 0: so does this.
            clip = max(self.base_loss_cfg.clip * self._left, 1e-3)
            self.loss_cfg = dataclasses.replace(self.base_loss_cfg, clip=clip)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train_on(
        self, rollouts: Sequence[Rollout], versions: Sequence[int] | None = None
    ) -> UpdateStats:
        """One update on rollouts from one or more actors, side by side on the env
        axis: [T, N1 + N2 + ..., ...]; ``versions``: the policy version each was
        collected with (None: this one, fresh)."""
        batch = self.prepare(rollouts)
        if versions is not None:
            lags = [self.version - v for v in versions]
            batch = batch.with_lags(lags, [r.num_envs for r in rollouts])
        return self.train_batch(batch)

    def prepare(self, rollouts: Sequence[Rollout], rewards: RewardScale | None = None) -> Batch:
        """The rollouts as a batch on the training device, with the rewards the loss
        sees (``rewards``: --reward-norm's running scale; read here, on the caller's
        thread). On a GPU the host-to-device copies are queued on the copy stream and
        this returns at once: a learner can prepare the next batch while the current
        one trains."""
        if self._copy_stream is None:
            return _scaled(Batch.from_rollouts(rollouts, self.device), rewards)
        with torch.cuda.stream(self._copy_stream):
            return _scaled(Batch.from_rollouts(rollouts, self.device), rewards)

    def train_batch(self, batch: Batch) -> UpdateStats:
        """One update on a prepared batch; then, if the network normalises observations,
        their statistics take in this batch's (core/models/normalizer.py), so the new
        version carries both (the very first batch is taken in before its update
        instead)."""
        self._apply_schedules()
        norm = self.model.obs_norm
        seeded = norm is not None and int(norm.count) == 0
        if seeded:
            # The statistics start at mean 0, variance 1: training the first batch with
            # them would fit the network to raw observations (hundreds of optimizer steps
            # with the continuous preset), then see its inputs jump at the next batch.
            # So the first batch's own moments come first; it is not merged twice, and a
            # skipped update gives them back.
            unseeded = {k: v.clone() for k, v in norm.state_dict().items()}
            norm.update(batch.obs[:-1][batch.valid])  # [valid transitions, *obs_shape]
        result = self._train(batch)
        if seeded and not result.applied:
            norm.load_state_dict(unseeded)
        elif result.applied and norm is not None and not seeded:
            norm.update(batch.obs[:-1][batch.valid])
        return result

    def _train(self, batch: Batch) -> UpdateStats:
        if self._copy_stream is not None:
            # Training waits for the batch's copies, and the copy stream's memory is not
            # reused before training is done with it.
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self._copy_stream)
            batch.record_stream(current)
        transitions = batch.transitions
        if transitions == 0:
            return self._skipped(0, "no_valid_transitions")
        # The algorithm's own update (PPO: epochs of minibatches) or one step; any
        # order it draws is seeded by the run's seed and this version: repeatable.
        rng = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.version)
        done = self.algo.train(self.model, batch, self.loss_cfg, self._take_step, rng)
        if done is None:
            return self._skipped(transitions, "non_finite")
        self.version += 1
        return UpdateStats(
            True,
            done.grad_norm,
            done.policy_loss,
            done.value_loss,
            done.entropy,
            transitions,
            "",
            self.version,
            done.extras,
        )

    def _take_step(self, terms: LossTerms) -> torch.Tensor | None:
        """One optimizer step on ``terms.total`` (the StepFn algorithms call); None and
        no step when the loss or the gradient is not finite."""
        self.optimizer.zero_grad(set_to_none=False)
        if not torch.isfinite(terms.total):
            return None
        terms.total.backward()
        return self._clip_and_step()

    def apply_gradient(
        self,
        grads: Mapping[str, np.ndarray],
        *,
        transitions: int,
        policy_loss: float = 0.0,
        value_loss: float = 0.0,
        entropy: float = 0.0,
    ) -> UpdateStats:
        """Apply gradients an actor computed (names ``grad/<param>``), exactly as if the
        loss had been backpropagated here."""
        if transitions <= 0:
            return self._skipped(0, "no_valid_transitions")
        self._apply_schedules()
        self.optimizer.zero_grad(set_to_none=False)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.grad.copy_(torch.as_tensor(np.asarray(grads[f"grad/{name}"])).to(self.device))
        return self._step(transitions, policy_loss, value_loss, entropy)

    def _step(
        self,
        transitions: int,
        policy_loss: float,
        value_loss: float,
        entropy: float,
        extras: dict[str, float] | None = None,
    ) -> UpdateStats:
        norm = self._clip_and_step()
        if norm is None:
            return self._skipped(transitions, "non_finite")
        self.version += 1
        return UpdateStats(
            True,
            float(norm),
            policy_loss,
            value_loss,
            entropy,
            transitions,
            "",
            self.version,
            extras or {},
        )

    def _clip_and_step(self) -> torch.Tensor | None:
        """Clip the gradient's global norm and take one optimizer step; a non-finite
        gradient takes none (gradients zeroed, optimizer state untouched) and gives None."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=False)
            return None
        self.optimizer.step()
        self.model.keep_in_bounds()
        return norm.detach()

    def _skipped(self, transitions: int, why: str) -> UpdateStats:
        nan = float("nan")
        return UpdateStats(False, nan, nan, nan, nan, transitions, why, self.version)

    def weights(self) -> dict[str, np.ndarray]:
        return weights_to_arrays(self.model)

    def state_dict(self) -> dict:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "version": self.version,
        }
        return state

    def load_state_dict(self, state: Mapping) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])


def _scaled(batch: Batch, rewards: RewardScale | None) -> Batch:
    if rewards is None:
        return batch
    return dataclasses.replace(batch, rewards=rewards.apply(batch.rewards))
