"""The learner's pure core: gradients applied from an actor equal a local update with
every loss setting honoured on both sides, and non-finite losses or gradients never
reach the parameters."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from core import algos
from core.gradients import rollout_gradients
from learner.trainer import Trainer, TrainerConfig
from protocol.checks import check_gradient
from protocol.codec import decode, encode
from protocol.messages import Gradient
from protocol.rollout import Rollout
from tests.conftest import CARTPOLE, experience_arrays

A2C = algos.get("a3c-grad")
SPEC = dataclasses.replace(
    CARTPOLE, algo="a3c-grad", coordination="gradients", model={"hidden": [8, 8]}
)
CPU = torch.device("cpu")


def trainer(loss_cfg=None, **kw) -> Trainer:
    return Trainer(SPEC, A2C, loss_cfg or A2C.make_config(), TrainerConfig(**kw), CPU)


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def rollout(seed: int = 0, behaviour_p: float | None = None) -> Rollout:
    arrays = experience_arrays(SPEC, SPEC.num_envs, seed=seed)
    if behaviour_p is not None:  # a behaviour policy far from the current one
        arrays["logp"] = np.full_like(arrays["logp"], np.log(behaviour_p))
    return Rollout.from_arrays(arrays)


@pytest.mark.parametrize(
    "loss_settings",
    [
        {"is_clip": 0.0},
        # The settings gradient-computing actors used to ignore: now they travel in the
        # run spec, so both sides compute the same loss.
        {"is_clip": 1.0, "normalize_advantages": True, "entropy_coef": 0.01, "gae_lambda": 0.9},
    ],
)
def test_applied_gradient_changes_weights_exactly_as_a_local_update(loss_settings):
    loss_cfg = A2C.make_config(loss_settings)
    spec = dataclasses.replace(SPEC, loss=algos.config_dict(loss_cfg))
    remote, local = trainer(loss_cfg, lr=1e-2, seed=3), trainer(loss_cfg, lr=1e-2, seed=3)
    # What the actor builds from the spec it received (core/acting.py does the same).
    actor_cfg = A2C.make_config(spec.loss)
    before = params(remote.model)
    for step in range(3):
        r = rollout(step, behaviour_p=0.9)
        grads, terms = rollout_gradients(copy.deepcopy(remote.model), r, A2C, actor_cfg)
        sent = Gradient(arrays={**grads, **r.gradient_arrays()}, env_steps=terms.transitions)
        msg = decode(encode(sent))
        shapes = {n: tuple(p.shape) for n, p in remote.model.named_parameters()}
        assert check_gradient(msg, shapes, spec, r.num_envs) == terms.transitions
        applied = remote.apply_gradient(msg.arrays, transitions=terms.transitions)
        trained = local.train_on([r])
        assert applied.applied and trained.applied
        assert abs(applied.grad_norm - trained.grad_norm) < 1e-5
    for name, p in remote.model.named_parameters():
        torch.testing.assert_close(
            p, dict(local.model.named_parameters())[name], rtol=1e-6, atol=1e-7
        )
        assert not torch.equal(p, before[name]), "the update changed the weights"
    assert remote.version == local.version == 3


def test_an_actor_ignoring_the_settings_would_be_caught():
    # The equivalence above can fail: gradients from a loss without the settings differ.
    on = A2C.make_config({"is_clip": 1.0, "normalize_advantages": True})
    off = A2C.make_config({"is_clip": 0.0})
    model = trainer(on).model
    r = rollout(0, behaviour_p=0.9)
    g_on, _ = rollout_gradients(copy.deepcopy(model), r, A2C, on)
    g_off, _ = rollout_gradients(copy.deepcopy(model), r, A2C, off)
    assert any(not np.allclose(g_on[k], g_off[k], atol=1e-6) for k in g_on)


def test_non_finite_loss_skips_the_update():
    t = trainer()
    before = params(t.model)
    arrays = experience_arrays(SPEC, SPEC.num_envs)
    arrays["rewards"] = arrays["rewards"].copy()
    arrays["rewards"][0, 0] = np.nan  # past the checks only by a bug; the trainer still holds
    stats = t.train_on([Rollout.from_arrays(arrays)])
    assert not stats.applied and stats.skipped == "non_finite" and t.version == 0
    for name, p in t.model.named_parameters():
        assert torch.equal(p, before[name])
    assert not t.optimizer.state, "the optimizer never stepped"


def test_non_finite_gradient_skips_the_update():
    t = trainer()
    before = params(t.model)
    grads = {
        f"grad/{n}": np.zeros(p.shape, dtype=np.float32) for n, p in t.model.named_parameters()
    }
    first = next(iter(grads))
    grads[first].flat[0] = np.inf
    assert not t.apply_gradient(grads, transitions=10).applied
    for name, p in t.model.named_parameters():
        assert torch.equal(p, before[name])
    # A good gradient afterwards is applied normally.
    grads[first].flat[0] = 1.0
    assert t.apply_gradient(grads, transitions=10).applied and t.version == 1


def test_truncated_importance_weights_leave_on_policy_data_unchanged():
    clip, plain = A2C.make_config({"is_clip": 1.0}), A2C.make_config({"is_clip": 0.0})
    a, b = trainer(clip, seed=5), trainer(plain, seed=5)
    arrays = experience_arrays(SPEC, SPEC.num_envs)
    with torch.no_grad():
        out, _ = a.model(torch.from_numpy(arrays["obs"][:-1]))
        logp = torch.distributions.Categorical(logits=out).log_prob(
            torch.from_numpy(arrays["actions"])
        )
    arrays["logp"] = logp.numpy().astype(np.float32)
    r = Rollout.from_arrays(arrays)
    sa, sb = a.train_on([r]), b.train_on([r])
    assert abs(sa.policy_loss - sb.policy_loss) < 1e-6
    # Off-policy data (behaviour much likelier than now) is down-weighted.
    arrays["logp"] = np.zeros_like(arrays["logp"])
    r = Rollout.from_arrays(arrays)
    c, d = trainer(clip, seed=5), trainer(plain, seed=5)
    assert abs(c.train_on([r]).policy_loss) < abs(d.train_on([r]).policy_loss)


def test_linear_schedules_anneal_over_the_env_step_budget():
    """CleanRL's anneal_lr and rl-zoo's lin_ clip: the value at an update is the base
    times the share of --max-env-steps left; constant schedules never move."""
    ppo = algos.get("ppo")
    spec = dataclasses.replace(SPEC, algo="ppo", coordination="sync")
    cfg = ppo.make_config({"clip": 0.2, "epochs": 1})
    t = Trainer(
        spec, ppo, cfg, TrainerConfig(lr=1e-3, lr_schedule="linear", clip_schedule="linear"), CPU
    )
    seen = []
    real_update = t.algo.update
    t.algo = dataclasses.replace(
        ppo,
        update=lambda m, b, c, step, rng: seen.append(c.clip) or real_update(m, b, c, step, rng),
    )
    for done, lr, clip in [(0, 1e-3, 0.2), (250, 7.5e-4, 0.15), (1000, 0.0, 1e-3)]:
        t.set_progress(done, 1000)
        assert t.train_on([rollout()]).applied
        assert t.lr == pytest.approx(lr)
        assert seen[-1] == pytest.approx(clip)
    flat = trainer(lr=1e-3)
    flat.set_progress(900, 1000)
    flat.train_on([rollout()])
    assert flat.lr == 1e-3


def test_a_schedule_without_a_budget_is_refused():
    from learner.flags import parse

    with pytest.raises(SystemExit):
        parse(["--lr-schedule", "linear"])
    with pytest.raises(SystemExit):
        parse(["--clip-schedule", "linear", "--algo", "a2c", "--max-env-steps", "1000"])
    cfg, _ = parse(["--lr-schedule", "linear", "--max-env-steps", "1000"])
    assert cfg.lr_schedule == "linear"
