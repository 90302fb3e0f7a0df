"""The acting copy of the network, on the CPU: weights by version, actions in numpy.

Sampling is the action head's (core/models/heads.py) with this policy's own generator,
seeded apart from the environments' seeds, so the two random streams never share
draws. The value head is not evaluated while acting.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from core.models import ActorCritic, ModelConfig, load_arrays


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
        # Its own stream: SeedSequence spawn keys keep it independent of the envs',
        # which are seeded with the plain integer.
        self.rng = np.random.default_rng(
            None if seed is None else np.random.SeedSequence(seed, spawn_key=(1,))
        )

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
        out = self.model.policy(torch.from_numpy(obs)).numpy()  # [N, out_dim]
        return self.model.head.sample(out, self.rng, self.temperature)

    @torch.inference_mode()
    def act_greedy(self, obs: np.ndarray) -> np.ndarray:
        """obs [N, *obs_shape] -> the most likely actions (evaluation, not acting)."""
        return self.model.head.mode(self.model.policy(torch.from_numpy(obs)).numpy())

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """What the env is given for sampled ``actions`` (Box: clipped into bounds)."""
        return self.model.head.to_env(actions)
