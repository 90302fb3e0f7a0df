"""The recurrent core (--core lstm|gru): its unroll, the state an actor carries and sends,
the learner's reproduction of the actor's log-probs, the wire checks, and PPO's
minibatches of whole columns. Learning through real processes is in test_learning.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core import algos
from core.acting import build_acting
from core.algos.ppo import minibatches
from core.batch import Batch
from core.evaluation import play
from core.models import ActorCritic, ModelConfig, weights_to_arrays
from core.models.memory import RecurrentCore
from learner.config import LearnerConfig
from learner.spec import build_spec
from protocol import decode, encode
from protocol.checks import InvalidMessage, check_experience
from protocol.messages import Experience
from protocol.rollout import Rollout
from tests.fresh_acting import collect, learner_logp

CPU = torch.device("cpu")


def recurrent_spec(core: str, env: str = "zmq_a3c/CartPoleNoVel-v1", **flags):
    return build_spec(LearnerConfig(env=env, algo="impala", core=core, envs=4, **flags))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("restarts", [0.01, 0.3], ids=["segments", "cells"])
def test_an_unroll_with_resets_is_stepping_one_step_at_a_time(kind, restarts):
    """The fused unroll, cut into segments at resets (or, where most steps restart some
    env, the cell kernel step by step), gives what stepping the core once per step
    does, zeroing an env's state before each step that starts its episode."""
    torch.manual_seed(0)
    core = RecurrentCore(kind, in_dim=5, size=7)
    t, n = 12, 6
    x = torch.randn(t, n, 5)
    state = torch.randn(n, core.state_size)
    first = torch.rand(t, n) < restarts  # [T, N]
    first[0] = False
    first[4] = True  # a step where every env restarts
    with torch.no_grad():
        y, final = core(x, state, first)
        s, ys = state.clone(), []
        for i in range(t):
            s = s * (~first[i]).float().unsqueeze(1)
            out, s = core(x[i : i + 1], s)
            ys.append(out[0])
    torch.testing.assert_close(y, torch.stack(ys), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(final, s, atol=1e-6, rtol=1e-5)
    assert core.state_size == (14 if kind == "lstm" else 7)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_run_spec_says_how_much_state_a_rollout_carries(kind):
    """The MLP gives the critic its own trunk, so its own core: two states per env; the
    CNN's trunk is shared: one."""
    per_core = {"lstm": 128, "gru": 64}[kind]  # 64 units, the MLP's width
    spec = recurrent_spec(kind)
    assert spec.model["core"] == kind and spec.core_state_size == 2 * per_core
    model = ActorCritic(ModelConfig.from_spec(spec))
    assert model.core_state_size == spec.core_state_size and model.value_core is not None
    sized = recurrent_spec(kind, core_size=16)
    assert sized.core_state_size == 2 * per_core // 4
    image = dataclasses.replace(
        spec, obs_shape=(4, 84, 84), obs_dtype="|u1", model={**spec.model, "encoder": "cnn"}
    )
    cnn = ModelConfig.from_spec(image)
    assert cnn.core_state_size == {"lstm": 1024, "gru": 512}[kind]
    assert ActorCritic(cnn).value_core is None
    feed_forward = build_spec(LearnerConfig(env="CartPole-v1", algo="impala"))
    assert feed_forward.core_state_size == 0 and "core" not in feed_forward.model


def rollout_logp(model, rollout) -> torch.Tensor:
    return learner_logp(model, Batch.from_rollouts([rollout], CPU))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_learner_reproduces_the_actors_log_probs(kind):
    """Unrolled from the state each rollout carries, with restarts where episodes end,
    the learner's policy gives the behaviour log-probs the actor sent, across rollout
    boundaries and autoresets: fresh data is on-policy for a recurrent network too."""
    spec = recurrent_spec(kind, rollout_len=40)
    model, rollouts = collect(spec, rollouts=4)
    assert sum(int((~r.valid).sum()) for r in rollouts) >= 8  # episodes ended inside
    assert np.abs(rollouts[0].core_state).max() == 0.0  # the envs' first episodes
    for r in rollouts:
        assert r.core_state.shape == (4, spec.core_state_size)
        lp = rollout_logp(model, r)
        valid = torch.from_numpy(r.valid)
        torch.testing.assert_close(lp[valid], torch.from_numpy(r.logp)[valid], atol=1e-5, rtol=0)
    assert all(np.abs(r.core_state).max() > 0 for r in rollouts[1:])


def test_the_state_carries_across_rollouts_and_restarts_with_episodes():
    """A rollout starts from the state the previous one left, stepped by the network
    itself, with the state of an env whose last step was a reset at zero."""
    spec = recurrent_spec("lstm", rollout_len=20)
    model, rollouts = collect(spec, rollouts=5)
    restarted = 0
    for before, after in zip(rollouts, rollouts[1:], strict=False):
        state = torch.from_numpy(before.core_state)
        with torch.no_grad():
            for t in range(before.num_steps):
                _, state = model.step(torch.from_numpy(before.obs[t]), state)
                state[torch.from_numpy(~before.valid[t])] = 0.0
        np.testing.assert_allclose(after.core_state, state.numpy(), atol=1e-5)
        restarted += int((~before.valid[-1]).sum())
        assert (after.core_state[~before.valid[-1]] == 0).all()
    assert restarted or any((r.core_state == 0).all(axis=1).any() for r in rollouts[1:])


def test_an_env_error_restarts_every_envs_state(monkeypatch):
    """An env that raises resets the vector env: every env's state restarts with it,
    and the learner, reading the same flags, restarts them at the same step."""
    import tests.faulty_env  # noqa: F401 - registers the env

    monkeypatch.setenv("FAULTY_P_STEP", "0.004")
    spec = recurrent_spec("gru", env="tests.faulty_env:FaultyCartPole-v0", rollout_len=32)
    model, rollouts = collect(spec, rollouts=4, seed=3)
    failed = [r for r in rollouts if (~r.valid).all(axis=1).any()]
    assert failed, "no step failed: raise FAULTY_P_STEP"
    for r in rollouts:
        valid = torch.from_numpy(r.valid)
        lp = rollout_logp(model, r)
        torch.testing.assert_close(lp[valid], torch.from_numpy(r.logp)[valid], atol=1e-5, rtol=0)


def test_the_core_state_crosses_the_wire_and_is_checked():
    spec = recurrent_spec("lstm", rollout_len=8)
    _, (rollout,) = collect(spec, rollouts=1)
    rollout.core_state[:] = np.linspace(-1, 1, rollout.core_state.size).reshape(
        rollout.core_state.shape
    )
    msg = Experience(actor_id="a", arrays=rollout.wire_arrays(spec))
    back = decode(encode(msg))
    assert check_experience(back, spec, 4) == rollout.transitions
    np.testing.assert_array_equal(Rollout.from_arrays(back.arrays).core_state, rollout.core_state)
    arrays = rollout.wire_arrays(spec)

    def refused(change: dict, reason: str, on=spec) -> None:
        bad = {k: v for k, v in {**arrays, **change}.items() if v is not None}
        with pytest.raises(InvalidMessage) as err:
            check_experience(Experience(actor_id="a", arrays=bad), on, 4)
        assert err.value.reason == reason

    state = rollout.core_state
    refused({"core_state": None}, "missing_array")
    refused({"core_state": state[:3]}, "bad_shape")
    refused({"core_state": state[:, :-1]}, "bad_shape")
    refused({"core_state": state.astype(np.float64)}, "bad_dtype")
    refused({"core_state": np.where(state > 0.5, np.nan, state).astype(np.float32)}, "not_finite")
    refused({"core_state": (state * 1e7).astype(np.float32)}, "out_of_range")
    feed_forward = dataclasses.replace(spec, model={"encoder": "mlp"}, core_state_size=0)
    refused({}, "unexpected_array", on=feed_forward)


def test_an_actor_refuses_a_spec_whose_state_size_disagrees_with_its_model():
    spec = recurrent_spec("gru")
    with pytest.raises(ValueError, match="recurrent state"):
        build_acting(
            dataclasses.replace(spec, core_state_size=spec.core_state_size + 1),
            num_envs=2,
            seed=0,
            temperature=1.0,
        )


def test_ppo_minibatches_of_a_recurrent_batch_are_whole_columns_with_their_state():
    """Even below a column's size: a recurrent network cannot be evaluated on steps
    torn from the steps before them. Every column once per epoch, with its own state."""
    spec = recurrent_spec("lstm", rollout_len=10)
    _, rollouts = collect(spec, rollouts=2)
    batch = Batch.from_rollouts(rollouts, CPU)  # 8 columns
    ppo = algos.get("ppo")
    cfg = ppo.make_config({"minibatch_size": 4, "epochs": 2})
    targets = {"advantages": torch.arange(10 * 8.0).reshape(10, 8)}
    gen = torch.Generator().manual_seed(0)
    seen = []
    for mb, mb_targets in minibatches(batch, targets, cfg, gen):
        assert mb.valid.shape == (10, 1) and mb.core_state.shape == (1, spec.core_state_size)
        col = int(mb_targets["advantages"][0, 0])  # column index, from the targets' layout
        torch.testing.assert_close(mb.core_state[0], batch.core_state[col])
        torch.testing.assert_close(mb.obs[:, 0], batch.obs[:, col])
        seen.append(col)
    assert sorted(seen) == sorted(list(range(8)) * 2)
    with pytest.raises(ValueError, match="whole env columns"):
        batch.steps_at(torch.tensor([0, 1]))


@pytest.mark.parametrize("deterministic", [False, True])
def test_evaluation_plays_a_recurrent_policy(deterministic):
    """Evaluation and --confirm-episodes play the policy with its memory, new for each
    episode (side by side, and one after another as for video)."""
    spec = recurrent_spec("gru")
    weights = weights_to_arrays(ActorCritic(ModelConfig.from_spec(spec)))
    played = play(spec, weights, episodes=6, seed=2, deterministic=deterministic)
    assert played.complete and len(played.returns) == 6
    frames: list[int] = []
    one_by_one = play(
        spec,
        weights,
        episodes=3,
        seed=2,
        deterministic=deterministic,
        on_frame=lambda i, f: frames.append(i),
        record_episodes=3,
    )
    assert one_by_one.complete and len(one_by_one.returns) == 3
    assert len(frames) == sum(one_by_one.lengths) + 3


def test_a_feed_forward_network_refuses_to_be_stepped_as_if_recurrent_and_back():
    spec = recurrent_spec("lstm")
    model = ActorCritic(ModelConfig.from_spec(spec))
    with pytest.raises(TypeError, match="unroll"):
        model(torch.zeros(1, 2))
    batch = Batch.from_rollouts(collect(spec, rollouts=1)[1], CPU)
    with pytest.raises(ValueError, match="core_state"):
        model.unroll(dataclasses.replace(batch, core_state=None))
