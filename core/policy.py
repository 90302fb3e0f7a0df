"""The acting copy of the network, on the CPU: weights by version, actions in numpy.

Sampling is the action head's (core/models/heads.py) with this policy's own generator,
seeded apart from the environments' seeds, so the two random streams never share
draws. The value head is not evaluated while acting.

A recurrent network's state lives here, one row per env, and moves on with every
``act``/``act_greedy``; whoever steps the envs says where an episode restarts:

    actions, logp = policy.act(obs)       # obs [N, ...]: the state moves one step
    actions, logp = policy.act(obs, rows) # a group of them (rows of the N): theirs
    policy.forget(restarting)             # [N] bool: those envs' state back to zero
    policy.memory()                       # [N, S] float32 copy (what a rollout carries)

The state survives new weights (as in IMPALA and Sample Factory: the next rollout
starts from where the envs are, whichever policy got them there).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from core.models import ActorCritic, ModelConfig, load_arrays
from protocol.rollout import Obs, map_obs, obs_rows


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
        self.state: torch.Tensor | None = None  # [N, S] while acting, recurrent only
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

    @property
    def recurrent(self) -> bool:
        return self.model.core is not None

    @torch.inference_mode()
    def memory(self, n: int) -> np.ndarray:
        """The recurrent state of ``n`` envs before their next step, [N, S] float32
        (zeros before the first); a copy."""
        return self._held(n).numpy().copy()

    def _held(self, n: int) -> torch.Tensor:
        """The state of ``n`` envs [N, S], zeros where it was not held for that many."""
        if self.state is None or self.state.shape[0] != n:
            self.state = self.model.initial_state(n)
        return self.state

    @torch.inference_mode()
    def forget(self, restarting: np.ndarray | None = None) -> None:
        """Zero the state of the envs ``restarting`` ([N] bool), whose next
        observation starts an episode; None: of every env (new envs)."""
        if restarting is None:
            self.state = None
        elif self.state is not None and restarting.any():
            self.state[torch.from_numpy(np.asarray(restarting, dtype=bool))] = 0.0

    def _output(self, obs: Obs, rows: slice | None) -> np.ndarray:
        x = map_obs(torch.from_numpy, obs)
        if not self.recurrent:
            return self.model.step(x, None)[0].numpy()  # [n, out_dim]
        if rows is None:  # all the envs there are
            out, self.state = self.model.step(x, self._held(obs_rows(obs)))
        else:  # a group of them: their rows of the state
            out, self.state[rows] = self.model.step(x, self.state[rows])
        return out.numpy()  # [n, out_dim]

    @torch.inference_mode()
    def act(self, obs: Obs, rows: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
        """obs [n, *obs_shape] (a Dict's: {key: [n, *shape]}) -> (actions [n] int64 or
        [n, *act] float32, logp [n]). ``rows``: which of the envs whose state this
        policy holds (``memory``) these are; None: all of them."""
        return self.model.head.sample(self._output(obs, rows), self.rng, self.temperature)

    @torch.inference_mode()
    def act_greedy(self, obs: Obs, rows: slice | None = None) -> np.ndarray:
        """obs [n, *obs_shape] -> the most likely actions (evaluation, not acting)."""
        return self.model.head.mode(self._output(obs, rows))

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """What the env is given for sampled ``actions`` (Box: clipped into bounds)."""
        return self.model.head.to_env(actions)
