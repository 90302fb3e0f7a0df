"""An actor's envs in groups stepped in turn (core/collector.py): every column of the
rollout belongs to its own env and step, whatever order the groups are stepped and
received in, across rollout boundaries and autoresets; an env error costs only its
group's episodes; a recurrent policy keeps each group's state in its own rows.

Each check replays the rollouts' own actions on fresh envs built and seeded as the
collector's groups are, step by step, with a plain loop written here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.acting import build_acting
from core.batch import Batch
from core.collector import EnvFailure, RolloutCollector, split
from core.envs import make_vec_env
from core.models import ActorCritic, ModelConfig, weights_to_arrays
from learner.config import LearnerConfig
from learner.spec import build_spec
from protocol.checks import check_steps
from protocol.rollout import PackedObs
from tests.fresh_acting import learner_logp


def random_act(seed: int):
    rng = np.random.default_rng(seed)

    def act(obs, rows: slice):
        n = rows.stop - rows.start
        return rng.integers(0, 3, n).astype(np.int64), np.zeros(n, np.float32)

    return act


def replay(spec, sizes: list[int], seed: int, rollouts: list, env_kwargs=None) -> None:
    """Step fresh groups with the rollouts' actions; every array must match."""
    start = 0
    for size in sizes:
        cols = slice(start, start + size)
        envs = make_vec_env(spec.env_id, size, env_kwargs or spec.env_kwargs, spec.env_family)
        try:
            obs, _ = envs.reset(seed=seed + start)
            autoreset = np.zeros(size, bool)
            for r in rollouts:
                r_obs = r.obs.unpack() if isinstance(r.obs, PackedObs) else r.obs
                for t in range(r.num_steps):
                    np.testing.assert_array_equal(r_obs[t, cols], obs, err_msg=f"obs t={t}")
                    np.testing.assert_array_equal(r.valid[t, cols], ~autoreset)
                    obs, rew, term, trunc, _ = envs.step(r.actions[t, cols])
                    valid = ~autoreset
                    np.testing.assert_array_equal(r.rewards[t, cols], np.where(valid, rew, 0))
                    np.testing.assert_array_equal(r.terminated[t, cols], term & valid)
                    np.testing.assert_array_equal(r.truncated[t, cols], trunc & valid)
                    autoreset = (term | trunc) & valid
                np.testing.assert_array_equal(r_obs[-1, cols], obs)
        finally:
            envs.close()
        start += size


@pytest.mark.parametrize("sizes", [[4, 4], [3, 3, 2]], ids=["two", "three-uneven"])
def test_grouped_rollouts_are_each_envs_own_steps(sizes):
    """Catch (episodes of 9 steps then the autoreset step): 3 rollouts of 12 steps, so
    episodes end inside rollouts and across their boundaries."""
    spec = build_spec(LearnerConfig(env="zmq_a3c/Catch-v0", algo="a2c", envs=8, rollout_len=12))
    envs = [make_vec_env(spec.env_id, n, {}, spec.env_family) for n in sizes]
    collector = RolloutCollector(envs, spec, seed=5)
    try:
        act = random_act(1)
        rollouts = [collector.collect(act) for _ in range(3)]
    finally:
        collector.close()
    assert sum(int((~r.valid).sum()) for r in rollouts) >= 8 * 3  # every env reset
    replay(spec, sizes, 5, rollouts)
    # The episodes claimed are the ones the flags end (the learner checks the same).
    ended = sum(int((r.terminated | r.truncated).sum()) for r in rollouts)
    assert sum(len(r.ep_returns) for r in rollouts) == ended


