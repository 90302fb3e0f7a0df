"""core.loss against slow references written from the equations, plus analytic cases.

Conventions (see core/loss.py and gymnasium's next-step autoreset):
  * a terminated step has next value 0; a truncated step bootstraps from V(obs[t+1]),
    which is the final real observation of that episode;
  * the step after a finished episode is an autoreset step (valid False): not a
    transition, its advantage and return are 0 and nothing leaks across it;
  * a step that does not finish before the rollout ends bootstraps from V(obs[T]).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.algos.a2c import A2CConfig, a2c_loss
from core.algos.returns import advantages_and_returns
from core.batch import Batch
from core.models import ActorCritic, ModelConfig

# --- slow references, one python loop per (t, env) ---


def ref_nstep_returns(rewards, values, terminated, truncated, valid, gamma):
    """G_t = r_t + g r_{t+1} + ... up to the episode end or the rollout end, then
    + g^k * (0 if terminated, V(obs[t+k]) if truncated or cut by the rollout end)."""
    t_len, n_envs = rewards.shape
    out = np.zeros((t_len, n_envs))
    for n in range(n_envs):
        for t in range(t_len):
            if not valid[t, n]:
                continue
            g, discount = 0.0, 1.0
            for k in range(t, t_len):
                g += discount * rewards[k, n]
                discount *= gamma
                if terminated[k, n]:
                    break
                if truncated[k, n] or k == t_len - 1:
                    g += discount * values[k + 1, n]
                    break
            out[t, n] = g
    return out


def ref_gae(rewards, values, terminated, truncated, valid, gamma, lam):
    """A_t = sum_l (g lam)^l delta_{t+l} over the rest of the episode inside the
    rollout, delta_k = r_k + g V_next(k) - V(obs[k]), V_next = 0 after termination."""
    t_len, n_envs = rewards.shape
    adv = np.zeros((t_len, n_envs))
    for n in range(n_envs):
        for t in range(t_len):
            if not valid[t, n]:
                continue
            total, weight = 0.0, 1.0
            for k in range(t, t_len):
                next_value = 0.0 if terminated[k, n] else values[k + 1, n]
                delta = rewards[k, n] + gamma * next_value - values[k, n]
                total += weight * delta
                if terminated[k, n] or truncated[k, n]:
                    break
                weight *= gamma * lam
            adv[t, n] = total
    return adv


def random_rollout(t_len: int, n_envs: int, seed: int, p_done: float = 0.2):
    """Episodes as a next-step-autoreset vector env produces them, with garbage
    rewards on autoreset steps (they must not count)."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(t_len, n_envs))
    values = rng.normal(size=(t_len + 1, n_envs))
    terminated = np.zeros((t_len, n_envs), bool)
    truncated = np.zeros((t_len, n_envs), bool)
    valid = np.ones((t_len, n_envs), bool)
    for n in range(n_envs):
        # Env 0 starts with an autoreset step (the previous rollout ended an episode).
        needs_reset = n == 0 or rng.random() < 0.3
        for t in range(t_len):
            if needs_reset:
                valid[t, n] = False
                needs_reset = False
                continue
            u = rng.random()
            if n in (1, 2) and t == t_len - 2:
                u = 1.0  # so that the forced done at T-1 below is on a valid step
            terminated[t, n] = u < p_done / 2 or (n == 1 and t == t_len - 1)
            truncated[t, n] = p_done / 2 <= u < p_done or (n == 2 and t == t_len - 1)
            if u < 0.02:
                terminated[t, n] = truncated[t, n] = True  # both: termination wins
            needs_reset = bool(terminated[t, n] or truncated[t, n])
    return rewards, values, terminated, truncated, valid


def run_impl(rewards, values, terminated, truncated, valid, gamma, lam, dtype=torch.float64):
    adv, ret = advantages_and_returns(
        torch.tensor(rewards, dtype=dtype),
        torch.tensor(values, dtype=dtype),
        torch.tensor(terminated),
        torch.tensor(truncated),
        torch.tensor(valid),
        gamma,
        lam,
    )
    return adv.numpy(), ret.numpy()


@pytest.mark.parametrize("seed", range(8))
def test_random_rollouts_exercise_every_case(seed):
    # Guard for the generator: the comparisons below cover what they claim to.
    _, _, term, trunc, valid = random_rollout(16, 6, seed)
    assert not valid[0, 0] and term[-1, 1] and trunc[-1, 2]
    assert term[:-1].any() and trunc[:-1].any()
    assert (~valid[1:]).any()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("gamma", [0.99, 0.9, 1.0])
