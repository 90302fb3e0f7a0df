"""The A2C loss's traced returns (--trace-clip): V-trace with lambda against a slow
reference written from its definition (the sum, not the recursion), equal to GAE on
the behaviour policy's own data, equal to V-trace's targets at lambda 1, and the
loss's use of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.algos.a2c import A2CConfig, a2c_loss
from core.algos.returns import advantages_and_returns
from core.algos.vtrace import vtrace_targets
from core.batch import Batch
from tests.test_loss import make_batch, make_model
from tests.test_vtrace import N, T, random_rollout


def reference(rewards, values, log_ratio, terminated, truncated, valid, gamma, lam, rho_bar, c_bar):
    """v_s = V(x_s) + sum_t gamma^(t-s) (lam^(t-s) c_s ... c_{t-1}) rho_t delta_t over the
    episode's steps inside the rollout; the advantage of s is delta_s + gamma * lam *
    (v_{s+1} - V(x_{s+1})), nothing past an episode's end or the rollout's end."""
    ratio = np.exp(log_ratio.astype(np.float64))
    rho, c = np.minimum(rho_bar, ratio), np.minimum(c_bar, ratio)
    vs = np.zeros((T, N))
    adv = np.zeros((T, N))

    def delta(t, n):
        next_value = 0.0 if terminated[t, n] else float(values[t + 1, n])
        return rewards[t, n] + gamma * next_value - values[t, n]

    for n in range(N):
        for s in range(T):
            if not valid[s, n]:
                continue
            total, trace = 0.0, 1.0
            for t in range(s, T):
                total += gamma ** (t - s) * trace * rho[t, n] * delta(t, n)
                if terminated[t, n] or truncated[t, n]:
                    break
                trace *= lam * c[t, n]
            vs[s, n] = values[s, n] + total
    for n in range(N):
        for s in range(T):
            if not valid[s, n]:
                continue
            ended = terminated[s, n] or truncated[s, n] or s == T - 1
            tail = 0.0 if ended else vs[s + 1, n] - values[s + 1, n]
            adv[s, n] = delta(s, n) + gamma * lam * tail
    return adv, vs


def traced(rewards, values, log_ratio, terminated, truncated, valid, gamma, lam, rho_bar, c_bar):
    t = torch.from_numpy
    return advantages_and_returns(
        t(rewards),
        t(values),
        t(terminated),
        t(truncated),
        t(valid),
        gamma,
        lam,
        log_ratio=t(log_ratio),
        rho_bar=rho_bar,
        c_bar=c_bar,
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
@pytest.mark.parametrize("rho_bar,c_bar", [(1.0, 1.0), (2.0, 0.5), (0.5, 1.5)])
def test_traced_returns_match_the_sum_written_from_the_definition(seed, lam, rho_bar, c_bar):
    data = random_rollout(seed)
    rewards, values, log_ratio, terminated, truncated, valid = data
    assert log_ratio.min() < -0.5 and log_ratio.max() > 0.5  # traces are cut and not
    want_adv, want_vs = reference(*data, 0.99, lam, rho_bar, c_bar)
    adv, returns = traced(*data, 0.99, lam, rho_bar, c_bar)
    np.testing.assert_allclose(adv.numpy(), want_adv, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(returns.numpy(), want_vs * valid, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lam", [0.0, 0.9, 1.0])
def test_on_the_behaviour_policys_own_data_they_are_gae_to_the_bit(seed, lam):
    rewards, values, _, terminated, truncated, valid = random_rollout(seed)
    t = torch.from_numpy
    args = (t(rewards), t(values), t(terminated), t(truncated), t(valid), 0.99, lam)
    gae_adv, gae_ret = advantages_and_returns(*args)
    adv, ret = advantages_and_returns(*args, log_ratio=torch.zeros(T, N), rho_bar=1.0, c_bar=1.0)
    assert torch.equal(adv, gae_adv) and torch.equal(ret, gae_ret)


@pytest.mark.parametrize("seed", range(3))
def test_at_lambda_one_the_returns_are_impalas_v_trace_targets(seed):
    data = random_rollout(seed)
    rewards, values, log_ratio, terminated, truncated, valid = map(torch.from_numpy, data)
    vs, _ = vtrace_targets(values, log_ratio, rewards, terminated, truncated, valid, 0.99, 1.0, 1.0)
    _, returns = traced(*data, 0.99, 1.0, 1.0, 1.0)
    torch.testing.assert_close(returns, vs, rtol=1e-5, atol=1e-5)


def test_a_tail_the_policy_has_turned_from_does_not_reach_back():
    """One env, three steps, reward only at the last; the policy now all but refuses the
    middle step's action: GAE still credits the first step with the last reward,
    the traced advantage does not (and the uncut trace passes it on)."""
    rewards = np.array([[0.0], [0.0], [1.0]], np.float32)
    values = np.zeros((4, 1), np.float32)
    flags = np.zeros((3, 1), bool)
    valid = np.ones((3, 1), bool)
    cut = np.array([[0.0], [-20.0], [0.0]], np.float32)
    adv, _ = traced(rewards, values, cut, flags, flags, valid, 1.0, 1.0, 1.0, 1.0)
    assert abs(float(adv[0, 0])) < 1e-6 and float(adv[2, 0]) == 1.0
    kept, _ = traced(rewards, values, np.zeros_like(cut), flags, flags, valid, 1.0, 1.0, 1.0, 1.0)
    assert float(kept[0, 0]) == 1.0


def test_trace_clip_needs_the_importance_weights():
    with pytest.raises(ValueError, match="--trace-clip needs --is-clip"):
        A2CConfig(is_clip=0.0, trace_clip=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        A2CConfig(trace_clip=-1.0)


def test_the_loss_uses_the_traced_returns():
    """On the behaviour policy's own log-probs the loss with --trace-clip is the untraced
    one to the bit; on stale data it differs."""
    model = make_model()
    tensors = make_batch(model)
    with torch.no_grad():
        out, _ = model.unroll(Batch(behaviour_logp=torch.zeros_like(tensors["rewards"]), **tensors))
        own = model.distribution(out[:-1]).log_prob(tensors["actions"])
    fresh = Batch(behaviour_logp=own, **tensors)
    assert torch.equal(
        a2c_loss(model, fresh, A2CConfig(trace_clip=1.0)).total,
        a2c_loss(model, fresh, A2CConfig()).total,
    )
    stale = Batch(
        behaviour_logp=own + torch.linspace(-1.5, 1.5, own.numel()).reshape(own.shape), **tensors
    )
    assert not torch.allclose(
        a2c_loss(model, stale, A2CConfig(trace_clip=1.0)).total,
        a2c_loss(model, stale, A2CConfig()).total,
    )
