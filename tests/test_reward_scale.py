"""--reward-norm (learner/reward_scale.py): rewards divided by the running std of the
discounted return, carried per env across an actor's rollouts, and what the loss sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.algos import get as get_algo
from core.batch import Batch
from learner.build import build
from learner.episodes import EpisodeChain
from learner.flags import parse
from learner.reward_scale import CLIP, RewardScale
from learner.trainer import Trainer, TrainerConfig
from protocol.rollout import Rollout
from tests.conftest import PENDULUM, experience_arrays

GAMMA = 0.9


class _NullLog:
    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


NULL_LOG = _NullLog()


def slow_discounted_returns(rewards, terminated, truncated, valid, gamma):
    """The reference: one env at a time, one step at a time, as VecNormalize does."""
    t, n = rewards.shape
    out = []
    for j in range(n):
        ret = 0.0
        for i in range(t):
            if not valid[i, j]:
                ret = 0.0
                continue
            ret = ret * gamma + float(rewards[i, j])
            out.append(ret)
            if terminated[i, j] or truncated[i, j]:
                ret = 0.0
    return np.array(out)


def episode_data(seed: int, t: int = 60, n: int = 3):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(-5.0, 3.0, size=(t, n)).astype(np.float32)
    terminated = rng.random((t, n)) < 0.05
    truncated = (rng.random((t, n)) < 0.03) & ~terminated
    valid = rng.random((t, n)) > 0.02
    return rewards, terminated, truncated, valid


@pytest.mark.parametrize("cuts", [(60,), (10, 50), (1, 7, 13, 39)])
def test_statistics_are_exact_however_the_steps_are_cut_into_rollouts(cuts):
    rewards, terminated, truncated, valid = episode_data(0)
    expected = slow_discounted_returns(rewards, terminated, truncated, valid, GAMMA)
    scale, chain = RewardScale(GAMMA), EpisodeChain(3)
    start = 0
    for length in cuts:
        part = slice(start, start + length)
        scale.observe(chain, rewards[part], terminated[part], truncated[part], valid[part])
        start += length
    assert start == 60
    assert scale.count == len(expected)
    assert scale.mean == pytest.approx(expected.mean(), rel=1e-9)
    assert scale.var == pytest.approx(expected.var(), rel=1e-9)
    assert scale.factor == pytest.approx(1 / np.sqrt(expected.var() + 1e-8), rel=1e-9)


def test_a_break_in_the_chain_starts_the_running_returns_over():
    rewards = np.full((4, 1), -1.0, dtype=np.float32)
    no = np.zeros((4, 1), dtype=bool)
    yes = np.ones((4, 1), dtype=bool)
    whole, broken = RewardScale(0.5), RewardScale(0.5)
    a, b = EpisodeChain(1), EpisodeChain(1)
    for scale, chain in ((whole, a), (broken, b)):
        scale.observe(chain, rewards, no, no, yes)
    b.break_()  # a rollout of b was lost
    whole.observe(a, rewards, no, no, yes)
    broken.observe(b, rewards, no, no, yes)
    # The second rollout continues -1.875 on a; b's starts again from 0.
    cont = slow_discounted_returns(
        np.full((8, 1), -1.0), no.repeat(2, 0), no.repeat(2, 0), yes.repeat(2, 0), 0.5
    )
    restart = np.concatenate([cont[:4], cont[:4]])
    assert whole.mean == pytest.approx(cont.mean()) and broken.mean == pytest.approx(restart.mean())
    # Two actors' envs never mix: each chain carries its own.
    other = RewardScale(0.5)
    c, d = EpisodeChain(1), EpisodeChain(1)
    other.observe(c, rewards, no, no, yes)
    other.observe(d, rewards, no, no, yes)
    assert other.mean == pytest.approx(restart.mean())


def test_apply_scales_and_clips():
    scale = RewardScale(GAMMA)
    assert scale.factor == pytest.approx(1.0)  # nothing seen: unchanged
    scale.var = 4.0
    out = scale.apply(torch.tensor([[-2.0, 6.0, -100.0]]))
    torch.testing.assert_close(out, torch.tensor([[-1.0, 3.0, -CLIP]]))


SPEC = PENDULUM


def rollout(seed: int) -> Rollout:
    discrete = dataclasses.replace(SPEC, action_kind="discrete", action_n=2, action_shape=(),
                                   action_low=(), action_high=())  # fmt: skip
    arrays = experience_arrays(discrete, SPEC.num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    arrays["actions"] = rng.normal(size=(SPEC.rollout_len, SPEC.num_envs, 1)).astype("<f4")
    arrays["logp"] = np.full(arrays["logp"].shape, -1.5, dtype="<f4")
    arrays["rewards"] = np.where(arrays["valid"], -8.0 - 4 * arrays["rewards"], 0).astype("<f4")
    return Rollout.from_arrays(arrays)


@pytest.mark.parametrize("algo", ["a2c", "ppo", "impala"])
def test_the_loss_sees_the_scaled_rewards(algo):
    spec = dataclasses.replace(SPEC, algo=algo, coordination=get_algo(algo).coordination)
    a = get_algo(algo)

    def make() -> Trainer:
        cfg = TrainerConfig(seed=3, log_std_init=-1.0)
        return Trainer(spec, a, a.make_config({"gamma": GAMMA}), cfg, torch.device("cpu"))

    scaled, plain = make(), make()
    assert scaled.model.head.log_std.tolist() == [-1.0]
    r = rollout(0)
    scale = RewardScale(GAMMA)
    scale.observe(EpisodeChain(3), r.rewards, r.terminated, r.truncated, r.valid)
    assert scale.factor != pytest.approx(1.0)
    by_hand = dataclasses.replace(r, rewards=(r.rewards * scale.factor).astype(np.float32))
    a_stats = scaled.train_batch(scaled.prepare([r], scale))
    b_stats = plain.train_on([by_hand])
    assert a_stats.applied and b_stats.applied
    assert a_stats.value_loss == pytest.approx(b_stats.value_loss, rel=1e-5)
    for (name, p), q in zip(scaled.model.named_parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_the_scale_survives_a_checkpoint_and_resume(tmp_path):
    argv = ["--serial", "--env", "Pendulum-v1", "--algo", "a2c", "--reward-norm"]
    argv += ["--gamma", str(GAMMA), "--confirm-episodes", "0"]
    first = build(parse(argv)[0], tmp_path, NULL_LOG, lambda: False)
    r = rollout(2)
    first.reward_scale.observe(EpisodeChain(3), r.rewards, r.terminated, r.truncated, r.valid)
    first.save_checkpoint(1.0)
    first.close()
    again = build(parse([*argv, "--resume"])[0], tmp_path, NULL_LOG, lambda: False)
    try:
        assert again.reward_scale.count > 0
        assert again.reward_scale.state_dict() == first.reward_scale.state_dict()
    finally:
        again.close()


def test_batch_rewards_are_untouched_without_reward_norm(tmp_path):
    parts = build(parse(["--serial", "--env", "Pendulum-v1"])[0], tmp_path, NULL_LOG, lambda: False)
    try:
        assert parts.reward_scale is None
        parts.save_checkpoint(1.0)
        saved = torch.load(next((tmp_path / "checkpoints").glob("*.pt")), weights_only=True)
        assert "reward_scale" not in saved
    finally:
        parts.close()
    r = rollout(1)
    batch = Batch.from_rollouts([r], torch.device("cpu"))
    assert torch.equal(batch.rewards, torch.from_numpy(r.rewards))


def test_reward_norm_is_refused_with_gradients(capsys):
    with pytest.raises(SystemExit):
        parse(["--reward-norm", "--algo", "a3c-grad"])
    assert "computes its loss on the actors" in capsys.readouterr().err
