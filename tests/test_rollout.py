"""RolloutCollector on tiny deterministic envs: the layout protocol/rollout.py defines
and the losses rely on."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from core.collector import EnvFailure, RolloutCollector
from core.models import ModelConfig
from core.policy import Policy
from learner.episodes import EpisodeChain, check_claims
from protocol.spec import RunSpec


def spec(t_len: int) -> RunSpec:
    return RunSpec(
        env_id="Counter",
        algo="a2c",
        num_envs=1,
        rollout_len=t_len,
        obs_shape=(2,),
        action_kind="discrete",
        action_n=2,
    )


class Counter(gym.Env):
    """obs = [steps taken in this episode, reset count]; reward = 1 + steps taken before
    this step; terminates after ``end`` steps when ``terminate``, else truncates then."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, end: int, terminate: bool, fail_at: tuple[int, ...] = ()) -> None:
        self.end, self.terminate, self.fail_at = end, terminate, fail_at
        self.t, self.resets, self.total_steps = 0, -1, 0

    def _obs(self):
        return np.array([self.t, self.resets], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.resets = 0, self.resets + 1
        return self._obs(), {}

    def step(self, action):
        self.total_steps += 1
        if self.total_steps in self.fail_at:
            raise RuntimeError("boom")
        reward = 1.0 + self.t
        self.t += 1
        done = self.t >= self.end
        return self._obs(), reward, done and self.terminate, done and not self.terminate, {}


def make(fns):
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP)


def zeros_policy(obs, rows=None):
    return np.zeros(len(obs), dtype=np.int64), np.full(len(obs), -0.69, dtype=np.float32)


def test_layout_with_termination_truncation_and_autoreset():
    envs = make([lambda: Counter(3, True), lambda: Counter(2, False)])
    col = RolloutCollector(envs, spec(5), seed=0)
    r = col.collect(zeros_policy)
    # env 0: steps 0,1,2 then terminated at t=2; t=3 is the autoreset step; t=4 is a new episode.
    assert r.valid[:, 0].tolist() == [True, True, True, False, True]
    assert r.terminated[:, 0].tolist() == [False, False, True, False, False]
    assert not r.truncated[:, 0].any()
    assert r.rewards[:, 0].tolist() == [1, 2, 3, 0, 1]
    # obs[t+1] after the terminal step is the final real observation, then the reset one.
    assert r.obs[3, 0].tolist() == [3, 0] and r.obs[4, 0].tolist() == [0, 1]
    # env 1: truncated at t=1 and t=4 (t=2 is the autoreset step).
    assert r.truncated[:, 1].tolist() == [False, True, False, False, True]
    assert r.valid[:, 1].tolist() == [True, True, False, True, True]
    assert r.obs[2, 1].tolist() == [2, 0], "final observation of the truncated episode"
    assert r.obs.shape == (6, 2, 2) and r.actions.shape == (5, 2)
    assert sorted(r.ep_returns.tolist()) == [3.0, 3.0, 6.0]
    assert sorted(r.ep_lengths.tolist()) == [2, 2, 3]
    assert r.transitions == 8


def test_state_carries_across_rollouts():
    envs = make([lambda: Counter(3, True)])
    col = RolloutCollector(envs, spec(3))
    first = col.collect(zeros_policy)
    assert first.terminated[2, 0] and len(first.ep_returns) == 1
    second = col.collect(zeros_policy)
    # The first step of the next rollout is the autoreset step.
    assert second.valid[:, 0].tolist() == [False, True, True]
    assert second.obs[0, 0].tolist() == [3, 0] and second.obs[1, 0].tolist() == [0, 1]
    assert first.obs is not second.obs, "fresh arrays per rollout (zero-copy sends)"


def test_env_error_costs_the_episode_not_the_actor():
    errors = []
    envs = make([lambda: Counter(100, True, fail_at=(3,))])
    col = RolloutCollector(envs, spec(6), seed=0, on_env_error=lambda w, e: errors.append(w))
    r = col.collect(zeros_policy)
    assert errors == ["step"]
    # Step t=2 failed: it is not a transition, and the step before it is cut (truncated)
    # so its value bootstraps from the observation before the failure.
    assert r.valid[:, 0].tolist() == [True, True, False, True, True, True]
    assert r.truncated[:, 0].tolist() == [False, True, False, False, False, False]
    assert r.obs[3, 0].tolist() == [0, 1], "the env was reset"
    # The cut episode is reported as the truncated episode the flags show, which is what
    # the learner derives from them (learner/episodes.py).
    assert r.ep_lengths.tolist() == [2] and col.env_errors == 1
    chain = EpisodeChain(1)
    derived = chain.observe(r.rewards, r.terminated, r.truncated, r.valid)
    assert derived.lengths.tolist() == [2] and derived.returns.tolist() == r.ep_returns.tolist()
    check_claims(derived, r.ep_returns, r.ep_lengths)


def test_env_error_on_a_rollouts_first_step_loses_the_running_episode():
    envs = make([lambda: Counter(100, True, fail_at=(4,))])
    col = RolloutCollector(envs, spec(3), seed=0)
    chain = EpisodeChain(1)
    for _ in range(2):
        r = col.collect(zeros_policy)
        derived = chain.observe(r.rewards, r.terminated, r.truncated, r.valid)
        check_claims(derived, r.ep_returns, r.ep_lengths)
    # The second rollout's first step (the env's 4th) failed: no step before it in this
    # rollout to mark, so the running episode is lost on both sides.
    assert r.valid[:, 0].tolist() == [False, True, True]
    assert col.env_errors == 1 and len(r.ep_returns) == 0
    assert derived.cut == 1 and derived.ended == 0


def test_env_that_keeps_failing_raises_env_failure():
    envs = make([lambda: Counter(100, True, fail_at=tuple(range(1, 1000)))])
    col = RolloutCollector(envs, spec(4), max_failures=3)
    with pytest.raises(EnvFailure):
        for _ in range(10):
            col.collect(zeros_policy)


def test_policy_sampling_and_never_loading_older_weights():
    cfg = ModelConfig(obs_shape=(2,), action_kind="discrete", action_n=2, hidden=(8,))
    pol = Policy(cfg, seed=3)
    obs = np.zeros((1000, 2), dtype=np.float32)
    a, logp = pol.act(obs)
    assert a.dtype == np.int64 and set(np.unique(a)) <= {0, 1} and logp.shape == (1000,)
    assert np.all(logp <= 0)
    # Near-uniform initial policy: both actions appear, log-probs near log(0.5).
    assert 350 < a.sum() < 650 and np.allclose(logp, np.log(0.5), atol=0.05)
    weights = {k: v.detach().numpy() * 0 for k, v in pol.model.state_dict().items()}
    assert pol.load(weights, 5) and pol.version == 5
    assert not pol.load(weights, 4) and pol.version == 5, "an older version is never loaded"
    assert not pol.load(weights, 5)
