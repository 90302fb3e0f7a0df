"""PPO's loss against a slow reference written from the paper's equations, the ratio on
fresh data, and the trainer's epochs over minibatches."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from core import algos
from core.algos.ppo import (
    SAME_POLICY_NATS,
    PPOConfig,
    minibatches,
    ppo_loss,
    ppo_targets,
    ppo_update,
)
from core.batch import Batch
from core.models import ModelConfig
from core.models.actor_critic import ActorCritic
from learner.trainer import Trainer, TrainerConfig
from protocol.rollout import Rollout
from protocol.spec import RunSpec
from tests.conftest import CARTPOLE, experience_arrays, small_batch

T, N, OBS, ACTIONS = 6, 5, 3, 3


def rollout(seed: int, behaviour_logp: np.ndarray | None = None) -> Rollout:
    rng = np.random.default_rng(seed)
    terminated = rng.random((T, N)) < 0.15
    truncated = ~terminated & (rng.random((T, N)) < 0.1)
    valid = np.ones((T, N), bool)
    valid[1:] &= ~(terminated[:-1] | truncated[:-1])  # the autoreset step after an end
    terminated &= valid
    truncated &= valid
    return Rollout(
        obs=rng.standard_normal((T + 1, N, OBS)).astype(np.float32),
        actions=rng.integers(0, ACTIONS, (T, N)),
        logp=(
            behaviour_logp
            if behaviour_logp is not None
            else np.log(rng.uniform(0.1, 0.6, (T, N))).astype(np.float32)
        ),
        rewards=(rng.standard_normal((T, N)) * valid).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        valid=valid,
        ep_returns=np.zeros(0),
        ep_lengths=np.zeros(0, np.int64),
    )


def model(seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(ModelConfig((OBS,), "discrete", ACTIONS))


def reference(m, r: Rollout, cfg: PPOConfig) -> tuple[float, float, float]:
    """(policy loss, value loss, entropy), one transition at a time, from the paper:
    L = -E[min(r A, clip(r, 1-e, 1+e) A)], A normalised over the valid transitions."""
    with torch.no_grad():
        out, values = m(torch.from_numpy(r.obs))
        probs = torch.softmax(out, -1).numpy()
        v = values.numpy()
    adv = np.zeros((T, N))
    for n in range(N):  # GAE, backwards, cut at episode ends
        last = 0.0
        for t in reversed(range(T)):
            if not r.valid[t, n]:
                last = 0.0
                continue
            nxt = 0.0 if r.terminated[t, n] else v[t + 1, n]
            delta = r.rewards[t, n] + cfg.gamma * nxt - v[t, n]
            ended = r.terminated[t, n] or r.truncated[t, n]
            last = delta + (0.0 if ended else cfg.gamma * cfg.gae_lambda * last)
            adv[t, n] = last
    returns = adv + v[:-1]
    cells = [(t, n) for t in range(T) for n in range(N) if r.valid[t, n]]
    a = np.array([adv[c] for c in cells])
    a = (a - a.mean()) / (a.std() + 1e-8)
    pl, vl, ent = 0.0, 0.0, 0.0
    for (t, n), an in zip(cells, a, strict=True):
        p = probs[t, n]
        ratio = p[r.actions[t, n]] / math.exp(r.logp[t, n])
        clipped = min(max(ratio, 1 - cfg.clip), 1 + cfg.clip)
        pl -= min(ratio * an, clipped * an)
        vl += 0.5 * (v[t, n] - returns[t, n]) ** 2
        ent -= float((p * np.log(p)).sum())
    k = len(cells)
    return pl / k, vl / k, ent / k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipped_objective_matches_the_slow_reference(seed):
    cfg = PPOConfig(clip=0.2, gamma=0.9, gae_lambda=0.8)
    m = model(seed)
    r = rollout(seed)
    batch = Batch.from_rollouts([r], torch.device("cpu"))
    terms = ppo_loss(m, batch, cfg, ppo_targets(m, batch, cfg))
    pl, vl, ent = reference(m, r, cfg)
    assert float(terms.policy_loss.detach()) == pytest.approx(pl, rel=1e-4, abs=1e-5)
    assert float(terms.value_loss.detach()) == pytest.approx(vl, rel=1e-4, abs=1e-5)
    assert float(terms.entropy.detach()) == pytest.approx(ent, rel=1e-4, abs=1e-5)
    assert float(terms.extras["clip_frac"]) > 0  # random behaviour log-probs: many clipped


def test_ratio_is_one_on_fresh_data_and_the_gradient_is_the_policy_gradient():
    """Behaviour log-probs from the network itself: nothing is clipped, the KL is 0, and
    the policy gradient equals that of -mean(A log pi)."""
    cfg = PPOConfig(clip=0.2)
    m = model(3)
    r = rollout(3)
    with torch.no_grad():
        out, _ = m(torch.from_numpy(r.obs[:-1]))
        fresh = torch.distributions.Categorical(logits=out).log_prob(torch.from_numpy(r.actions))
    r.logp = fresh.numpy().astype(np.float32)
    batch = Batch.from_rollouts([r], torch.device("cpu"))
    targets = ppo_targets(m, batch, cfg)
    terms = ppo_loss(m, batch, cfg, targets)
    assert float(terms.extras["clip_frac"]) == 0.0
    assert float(terms.extras["approx_kl"]) == pytest.approx(0.0, abs=1e-6)
    m.zero_grad()
    terms.policy_loss.backward()
    g_ppo = [p.grad.clone() for p in m.policy_encoder.parameters()]
    m.zero_grad()
    out, _ = m(batch.obs)
    logp = torch.distributions.Categorical(logits=out[:-1]).log_prob(batch.actions)
    mask = batch.valid.float()
    adv = targets["advantages"]
    mean = (adv * mask).sum() / mask.sum()
    std = (((adv - mean) * mask).pow(2).sum() / mask.sum()).sqrt()
    adv = (adv - mean) / (std + 1e-8) * mask
    (-(logp * adv * mask).sum() / mask.sum()).backward()
    for a, b in zip(g_ppo, [p.grad for p in m.policy_encoder.parameters()], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_trainer_takes_epochs_times_minibatches_steps_and_one_version():
    spec = RunSpec(
        env_id="x", algo="ppo", num_envs=N, rollout_len=T, obs_shape=(OBS,),
        action_kind="discrete", action_n=ACTIONS, coordination="sync",
    )  # fmt: skip
    algo = algos.get("ppo")
    cfg = algo.make_config({"epochs": 3, "minibatch_size": 2 * T})  # 2 columns: 3 minibatches
    trainer = Trainer(spec, algo, cfg, TrainerConfig(lr=1e-3), torch.device("cpu"))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    result = trainer.train_on([rollout(4)])
    assert result.applied and result.version == 1 and trainer.version == 1
    assert result.extras["steps"] == 9
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)
    )


def test_gradient_coordination_refuses_an_algorithm_with_epochs():
    with pytest.raises(ValueError, match="no epochs"):
        algos.Algorithm("x", "gradients", PPOConfig, ppo_loss, 1e-3, 4, "", update=ppo_update)


def test_minibatches_smaller_than_a_column_are_single_transitions_of_the_whole_batch():
    """minibatch_size < T: each epoch visits every valid transition exactly once, in
    minibatches of single steps, each with its own precomputed targets."""
    spec = dataclasses.replace(CARTPOLE, algo="ppo", model={"hidden": [8]})
    algo = algos.get("ppo")
    cfg = algo.make_config({"minibatch_size": 4, "epochs": 2})
    trainer = Trainer(spec, algo, cfg, TrainerConfig(seed=1), torch.device("cpu"))
    batch = trainer.prepare([Rollout.from_arrays(experience_arrays(spec, 3))])  # T=5, N=3
    targets = {"advantages": torch.arange(15.0).reshape(5, 3), "returns": torch.zeros(5, 3)}
    order = torch.Generator().manual_seed(0)
    seen = []
    for mb, mb_targets in minibatches(batch, targets, cfg, order):
        assert mb.valid.shape == (1, len(mb_targets["advantages"][0])) and mb.valid.all()
        assert mb.obs.shape[:2] == (2, mb.valid.shape[1]) and len(mb.valid[0]) <= 4
        seen += mb_targets["advantages"][0].tolist()
        # Each transition's obs is its own: the flat index is 3 * t + n.
        flat = mb_targets["advantages"][0].long()
        torch.testing.assert_close(mb.obs[0], batch.obs[:-1].reshape(15, 4)[flat])
    # Two epochs over the 14 valid transitions (step (2, 0) is the reset, not valid).
    assert sorted(seen) == sorted([float(i) for i in range(15) if i != 6] * 2)
    result = trainer.train_batch(batch)
    assert result.applied and result.extras["steps"] == 2 * 4  # ceil(14 / 4) per epoch


def fresh_rollout(m: ActorCritic, seed: int) -> Rollout:
    """A rollout whose behaviour log-probs are the network's own: ratio 1."""
    r = rollout(seed)
    with torch.no_grad():
        out, _ = m(torch.from_numpy(r.obs[:-1]))
        fresh = torch.distributions.Categorical(logits=out).log_prob(torch.from_numpy(r.actions))
    r.logp = fresh.numpy().astype(np.float32)
    return r


