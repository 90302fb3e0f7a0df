"""Rollout collection from gymnasium vector envs: no sockets, no torch.

``RolloutCollector.collect(act)`` steps the envs T times with actions from ``act`` and
returns one ``Rollout`` (protocol/rollout.py, allocated from the run spec). It keeps the
state that spans rollouts: the current observation, which envs autoreset on their next
step, and the running return and length of each episode.

The N envs may be split into groups, each its own vector env owning a block of columns
(``envs`` a list). Groups take turns, double-buffered as in Sample Factory: a group's
actions are sent, and while an env that steps in threads of its own (ale-py's
``send``/``recv``) emulates them, the policy computes the next group's actions; then
the first group's step is received and recorded. Every column's observation, action,
log-prob, reward and flags still belong to its own env and step, so the rollout is the
one a single vector env would give (tests/test_env_groups.py); an env without
``send``/``recv`` simply steps inside ``recv``.

Under gymnasium's next-step autoreset the step after ``terminated``/``truncated``
ignores its action and returns the reset observation with reward 0: that step is
marked ``valid = False`` and counts toward no episode.

With a recurrent policy (``memory``: core/policy.py's Policy), the rollout carries the
envs' core state before its first step, and an env's state is forgotten after every
step that is not a transition: its next observation starts an episode (the reset
after an episode end, or after an env error). The learner restarts the state at the
same steps when it unrolls (core/models ActorCritic.unroll), from the same flags.

An env that raises in ``step`` (or in the reset inside it) costs the episodes in
progress of its group, not the actor: that vector env is reset, the failed step is marked invalid,
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

# act(obs of the envs ``rows`` [n, *obs_shape] (a Dict's {key: [n, *shape]}), rows: a slice
# of the N envs) -> (actions [n] or [n, *act_shape], logp [n])
ActFn = Callable[[Obs, slice], tuple[np.ndarray, np.ndarray]]


class Memory(Protocol):
    """A recurrent policy's state per env, as the collector sees it (core.policy.Policy)."""

    def memory(self, n: int) -> np.ndarray: ...  # [N, S] before the next step
    def forget(self, restarting: np.ndarray | None = None) -> None: ...


def _put(dst: Obs, index: tuple, obs: Obs) -> None:
    """``dst[index] = obs`` for an observation array or each key of a Dict's."""
    if isinstance(dst, dict):
        for key, value in obs.items():
            dst[key][index] = value
    else:
        dst[index] = obs


class EnvGroup:
    """One vector env stepping a block of the N envs, ``cols``. ``send`` starts a step:
    an env with ``send``/``recv`` of its own (ale-py's C++ vector env) steps in its
    threads meanwhile; any other steps inside ``recv``. An error in either comes out of
    ``recv``, where the collector handles env errors."""

    def __init__(self, envs, cols: slice) -> None:
        self.envs = envs
        self.cols = cols
        self.steps_itself = callable(getattr(envs, "send", None)) and callable(
            getattr(envs, "recv", None)
        )
        self._pending: object = None
        self.obs: Obs = None  # its envs' observations before their next step [n, ...]

    def send(self, actions: np.ndarray) -> None:
        if not self.steps_itself:
            self._pending = actions
            return
        try:
            self.envs.send(actions)
            self._pending = True
        except Exception as exc:  # noqa: BLE001 - raised where step errors are handled
            self._pending = exc

    def recv(self) -> tuple:
        pending, self._pending = self._pending, None
        if isinstance(pending, Exception):
            raise pending
        if pending is True:
            obs, rew, term, trunc, info = self.envs.recv()
            order = np.asarray(info.get("env_id", ())) if isinstance(info, dict) else ()
            if len(order) and (order != np.arange(len(order))).any():
                raise RuntimeError(f"the vector env answered envs {order.tolist()} out of order")
            return obs, rew, term, trunc, info
        return self.envs.step(pending)