def test_lambda_one_is_nstep_return_minus_value(seed, gamma):
    r, v, term, trunc, valid = random_rollout(16, 6, seed)
    adv, ret = run_impl(r, v, term, trunc, valid, gamma, 1.0)
    want = ref_nstep_returns(r, v, term, trunc, valid, gamma)
    np.testing.assert_allclose(ret, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(adv, np.where(valid, want - v[:-1], 0.0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("lam", [0.95, 0.5, 0.0])
def test_gae_matches_reference(seed, lam):
    gamma = 0.97
    r, v, term, trunc, valid = random_rollout(16, 6, seed)
    adv, ret = run_impl(r, v, term, trunc, valid, gamma, lam)
    want = ref_gae(r, v, term, trunc, valid, gamma, lam)
    np.testing.assert_allclose(adv, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret, np.where(valid, want + v[:-1], 0.0), rtol=1e-10, atol=1e-10)


def test_the_two_references_agree_at_lambda_one():
    r, v, term, trunc, valid = random_rollout(20, 5, seed=42)
    nstep = ref_nstep_returns(r, v, term, trunc, valid, 0.9)
    gae = ref_gae(r, v, term, trunc, valid, 0.9, 1.0)
    np.testing.assert_allclose(gae, np.where(valid, nstep - v[:-1], 0.0), atol=1e-10)


def test_float32_close_to_float64():
    r, v, term, trunc, valid = random_rollout(64, 8, seed=3)
    adv32, ret32 = run_impl(r, v, term, trunc, valid, 0.99, 0.95, dtype=torch.float32)
    want = ref_gae(r, v, term, trunc, valid, 0.99, 0.95)
    assert adv32.dtype == np.float32
    np.testing.assert_allclose(adv32, want, rtol=1e-4, atol=1e-4)


# --- analytic cases ---


def one_env(rewards, values, terminated=(), truncated=(), invalid=(), gamma=0.9, lam=1.0):
    t_len = len(rewards)
    term = np.zeros((t_len, 1), bool)
    trunc = np.zeros((t_len, 1), bool)
    valid = np.ones((t_len, 1), bool)
    term[list(terminated), 0] = True
    trunc[list(truncated), 0] = True
    valid[list(invalid), 0] = False
    r = np.array(rewards, float)[:, None]
    v = np.array(values, float)[:, None]
    adv, ret = run_impl(r, v, term, trunc, valid, gamma, lam)
    return adv[:, 0], ret[:, 0]


def test_single_terminated_step_returns_reward():
    adv, ret = one_env([2.5], [0.7, 100.0], terminated=[0])
    assert ret[0] == pytest.approx(2.5)
    assert adv[0] == pytest.approx(2.5 - 0.7)


def test_single_truncated_step_bootstraps_from_final_obs():
    adv, ret = one_env([2.5], [0.7, 10.0], truncated=[0], gamma=0.9)
    assert ret[0] == pytest.approx(2.5 + 0.9 * 10.0)
    assert adv[0] == pytest.approx(2.5 + 0.9 * 10.0 - 0.7)


def test_terminated_and_truncated_together_is_terminal():
    _, ret = one_env([1.0], [0.0, 10.0], terminated=[0], truncated=[0])
    assert ret[0] == pytest.approx(1.0)


def test_unfinished_rollout_bootstraps_from_last_obs():
    _, ret = one_env([1.0, 2.0], [0.0, 0.0, 5.0], gamma=0.5)
    assert ret.tolist() == pytest.approx([1.0 + 0.5 * 2.0 + 0.25 * 5.0, 2.0 + 0.5 * 5.0])


def test_episode_end_then_autoreset_step():
    # t=0,1 one episode ending in termination at t=1; t=2 autoreset; t=3 a new episode
    # that the rollout cuts off. V(obs[2]) (terminal obs) and the t=2 reward never count.
    values = [0.1, 0.2, 50.0, 0.4, 3.0]
    adv, ret = one_env([1.0, 2.0, 99.0, 4.0], values, terminated=[1], invalid=[2], gamma=0.5)
    assert ret.tolist() == pytest.approx([1.0 + 0.5 * 2.0, 2.0, 0.0, 4.0 + 0.5 * 3.0])
    assert adv[2] == 0.0
    # Truncated instead: V(obs[2]), the final real observation, is the bootstrap.
    _, ret = one_env([1.0, 2.0, 99.0, 4.0], values, truncated=[1], invalid=[2], gamma=0.5)
    assert ret.tolist() == pytest.approx(
        [1.0 + 0.5 * (2.0 + 0.5 * 50.0), 2.0 + 0.5 * 50.0, 0.0, 5.5]
    )


def test_a_step_that_is_not_a_transition_carries_nothing_back():
    # A valid, unfinished step followed by one that is not a transition (the content
    # checks refuse this pattern, but the math must not depend on them): the invalid
    # step's reward and value never reach the valid one, which bootstraps from
    # V(obs[t+1]) alone, as the V-trace path (masked inside its loop) does.
    values = [0.0, 2.0, 100.0]
    adv, ret = one_env([1.0, 99.0], values, invalid=[1], gamma=0.5, lam=0.9)
    assert ret.tolist() == pytest.approx([1.0 + 0.5 * 2.0, 0.0])
    assert adv[0] == pytest.approx(1.0 + 0.5 * 2.0 - 0.0)


def test_lambda_zero_is_one_step_td():
    adv, _ = one_env([1.0, 2.0, 3.0], [0.5, 0.25, 2.0, 4.0], gamma=0.5, lam=0.0)
    assert adv.tolist() == pytest.approx(
        [1 + 0.5 * 0.25 - 0.5, 2 + 0.5 * 2.0 - 0.25, 3 + 2.0 - 2.0]
    )


# --- a2c_loss ---


def make_model(action_kind: str = "discrete", seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        obs_shape=(4,),
        action_kind=action_kind,
        action_n=3 if action_kind == "discrete" else 0,
        action_shape=(2,) if action_kind == "box" else (),
        hidden=(16,),
    )
    return ActorCritic(cfg)


def make_batch(model: ActorCritic, t_len: int = 12, n_envs: int = 5, seed: int = 0) -> dict:
    r, _, term, trunc, valid = random_rollout(t_len, n_envs, seed, p_done=0.3)
    g = torch.Generator().manual_seed(seed)
    if model.cfg.action_kind == "discrete":
        actions = torch.randint(0, model.cfg.action_n, (t_len, n_envs), generator=g)  # [T, N]
    else:
        actions = torch.randn(t_len, n_envs, 2, generator=g)  # [T, N, A]
    return {
        "obs": torch.randn(t_len + 1, n_envs, 4, generator=g),  # [T+1, N, obs]
        "actions": actions,
        "rewards": torch.tensor(r, dtype=torch.float32),
        "terminated": torch.tensor(term),
        "truncated": torch.tensor(trunc),
        "valid": torch.tensor(valid),
    }


def loss(model, batch, **cfg):
    """The A2C loss without importance weights unless asked (these batches carry no
    behaviour log-probs)."""
    t = batch["rewards"]
    tensors = {"behaviour_logp": torch.zeros_like(t), **batch}
    return a2c_loss(model, Batch(**tensors), A2CConfig(**{"is_clip": 0.0, **cfg}))


def policy_params(model):
    return [*model.policy_encoder.parameters(), *model.policy_out.parameters()]


def value_params(model):
    return [*model.value_encoder.parameters(), *model.value_out.parameters()]


def assert_same_terms(a, b):
    for name in ("total", "policy_loss", "value_loss", "entropy"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=1e-7)
    assert a.transitions == b.transitions


@pytest.mark.parametrize("action_kind", ["discrete", "box"])
@pytest.mark.parametrize("gae_lambda", [1.0, 0.95])
def test_invalid_steps_do_not_change_the_loss(action_kind, gae_lambda):
    model = make_model(action_kind)
    batch = make_batch(model)
    valid, term = batch["valid"], batch["terminated"]
    before = loss(model, batch, gae_lambda=gae_lambda)
    assert before.transitions == int(valid.sum()) < valid.numel()

    changed = {k: v.clone() for k, v in batch.items()}
    invalid = ~valid
    changed["rewards"][invalid] = 1e3
    changed["actions"][invalid] = 1 if action_kind == "discrete" else 7.0
    # obs[t] of an autoreset step t is the last obs of the previous episode: free to
    # change after a termination (no bootstrap) or at t=0 (that episode is not in this
    # rollout), but not after a truncation, where it is the bootstrap observation.
    prev_terminated = torch.cat([torch.ones_like(term[:1]), term[:-1]])  # [T, N]
    free_obs = invalid & prev_terminated
    assert free_obs.any()
    changed["obs"][:-1][free_obs] = 1e2
    assert_same_terms(loss(model, changed, gae_lambda=gae_lambda), before)

    # The same perturbations on valid steps do change it (the test can fail).
    step = (valid.nonzero()[0][0].item(), valid.nonzero()[0][1].item())
    moved = {k: v.clone() for k, v in batch.items()}
    moved["rewards"][step] += 1.0
    assert not torch.isclose(loss(model, moved, gae_lambda=gae_lambda).total, before.total)


def test_truncation_bootstrap_obs_matters():
    model = make_model()
    batch = make_batch(model)
    trunc = batch["truncated"] & ~batch["terminated"]
    t, n = trunc[:-1].nonzero()[0].tolist()
    before = loss(model, batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["obs"][t + 1, n] += 5.0
    assert not batch["valid"][t + 1, n]
    assert not torch.isclose(loss(model, changed).value_loss, before.value_loss)


def test_loss_terms_match_the_equations():
    model = make_model()
    batch = make_batch(model, seed=5)
    gamma = 0.97
    terms = loss(model, batch, gamma=gamma, gae_lambda=1.0, value_coef=0.5, entropy_coef=0.01)
    with torch.no_grad():
        out, values = model(batch["obs"])  # [T+1, N, A], [T+1, N]
        mask = batch["valid"].numpy()
        returns = ref_nstep_returns(
            batch["rewards"].numpy().astype(float),
            values.numpy().astype(float),
            batch["terminated"].numpy(),
            batch["truncated"].numpy(),
            mask,
            gamma,
        )
        adv = returns - values[:-1].numpy()
        dist = torch.distributions.Categorical(logits=out[:-1])
        logp = dist.log_prob(batch["actions"]).numpy()
        ent = dist.entropy().numpy()
    v = values[:-1].numpy()
    assert terms.value_loss.item() == pytest.approx(
        0.5 * ((returns - v) ** 2)[mask].mean(), rel=1e-5
    )
    assert terms.policy_loss.item() == pytest.approx(-(logp * adv)[mask].mean(), rel=1e-5, abs=1e-6)
    assert terms.entropy.item() == pytest.approx(ent[mask].mean(), rel=1e-5)
    want_total = terms.policy_loss + 0.5 * terms.value_loss - 0.01 * terms.entropy
    assert terms.total.item() == pytest.approx(want_total.item(), rel=1e-6)


def test_policy_gradient_does_not_reach_the_value_net():
    model = make_model()
    batch = make_batch(model)
    loss(model, batch).policy_loss.backward()
    for p in value_params(model):
        assert p.grad is None or not p.grad.any(), "policy loss moved the value net"
    assert any(p.grad is not None and p.grad.any() for p in policy_params(model))


def test_value_gradient_does_not_reach_the_policy_net():
    model = make_model()
    batch = make_batch(model)
    loss(model, batch).value_loss.backward()
    for p in policy_params(model):
        assert p.grad is None or not p.grad.any(), "value loss moved the policy net"
    assert any(p.grad is not None and p.grad.any() for p in value_params(model))


def test_entropy_bonus_lowers_the_total():
    model = make_model()
    batch = make_batch(model)
    low, high = loss(model, batch, entropy_coef=0.0), loss(model, batch, entropy_coef=0.1)
    assert low.entropy.item() > 0
    assert high.total.item() < low.total.item()
    assert (low.total - high.total).item() == pytest.approx(0.1 * low.entropy.item(), rel=1e-5)


def test_entropy_gradient_raises_entropy():
    # Descending the total, where the entropy bonus outweighs the policy term, makes the
    # policy more uniform (a bonus with the wrong sign in the total would sharpen it).
    model = make_model()
    batch = make_batch(model)
    terms = loss(model, batch, value_coef=0.0, entropy_coef=100.0)
    terms.total.backward()
    with torch.no_grad():
        for p in policy_params(model):
            p -= 0.005 * p.grad
    assert loss(model, batch).entropy.item() > terms.entropy.item()


def test_all_invalid_batch_is_zero_not_nan():
    model = make_model()
    batch = make_batch(model)
    batch["valid"] = torch.zeros_like(batch["valid"])
    terms = loss(model, batch)
    assert terms.transitions == 0
    assert terms.total.item() == 0.0
