"""The learner's pure core: the network, the optimizer, one update at a time.

    trainer = Trainer(spec, algo, loss_cfg, TrainerConfig(...), device)
    stats = trainer.train_on([rollout, ...])          # sync / async: rollouts in
    stats = trainer.apply_gradient(gradient.arrays)   # gradients: gradients in
    publish(trainer.version, trainer.weights())

The loss is the algorithm's (core/algos); nothing here depends on which one. Inputs are
checked messages (protocol.checks); nothing here touches a socket. An update whose loss
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

from core.algos import Algorithm
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
    reward_norm: bool = False  # learner/reward_scale.py
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
        # Rewards scaled by the running std of the discounted return (--reward-norm):
        # the server and the serial loop show it every accepted rollout (observe_rewards).
        self.reward_scale = RewardScale(loss_cfg.gamma) if cfg.reward_norm else None
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

    def prepare(self, rollouts: Sequence[Rollout]) -> Batch:
        """The rollouts as a batch on the training device. On a GPU the host-to-device
        copies are queued on the copy stream and this returns at once: a learner can
        prepare the next batch (from any thread) while the current one trains."""
        if self._copy_stream is None:
            return Batch.from_rollouts(rollouts, self.device)
        with torch.cuda.stream(self._copy_stream):
            return Batch.from_rollouts(rollouts, self.device)

    def observe_rewards(self, chain, rewards, terminated, truncated, valid) -> None:
        """An accepted rollout's rewards, in each actor's order (``chain`` is its
        EpisodeChain): what --reward-norm scales by. Nothing without it."""
        if self.reward_scale is not None:
            self.reward_scale.observe(chain, rewards, terminated, truncated, valid)

    def train_batch(self, batch: Batch) -> UpdateStats:
        """One update on a prepared batch; then, if the network normalises observations,
        their statistics take in this batch's (core/models/normalizer.py), so the new
        version carries both (the very first batch is taken in before its update
        instead). With --reward-norm the loss sees the scaled rewards."""
        self._apply_schedules()
        if self.reward_scale is not None:
            batch = dataclasses.replace(batch, rewards=self.reward_scale.apply(batch.rewards))
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
        if self.algo.targets is not None:
            return self._train_epochs(batch, transitions)
        terms = self.algo.loss(self.model, batch, self.loss_cfg)
        self.optimizer.zero_grad(set_to_none=False)
        if not torch.isfinite(terms.total):
            return self._skipped(transitions, "non_finite")
        terms.total.backward()
        return self._step(
            transitions,
            terms.policy_loss.item(),
            terms.value_loss.item(),
            terms.entropy.item(),
            {k: float(v) for k, v in terms.extras.items()},
        )

    def _train_epochs(self, batch: Batch, transitions: int) -> UpdateStats:
        """Several steps on one batch (PPO): targets once, then ``epochs`` passes of
        minibatches (``_minibatches``). Minibatches whose loss or gradient is not finite
        take no step; one version for the batch."""
        cfg = self.loss_cfg
        targets = self.algo.targets(self.model, batch, cfg)
        order = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.version)
        sums: dict[str, torch.Tensor] = {}  # kept on the device: no sync per minibatch
        steps = 0
        norms = []
        for mb, mb_targets in self._minibatches(batch, targets, cfg, order):
            terms = self.algo.loss(self.model, mb, cfg, mb_targets)
            self.optimizer.zero_grad(set_to_none=False)
            if terms.transitions == 0 or not torch.isfinite(terms.total):
                continue
            terms.total.backward()
            norm = self._clip_and_step()
            if norm is None:
                continue
            steps += 1
            norms.append(norm)
            values = {
                "policy_loss": terms.policy_loss,
                "value_loss": terms.value_loss,
                "entropy": terms.entropy,
                **terms.extras,
            }
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        if steps == 0:
            return self._skipped(transitions, "non_finite")
        self.version += 1
        mean = {k: float(v) / steps for k, v in sums.items()}
        extras = {
            k: v for k, v in mean.items() if k not in ("policy_loss", "value_loss", "entropy")
        }
        return UpdateStats(
            True,
            float(torch.stack(norms).mean()),
            mean["policy_loss"],
            mean["value_loss"],
            mean["entropy"],
            transitions,
            "",
            self.version,
            {**extras, "steps": float(steps)},
        )

    def _minibatches(self, batch: Batch, targets: dict, cfg, order: torch.Generator):
        """``cfg.epochs`` passes over the batch in a fresh random order each pass, as
        (minibatch, its targets). A minibatch of at least a rollout's length is whole env
        columns ([T, n]); a smaller one is single valid transitions ([1, B]), as SB3 and
        CleanRL draw them: the targets (GAE) were computed over the whole batch first, so
        nothing is cut either way."""
        t = batch.rewards.shape[0]
        if cfg.minibatch_size >= t:
            columns = max(1, cfg.minibatch_size // t)
            for _ in range(cfg.epochs):
                perm = torch.randperm(batch.num_envs, generator=order)
                for start in range(0, batch.num_envs, columns):
                    idx = perm[start : start + columns].to(self.device)
                    yield (
                        batch.columns(idx),
                        {k: v.index_select(1, idx) for k, v in targets.items()},
                    )
            return
        valid = batch.valid.reshape(-1).nonzero().squeeze(1)  # flat indices of transitions
        for _ in range(cfg.epochs):
            perm = valid[torch.randperm(len(valid), generator=order).to(valid.device)]
            for start in range(0, len(perm), cfg.minibatch_size):
                flat = perm[start : start + cfg.minibatch_size]
                yield (
                    batch.steps_at(flat),
                    {
                        k: v.reshape(-1).index_select(0, flat).unsqueeze(0)
                        for k, v in targets.items()
                    },
                )

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
        if self.reward_scale is not None:
            state["reward_scale"] = self.reward_scale.state_dict()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
        if self.reward_scale is not None and "reward_scale" in state:
            self.reward_scale.load_state_dict(state["reward_scale"])