def split(num_envs: int, groups: int) -> list[int]:
    """Group sizes for ``num_envs`` envs in ``groups`` groups, as even as can be."""
    groups = max(1, min(groups, num_envs))
    return [num_envs // groups + (g < num_envs % groups) for g in range(groups)]


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
        """``envs``: one vector env, or a list of them (groups, columns in order)."""
        env_list = list(envs) if isinstance(envs, list | tuple) else [envs]
        starts = np.cumsum([0] + [e.num_envs for e in env_list])
        self.groups = [
            EnvGroup(e, slice(int(a), int(b)))
            for e, a, b in zip(env_list, starts[:-1], starts[1:], strict=True)
        ]
        self.memory = memory
        self.spec = spec
        self.n = int(starts[-1])
        self.to_env = to_env if to_env is not None else (lambda a: a)
        self.max_failures = max_failures
        self.on_env_error = on_env_error
        self.env_errors = 0  # env errors so far: each recovery reseeds differently
        self._failures_in_a_row = 0
        self._seed = seed
        self.autoreset = np.zeros(self.n, dtype=bool)  # next step is an autoreset step
        self.ep_return = np.zeros(self.n, dtype=np.float64)
        self.ep_len = np.zeros(self.n, dtype=np.int64)
        for group in self.groups:
            try:
                self._reset(group, seed)
            except Exception as exc:  # noqa: BLE001 - any env error is the env's
                # The first reset fails as later ones may: retried the same way, so an
                # actor whose envs never reset exits with EnvFailure, not a traceback.
                self._recover(group, exc, "reset")

    @property
    def envs(self) -> list:
        """The vector envs, one per group."""
        return [g.envs for g in self.groups]

    def close(self) -> None:
        for group in self.groups:
            group.envs.close()

    def _reset(self, group: EnvGroup, seed: int | None) -> None:
        """Reset one group's envs: env i of the N is seeded ``seed + i`` wherever its
        group starts (a vector env seeds its envs seed, seed + 1, ...)."""
        cols = group.cols
        obs, _ = group.envs.reset(seed=None if seed is None else seed + cols.start)
        group.obs = wire_obs(self.spec, obs)  # [n, *obs], or a Dict's {key: [n, *shape]}
        if self.memory is not None:  # its envs start episodes
            self.memory.forget(_mask(self.n, cols))
        self.autoreset[cols] = False
        self.ep_return[cols] = 0.0
        self.ep_len[cols] = 0

    def _recover(self, group: EnvGroup, exc: BaseException, stage: str = "step") -> None:
        self.env_errors += 1
        if self.on_env_error is not None:
            self.on_env_error(stage, exc)
        for attempt in range(self.max_failures):
            try:
                # A fresh seed: replaying the seed that led here may raise again.
                seed = (
                    None if self._seed is None else self._seed + 7919 * (self.env_errors + attempt)
                )
                self._reset(group, seed)
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
        episodes: list[tuple[np.ndarray, np.ndarray]] = []  # (returns, lengths) as they end
        failed = False
        if self.memory is not None:
            r.core_state = self.memory.memory(self.n)  # [N, S] before obs[0]
        for group in self.groups:
            self._act(r, 0, group, act)
        for t in range(t_len):
            # Each group's step t is received while the groups after it emulate theirs;
            # then its step t + 1 is sent before the next group's step t is received.
            for group in self.groups:
                failed |= not self._finish(r, t, group, episodes)
                if t + 1 < t_len:
                    self._act(r, t + 1, group, act)
        for group in self.groups:
            _put(r.obs, (t_len, group.cols), group.obs)
        self._failures_in_a_row = self._failures_in_a_row + 1 if failed else 0
        if self._failures_in_a_row >= self.max_failures:
            raise EnvFailure(f"environment raised in {self._failures_in_a_row} rollouts in a row")
        if episodes:
            r.ep_returns = np.concatenate([e[0] for e in episodes])
            r.ep_lengths = np.concatenate([e[1] for e in episodes])
        return r

    def _act(self, r: Rollout, t: int, group: EnvGroup, act: ActFn) -> None:
        """Record the group's observations before step t, choose its actions, send them."""
        cols = group.cols
        obs = group.obs
        _put(r.obs, (t, cols), obs)
        a, lp = act(obs, cols)
        r.actions[t, cols] = a
        r.logp[t, cols] = lp
        r.valid[t, cols] = ~self.autoreset[cols]
        group.send(self.to_env(a))

    def _finish(self, r: Rollout, t: int, group: EnvGroup, episodes: list) -> bool:
        """Receive the group's step t and record it; False if its env raised."""
        cols = group.cols
        try:
            next_obs, rew, term, trunc, _ = group.recv()
        except Exception as exc:  # noqa: BLE001 - any env error is the env's
            r.valid[t, cols] = False
            if t > 0:
                # The episodes still running end at the last good step, truncated
                # (bootstrapped, not carried through the reset), and are reported
                # as such: the learner derives exactly these from the flags.
                cut = r.valid[t - 1, cols] & ~r.terminated[t - 1, cols] & ~r.truncated[t - 1, cols]
                r.truncated[t - 1, cols] |= cut
                self._end_episodes(cols, cut, episodes)
            self._recover(group, exc)  # forgets its envs' state
            return False
        step_valid = r.valid[t, cols]
        r.rewards[t, cols] = np.where(step_valid, rew, 0.0)
        r.terminated[t, cols] = term & step_valid
        r.truncated[t, cols] = trunc & step_valid
        self.ep_return[cols] += r.rewards[t, cols]
        self.ep_len[cols] += step_valid
        done = r.terminated[t, cols] | r.truncated[t, cols]
        self._end_episodes(cols, done, episodes)
        self.autoreset[cols] = done
        if self.memory is not None:  # their next observation is a reset's
            self.memory.forget(_mask(self.n, cols, ~step_valid))
        group.obs = wire_obs(self.spec, next_obs)
        return True

    def _end_episodes(self, cols: slice, ended: np.ndarray, episodes: list) -> None:
        if ended.any():
            ret, length = self.ep_return[cols], self.ep_len[cols]
            episodes.append((ret[ended].copy(), length[ended].copy()))
            ret[ended] = 0.0
            length[ended] = 0


def _mask(n: int, cols: slice, within: np.ndarray | None = None) -> np.ndarray:
    """[N] bool: the envs ``cols`` (those of them ``within`` says)."""
    out = np.zeros(n, dtype=bool)
    out[cols] = True if within is None else within
    return out
