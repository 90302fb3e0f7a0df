"""The actor's copy of the network and its action sampling, on the CPU.

Sampling runs in numpy on the policy's output (Gumbel-max for Categorical, Gaussian
noise for Box) with the actor's own generator: cheaper than building a torch
distribution every step, and reproducible from the seed the learner assigns. The value
head is not evaluated while acting.

``temperature`` divides the logits (Discrete) or scales the std (Box): the per-actor
exploration setting of asynchronous methods (Mnih et al. 2016, section 4).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from core.model import ActorCritic, ModelConfig, load_arrays


class Policy:
    def __init__(
        self, cfg: ModelConfig, *, temperature: float = 1.0, seed: int | None = None
    ) -> None:
        if not temperature > 0:
            raise ValueError("temperature must be > 0")
        self.model = ActorCritic(cfg)
        self.model.eval()
        self.cfg = cfg
        self.temperature = temperature
        self.version = -1
        self.rng = np.random.default_rng(seed)

    def load(self, arrays: Mapping[str, np.ndarray], version: int) -> bool:
        """Load checked weights unless they are older than what we hold."""
        if version <= self.version:
            return False
        load_arrays(self.model, arrays)
        self.version = version
        return True

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """obs [N, *obs_shape] -> (actions [N] int64 or [N, *act] float32, logp [N])."""
        x = torch.from_numpy(obs).reshape(obs.shape[0], -1)  # [N, obs_dim]
        out = self.model.policy(x).numpy().astype(np.float64)  # [N, out_dim]
        if self.cfg.action_kind == "discrete":
            logits = out / self.temperature
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            gumbel = -np.log(-np.log(self.rng.random(logits.shape)))
            actions = np.argmax(log_probs + gumbel, axis=1)  # [N]
            logp = np.take_along_axis(log_probs, actions[:, None], axis=1)[:, 0]
            return actions.astype(np.int64), logp.astype(np.float32)
        std = np.exp(self.model.log_std.detach().numpy().astype(np.float64)) * self.temperature
        noise = self.rng.standard_normal(out.shape)
        actions = out + std * noise
        logp = (-0.5 * noise**2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(axis=1)
        return actions.astype(np.float32), logp.astype(np.float32)
