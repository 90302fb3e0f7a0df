"""Rollout collection from a gymnasium vector env: no sockets, no torch.

``RolloutCollector.collect(act)`` steps the envs T times with actions from ``act`` and
returns one ``Rollout`` (protocol/rollout.py, allocated from the run spec). It keeps the
state that spans rollouts: the current observation, which envs autoreset on their next
step, and the running return and length of each episode.

Under gymnasium's next-step autoreset the step after ``terminated``/``truncated``
ignores its action and returns the reset observation with reward 0: that step is
marked ``valid = False`` and counts toward no episode.

With a recurrent policy (``memory``: core/policy.py's Policy), the rollout carries the
envs' core state before its first step, and an env's state is forgotten after every
step that is not a transition: its next observation starts an episode (the reset
after an episode end, or after an env error). The learner restarts the state at the
same steps when it unrolls (core/models ActorCritic.unroll), from the same flags.

An env that raises in ``step`` (or in the reset inside it) costs the episodes in
progress, not the actor: the vector env is reset, the failed step is marked invalid,
the step before it is marked truncated (so its value is bootstrapped, not carried
through the reset, and its episode is reported as a truncated one), and ``EnvFailure``
is raised only after ``max_failures`` failing rollouts in a row. (When the first step
of a rollout fails there is no step before it in this rollout to mark: the episodes
running are lost, ``episodes_lost``, and the learner counts them as ``episodes_cut``.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from protocol.rollout import Obs, Rollout, wire_obs
from protocol.spec import RunSpec

# act(obs [N, *obs_shape] or a Dict's {key: [N, *shape]}) -> (actions [N] or [N, *act_shape], logp [N])
ActFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Memory(Protocol):
    """A recurrent policy's state per env, as the collector sees it (core.policy.Policy)."""

    def memory(self, n: int) -> np.ndarray: ...  # [N, S] before the next step
    def forget(self, restarting: np.ndarray | None = None) -> None: ...


def _put(rows: Obs, t: int, obs: Obs) -> None:
    """Row t of a rollout's observations (each key's, for a Dict) = one step's."""
    if isinstance(rows, dict):
        for key, value in obs.items():
            rows[key][t] = value
    else:
        rows[t] = obs


class EnvFailure(RuntimeError):
    """The environment kept raising; the actor cannot make progress."""


class RolloutCollector:
    def __init__(
        self,
        envs,
        spec: RunSpec,
        *,
        seed: int | None = None,
        max_failures: int = 5,
        on_env_error: Callable[[str, BaseException], None] | None = None,
        to_env: Callable[[np.ndarray], np.ndarray] | None = None,
        memory: Memory | None = None,
    ) -> None:
        self.envs = envs
        self.memory = memory
        self.spec = spec
        self.n = envs.num_envs
        self.to_env = to_env if to_env is not None else (lambda a: a)
        self.max_failures = max_failures
        self.on_env_error = on_env_error
        self.env_errors = 0  # env errors so far: each recovery reseeds differently
        self._failures_in_a_row = 0
        self._seed = seed
        self._reset(seed)

    def _reset(self, seed: int | None) -> None:
        obs, _ = self.envs.reset(seed=seed)
        if self.memory is not None:
            self.memory.forget()  # every env starts an episode
        self.obs = wire_obs(self.spec, obs)  # [N, *obs], or a Dict's {key: [N, *shape]}
        self.autoreset = np.zeros(self.n, dtype=bool)  # next step is an autoreset step
        self.ep_return = np.zeros(self.n, dtype=np.float64)
        self.ep_len = np.zeros(self.n, dtype=np.int64)

    def _recover(self, where: str, exc: BaseException) -> None:
        self.env_errors += 1
        if self.on_env_error is not None:
            self.on_env_error(where, exc)
        for attempt in range(self.max_failures):
            try:
                # A fresh seed: replaying the seed that led here may raise again.
                seed = (
                    None if self._seed is None else self._seed + 7919 * (self.env_errors + attempt)
                )
                self._reset(seed)
                return
            except Exception as reset_exc:  # noqa: BLE001 - any env error is the env's
                self.env_errors += 1
                if self.on_env_error is not None:
                    self.on_env_error("reset", reset_exc)
        raise EnvFailure(f"environment reset failed {self.max_failures} times in a row") from exc

    def collect(self, act: ActFn) -> Rollout:
        # Fresh arrays every rollout: the previous ones may still be in flight
        # (ZeroMQ sends large frames without copying).
        r = Rollout.allocate(self.spec, self.n)
        t_len = r.num_steps
        ep_returns: list[np.ndarray] = []
        ep_lengths: list[np.ndarray] = []
        failed = False
        if self.memory is not None:
            r.core_state = self.memory.memory(self.n)  # [N, S] before obs[0]
        for t in range(t_len):
            _put(r.obs, t, self.obs)
            a, lp = act(self.obs)
            r.actions[t] = a
            r.logp[t] = lp
            r.valid[t] = ~self.autoreset
            try:
                next_obs, rew, term, trunc, _ = self.envs.step(self.to_env(a))
            except Exception as exc:  # noqa: BLE001 - any env error is the env's
                failed = True
                r.valid[t] = False
                if t > 0:
                    # The episodes still running end at the last good step, truncated
                    # (bootstrapped, not carried through the reset), and are reported
                    # as such: the learner derives exactly these from the flags.
                    cut = r.valid[t - 1] & ~r.terminated[t - 1] & ~r.truncated[t - 1]
                    r.truncated[t - 1] |= cut
                    if cut.any():
                        ep_returns.append(self.ep_return[cut].copy())
                        ep_lengths.append(self.ep_len[cut].copy())
                        self.ep_return[cut] = 0.0
                        self.ep_len[cut] = 0
                self._recover("step", exc)  # forgets every env's state
                continue
            step_valid = r.valid[t]
            r.rewards[t] = np.where(step_valid, rew, 0.0)
            r.terminated[t] = term & step_valid
            r.truncated[t] = trunc & step_valid
            self.ep_return += r.rewards[t]
            self.ep_len += step_valid
            done = r.terminated[t] | r.truncated[t]
            if done.any():
                ep_returns.append(self.ep_return[done].copy())
                ep_lengths.append(self.ep_len[done].copy())
                self.ep_return[done] = 0.0
                self.ep_len[done] = 0
            self.autoreset = done
            if self.memory is not None:
                self.memory.forget(~step_valid)  # their next observation is a reset's
            self.obs = wire_obs(self.spec, next_obs)
        _put(r.obs, t_len, self.obs)
        self._failures_in_a_row = self._failures_in_a_row + 1 if failed else 0
        if self._failures_in_a_row >= self.max_failures:
            raise EnvFailure(f"environment raised in {self._failures_in_a_row} rollouts in a row")
        if ep_returns:
            r.ep_returns = np.concatenate(ep_returns)
            r.ep_lengths = np.concatenate(ep_lengths)
        return r