def test_ale_groups_emulate_in_turn_and_each_column_is_its_own_game():
    """ale-py's vector envs step in their own threads between send and recv; two
    groups' rollouts replayed on fresh emulators (sticky actions off, seeded) match
    frame for frame."""
    kwargs = {"repeat_action_probability": 0.0}
    spec = build_spec(
        LearnerConfig(
            env="ALE/Pong-v5", algo="appo", envs=4, rollout_len=16, env_kwargs=json.dumps(kwargs)
        )
    )
    acting = build_acting(spec, num_envs=4, seed=9, temperature=1.0)
    try:
        assert [e.num_envs for e in acting.envs] == [2, 2]  # the ALE family's default
        assert all(g.steps_itself for g in acting.collector.groups)
        rollouts = [acting.collect() for _ in range(2)]
    finally:
        acting.close()
    replay(spec, [2, 2], 9, rollouts, kwargs)


def test_an_env_error_costs_only_its_groups_episodes(monkeypatch):
    import tests.faulty_env  # noqa: F401 - registers the env

    monkeypatch.setenv("FAULTY_P_STEP", "0.01")
    spec = build_spec(
        LearnerConfig(env="tests.faulty_env:FaultyCartPole-v0", algo="a2c", envs=6, rollout_len=30)
    )
    envs = [make_vec_env(spec.env_id, 3, {}, spec.env_family) for _ in range(2)]
    errors: list[str] = []
    collector = RolloutCollector(envs, spec, seed=2, on_env_error=lambda w, e: errors.append(w))
    try:
        rollouts = [collector.collect(random_act(3)) for _ in range(3)]
    finally:
        collector.close()
    assert errors, "no step failed: raise FAULTY_P_STEP"
    # A failed step leaves its whole group invalid at that step while the other group
    # steps on (a reset of everything would make both invalid at once).
    alone = [
        t
        for r in rollouts
        for t in range(r.num_steps)
        if (~r.valid[t, :3]).all() != (~r.valid[t, 3:]).all()
    ]
    assert alone, "a failure reset its own group only"
    for r in rollouts:  # and the rollouts are still ones any env could produce
        check_steps(r.arrays())


def test_envs_that_cannot_reset_at_start_up_end_in_env_failure_after_the_retries(monkeypatch):
    # The first reset is retried as a later one is: an actor whose envs never reset
    # exits 4 (env_failed) with its env_error lines, not with a traceback (exit 1).
    import tests.faulty_env  # noqa: F401 - registers the env

    monkeypatch.setenv("FAULTY_P_RESET", "1.0")
    spec = build_spec(
        LearnerConfig(env="tests.faulty_env:FaultyCartPole-v0", algo="a2c", envs=2, rollout_len=4)
    )
    errors: list[str] = []
    with pytest.raises(EnvFailure, match="reset failed 3 times"):
        build_acting(
            spec, num_envs=2, seed=1, temperature=1.0, max_env_failures=3,
            on_env_error=lambda what, exc: errors.append(what),
        )  # fmt: skip
    assert errors == ["reset"] * 4  # the first reset and its three retries


def test_a_recurrent_policy_keeps_each_groups_state_in_its_rows():
    """Catch in 2 groups with a GRU: the learner's unroll over the whole [T, 8] batch
    gives the log-probs the actor sent group by group."""
    spec = build_spec(
        LearnerConfig(env="zmq_a3c/Catch-v0", algo="a2c", envs=8, rollout_len=14, core="gru")
    )
    acting = build_acting(spec, num_envs=8, seed=4, temperature=1.0, env_groups=2)
    torch.manual_seed(4)
    model = ActorCritic(ModelConfig.from_spec(spec))
    acting.policy.load(weights_to_arrays(model), 1)
    try:
        assert [e.num_envs for e in acting.envs] == split(8, 2) == [4, 4]
        rollouts = [acting.collect() for _ in range(3)]
    finally:
        acting.close()
    for r in rollouts:
        batch = Batch.from_rollouts([r], torch.device("cpu"))
        lp = learner_logp(model, batch)
        valid = batch.valid
        torch.testing.assert_close(lp[valid], batch.behaviour_logp[valid], atol=1e-5, rtol=0)
    assert np.abs(rollouts[-1].core_state).max() > 0