def test_vtrace_targets_on_fresh_data_are_gae_at_lambda_one():
    m = model(4)
    batch = Batch.from_rollouts([fresh_rollout(m, 4)], torch.device("cpu"))
    gae = ppo_targets(m, batch, PPOConfig(gae_lambda=1.0))
    vtrace = ppo_targets(m, batch, PPOConfig(targets="vtrace", gae_lambda=0.5))  # no lambda
    mask = batch.valid
    for key in ("returns", "advantages"):
        torch.testing.assert_close(vtrace[key][mask], gae[key][mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(vtrace["old_values"], gae["old_values"])


def test_vtrace_targets_correct_for_stale_data_as_impala_does():
    """Behaviour log-probs of another policy: the value targets are V-trace's v_s (the
    same function IMPALA's loss uses), not GAE's; the advantages are unweighted by rho
    (the PPO ratio weights them)."""
    from core.algos.vtrace import vtrace_targets

    m = model(5)
    r = rollout(5)  # behaviour log-probs drawn at random: far from the network's
    batch = Batch.from_rollouts([r], torch.device("cpu"), lags=[3])  # collected 3 versions ago
    cfg = PPOConfig(targets="vtrace", vtrace_rho_bar=1.0, vtrace_c_bar=0.9)
    got = ppo_targets(m, batch, cfg)
    with torch.no_grad():
        out, values = m(batch.obs)
        logp = torch.distributions.Categorical(logits=out[:-1]).log_prob(batch.actions)
    args = (values, logp - batch.behaviour_logp, batch.rewards, batch.terminated,
            batch.truncated, batch.valid, cfg.gamma, 1.0, 0.9)  # fmt: skip
    vs, weighted = vtrace_targets(*args)
    torch.testing.assert_close(got["returns"], vs)
    rho = torch.exp(logp - batch.behaviour_logp).clamp(max=1.0)
    torch.testing.assert_close(got["advantages"] * rho, weighted, rtol=1e-5, atol=1e-6)
    gae = ppo_targets(m, batch, PPOConfig(gae_lambda=1.0))
    assert not torch.allclose(got["returns"][batch.valid], gae["returns"][batch.valid])
    with pytest.raises(ValueError, match="gae or vtrace"):
        PPOConfig(targets="retrace")


# --- APPO under policy lag: the decoupled objective (Hilton et al. 2021) ---------------


def fresh_logp(m, r: Rollout) -> np.ndarray:
    with torch.no_grad():
        out, _ = m(torch.from_numpy(r.obs[:-1]))
        dist = torch.distributions.Categorical(logits=out)
        return dist.log_prob(torch.from_numpy(r.actions)).numpy().astype(np.float32)


def policy_grad_norm(m, r: Rollout, cfg: PPOConfig, lags) -> float:
    batch = Batch.from_rollouts([r], torch.device("cpu"), lags=lags)
    targets = ppo_targets(m, batch, cfg)
    targets["advantages"] = -torch.ones(T, N)  # every sample pushed down
    m.zero_grad()
    ppo_loss(m, batch, cfg, targets).policy_loss.backward()
    return float(torch.sqrt(sum((p.grad**2).sum() for p in m.parameters() if p.grad is not None)))


def test_fresh_columns_of_a_tempered_actor_are_corrected_for_its_temperature():
    # Lag 0 does not make mu the learner's policy: an actor at temperature 2 samples
    # from a flatter one. Its columns get the weight min(is_clip, pi/mu) and a log-rho
    # of log pi - log mu like any other (they once got 1 and 0); an actor at temperature
    # 1 keeps mu to the bit, float noise and all.
    m = model(3)
    r = rollout(3)
    with torch.no_grad():
        logits, _ = m(torch.from_numpy(r.obs[:-1]))
    actions = torch.from_numpy(r.actions)
    tempered = torch.distributions.Categorical(logits=logits / 2.0).log_prob(actions)
    cfg = PPOConfig(trust_region="proximal", targets="vtrace", is_clip=1.0)
    hot = dataclasses.replace(r, logp=tempered.numpy().astype(np.float32))
    batch = Batch.from_rollouts([hot], torch.device("cpu"), lags=[0])
    got = ppo_targets(m, batch, cfg)
    pi = torch.distributions.Categorical(logits=logits).log_prob(actions)
    torch.testing.assert_close(got["log_rho"], pi - tempered)
    assert (got["is_weight"] < 1.0).any()
    noisy = fresh_logp(m, r) + np.float32(1e-6)  # an actor at temperature 1, another device
    cool = dataclasses.replace(r, logp=noisy)
    plain = ppo_targets(m, Batch.from_rollouts([cool], torch.device("cpu"), lags=[0]), cfg)
    assert torch.equal(plain["log_rho"], torch.zeros(T, N))


def test_a_stale_sample_far_outside_the_trust_region_has_a_bounded_gradient():
    """mu 8 nats below pi (the behaviour policy eight hundred optimizer steps ago):
    against mu the ratio is e^8 and a negative advantage is weighted by it (the clip
    does not bound that side); against pi_prox the sample starts at ratio 1 and its
    weight is truncated at is_clip, so its gradient is at most is_clip * (1 + clip)
    times a fresh sample's."""
    cfg = PPOConfig(clip=0.2, normalize_advantages=False, is_clip=1.0, trust_region="proximal")
    m = model(5)
    r = rollout(5)
    pi = fresh_logp(m, r)
    r.logp = pi
    fresh = policy_grad_norm(m, r, cfg, lags=[0])
    r.logp = pi - 8.0
    behaviour = dataclasses.replace(cfg, trust_region="behaviour")  # the ratio against mu
    as_if_fresh = policy_grad_norm(m, r, behaviour, lags=[0])
    assert policy_grad_norm(m, r, behaviour, lags=[8]) == pytest.approx(as_if_fresh)
    stale = policy_grad_norm(m, r, cfg, lags=[8])
    assert as_if_fresh > 1000 * fresh  # e^8 ~ 2981: what APPO did before
    assert stale <= cfg.is_clip * (1 + cfg.clip) * fresh + 1e-6
    # mu far above pi: the weight pi_prox / mu all but removes the sample.
    r.logp = pi + 8.0
    assert policy_grad_norm(m, r, cfg, lags=[8]) < 1e-3 * fresh


def decoupled_reference(m_now, m_prox, r: Rollout, cfg: PPOConfig, lag: int) -> float:
    """The policy loss, one transition at a time from Hilton et al. 2021 (eq. for
    PPO-decoupled): -mean[ min(c, pi_prox/mu) * min(pi/pi_prox A, clip(pi/pi_prox) A) ]
    with pi_prox the policy at targets time (mu itself where mu is that policy: fresh
    data acted at temperature 1); A as the network at targets time gives it (not
    normalised here)."""
    with torch.no_grad():
        probs = torch.softmax(m_now(torch.from_numpy(r.obs))[0], -1).numpy()
        prox = torch.softmax(m_prox(torch.from_numpy(r.obs))[0], -1).numpy()
    batch = Batch.from_rollouts([r], torch.device("cpu"))
    adv = ppo_targets(m_prox, batch, cfg)["advantages"].numpy()
    total, k = 0.0, 0
    for t in range(T):
        for n in range(N):
            if not r.valid[t, n]:
                continue
            mu = math.exp(r.logp[t, n])
            p_prox = prox[t, n, r.actions[t, n]]
            if lag == 0 and abs(math.log(p_prox) - r.logp[t, n]) <= SAME_POLICY_NATS:
                p_prox = mu
            w = min(cfg.is_clip, p_prox / mu) if cfg.is_clip > 0 else 1.0
            ratio = probs[t, n, r.actions[t, n]] / p_prox
            clipped = min(max(ratio, 1 - cfg.clip), 1 + cfg.clip)
            total -= w * min(ratio * adv[t, n], clipped * adv[t, n])
            k += 1
    return total / k


@pytest.mark.parametrize(
    "lag,is_clip,mu", [(0, 1.0, "other"), (0, 1.0, "prox"), (3, 1.0, "other"), (3, 0.5, "other"),
                       (3, 0.0, "other"), (3, 1.0, "prox")]
)  # fmt: skip
def test_decoupled_objective_matches_the_slow_reference(lag, is_clip, mu):
    cfg = PPOConfig(clip=0.2, normalize_advantages=False, is_clip=is_clip, trust_region="proximal")
    m_prox, m_now = model(1), model(2)  # the policy at targets time, and after steps
    r = rollout(7)  # "other": behaviour log-probs from neither network
    if mu == "prox":  # mu is the policy at targets time, up to float noise
        r.logp = fresh_logp(m_prox, r) + np.float32(1e-6)
    batch = Batch.from_rollouts([r], torch.device("cpu"), lags=[lag])
    targets = ppo_targets(m_prox, batch, cfg)
    terms = ppo_loss(m_now, batch, cfg, targets)
    want = decoupled_reference(m_now, m_prox, r, cfg, lag)
    assert float(terms.policy_loss.detach()) == pytest.approx(want, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("trust_region", ["behaviour", "proximal"])
@pytest.mark.parametrize("targets", ["gae", "vtrace"])
def test_on_fresh_data_the_loss_is_exactly_ppo_against_the_behaviour_policy(trust_region, targets):
    """Sync PPO is unchanged: with lag 0 every term equals the loss computed without any
    lag information (the ratio against mu, as before), to the bit, under either trust
    region and either targets; mu carries the float noise between the actor's forward
    pass and the learner's, which lag 0 must absorb and lag 3 must not."""
    cfg = PPOConfig(clip=0.2, trust_region=trust_region, targets=targets)
    m = model(4)
    r = rollout(4)
    r.logp = fresh_logp(m, r) + np.float32(1e-6)  # fresh: this network, at temperature 1
    cpu = torch.device("cpu")
    old = Batch.from_rollouts([r], cpu)
    new = Batch.from_rollouts([r], cpu, lags=[0])
    a = ppo_loss(m, old, cfg, ppo_targets(m, old, cfg))
    fresh = ppo_targets(m, new, cfg)
    b = ppo_loss(m, new, cfg, fresh)
    for x, y in [(a.total, b.total), (a.policy_loss, b.policy_loss), (a.value_loss, b.value_loss)]:
        assert torch.equal(x, y)
    assert torch.equal(fresh["prox_logp"], new.behaviour_logp)
    assert float(b.extras["behaviour_kl"]) == 0.0 and float(b.extras["is_clipped_frac"]) == 0.0
    if trust_region == "proximal":  # stale columns take pi_prox, not mu
        stale = Batch.from_rollouts([r], cpu, lags=[3])
        assert not torch.equal(ppo_targets(m, stale, cfg)["prox_logp"], stale.behaviour_logp)


def test_the_trainer_tells_the_loss_each_rollouts_lag():
    spec = dataclasses.replace(CARTPOLE, algo="appo", coordination="async", num_envs=2)
    algo = algos.get("appo")
    cfg = algo.make_config({"epochs": 1})
    trainer = Trainer(spec, algo, cfg, TrainerConfig(), torch.device("cpu"))
    seen = []

    def spy(model, batch, cfg, step, rng):
        seen.append(None if batch.lag is None else batch.lag[0].tolist())
        return ppo_update(model, batch, cfg, step, rng)

    trainer.algo = dataclasses.replace(algo, update=spy)
    r = Rollout.from_arrays(experience_arrays(spec, 2, seed=0))
    trainer.train_on([r, r])  # versions not given: no lag information, taken as fresh
    trainer.train_on([r, r], versions=[1, 0])  # the trainer is at version 1 now
    assert seen == [None, [0, 0, 1, 1]]


def test_ppo_ratio_is_bounded_against_absurd_behaviour_log_probs():
    torch.manual_seed(0)
    model = ActorCritic(ModelConfig((3,), "discrete", 2))
    batch = small_batch(1.0)
    batch = Batch(**{**batch.__dict__, "behaviour_logp": torch.full((4, 2), -1e30)})
    terms = ppo_loss(model, batch, PPOConfig(), ppo_targets(model, batch, PPOConfig()))
    assert torch.isfinite(terms.total)
