"""V-trace against a slow reference written straight from the paper's equation 1 (the
sum, not the recursion), over random rollouts with terminations, truncations and
autoreset steps inside; the on-policy case; no gradient through the targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.algos.returns import advantages_and_returns
from core.algos.vtrace import VTraceConfig, impala_loss, vtrace_targets
from core.batch import Batch
from core.models import ModelConfig
from core.models.actor_critic import ActorCritic
from protocol.rollout import Rollout

T, N = 9, 6


def random_rollout(seed: int):
    """Flags as the collector writes them: an episode end at t, then an invalid
    autoreset step at t+1 (flags False there)."""
    rng = np.random.default_rng(seed)
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    valid = np.ones((T, N), bool)
    for n in range(N):
        for t in range(T):
            if not valid[t, n]:
                continue
            u = rng.random()
            if u < 0.15:
                terminated[t, n] = True
            elif u < 0.25:
                truncated[t, n] = True
            if (terminated[t, n] or truncated[t, n]) and t + 1 < T:
                valid[t + 1, n] = False
    rewards = (rng.standard_normal((T, N)) * valid).astype(np.float32)
    values = rng.standard_normal((T + 1, N)).astype(np.float32)
    log_ratio = (rng.standard_normal((T, N)) * 0.7).astype(np.float32)
    return rewards, values, log_ratio, terminated, truncated, valid


def reference(rewards, values, log_ratio, terminated, truncated, valid, gamma, rho_bar, c_bar):
    """Equation 1 as a sum, and the policy-gradient advantage of section 4.2, one
    (s, n) at a time. An episode's steps run from s to its end inside the rollout."""
    ratio = np.exp(log_ratio.astype(np.float64))
    rho, c = np.minimum(rho_bar, ratio), np.minimum(c_bar, ratio)
    vs = np.zeros((T, N))
    adv = np.zeros((T, N))

    def next_value(t, n):  # V(x_{t+1}) from t: 0 after a termination
        return 0.0 if terminated[t, n] else float(values[t + 1, n])

    for n in range(N):
        for s in range(T):
            if not valid[s, n]:
                continue
            total, trace = 0.0, 1.0
            for t in range(s, T):
                delta = rho[t, n] * (rewards[t, n] + gamma * next_value(t, n) - values[t, n])
                total += gamma ** (t - s) * trace * delta
                if terminated[t, n] or truncated[t, n]:
                    break
                trace *= c[t, n]
            vs[s, n] = values[s, n] + total
    for n in range(N):
        for s in range(T):
            if not valid[s, n]:
                continue
            if terminated[s, n]:
                v_next = 0.0
            elif truncated[s, n] or s == T - 1:
                v_next = float(values[s + 1, n])
            else:
                v_next = vs[s + 1, n]
            adv[s, n] = rho[s, n] * (rewards[s, n] + gamma * v_next - values[s, n])
    return vs, adv


def run(arrays, gamma, rho_bar, c_bar):
    rewards, values, log_ratio, terminated, truncated, valid = (torch.from_numpy(a) for a in arrays)
    return vtrace_targets(
        values, log_ratio, rewards, terminated, truncated, valid, gamma, rho_bar, c_bar
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bars", [(1.0, 1.0), (0.7, 1.3), (5.0, 0.5)])
def test_vtrace_matches_equation_1(seed, bars):
    arrays = random_rollout(seed)
    vs, adv = run(arrays, 0.95, *bars)
    ref_vs, ref_adv = reference(*arrays, 0.95, *bars)
    np.testing.assert_allclose(vs.numpy(), ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv.numpy(), ref_adv, rtol=1e-5, atol=1e-5)


def test_the_random_rollouts_hold_every_kind_of_step():
    for seed in range(6):
        _, _, _, terminated, truncated, valid = random_rollout(seed)
        assert terminated.any() and truncated.any() and (~valid).any()


@pytest.mark.parametrize("bars", [(1.0, 1.0), (2.0, 3.0)])
def test_on_policy_vtrace_is_the_n_step_return(bars):
    """pi = mu: every ratio is 1, so rho = c = 1 for bars >= 1 and v_s is the n-step
    return bootstrapped at the episode's or the rollout's end: GAE's return at lambda 1."""
    rewards, values, _, terminated, truncated, valid = random_rollout(11)
    arrays = (rewards, values, np.zeros((T, N), np.float32), terminated, truncated, valid)
    vs, _ = run(arrays, 0.9, *bars)
    _, returns = advantages_and_returns(
        *(torch.from_numpy(a) for a in (rewards, values, terminated, truncated, valid)), 0.9, 1.0
    )
    torch.testing.assert_close(vs, returns, rtol=1e-5, atol=1e-5)


def test_targets_carry_no_gradient_and_the_loss_trains_both_heads():
    torch.manual_seed(0)
    model = ActorCritic(ModelConfig((3,), "discrete", 2))
    rewards, _, log_ratio, terminated, truncated, valid = random_rollout(5)
    rng = np.random.default_rng(0)
    r = Rollout(
        obs=rng.standard_normal((T + 1, N, 3)).astype(np.float32),
        actions=rng.integers(0, 2, (T, N)),
        logp=np.full((T, N), np.log(0.5), np.float32),
        rewards=rewards,
        terminated=terminated,
        truncated=truncated,
        valid=valid,
        ep_returns=np.zeros(0),
        ep_lengths=np.zeros(0, np.int64),
    )
    batch = Batch.from_rollouts([r], torch.device("cpu"))
    out, values = model(batch.obs)
    vs, adv = vtrace_targets(
        values, log_ratio=torch.zeros(T, N), rewards=batch.rewards,
        terminated=batch.terminated, truncated=batch.truncated, valid=batch.valid,
        gamma=0.99, rho_bar=1.0, c_bar=1.0,
    )  # fmt: skip
    assert not vs.requires_grad and not adv.requires_grad
    terms = impala_loss(model, batch, VTraceConfig())
    terms.total.backward()
    assert model.value_out.weight.grad.abs().sum() > 0
    assert model.policy_out.weight.grad.abs().sum() > 0


def test_bad_vtrace_settings_are_refused():
    with pytest.raises(ValueError):
        VTraceConfig(vtrace_rho_bar=0.0)
    with pytest.raises(ValueError):
        VTraceConfig(gamma=1.5)
