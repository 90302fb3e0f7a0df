"""The learner's pure core: gradients applied from an actor equal a local update, and
non-finite losses or gradients never reach the parameters."""

from __future__ import annotations

import copy

import numpy as np
import torch

from core.loss import LossConfig, rollout_gradients
from learner.trainer import Trainer, TrainerConfig
from protocol.checks import check_gradient
from protocol.codec import decode, encode
from protocol.messages import Gradient
from protocol.spec import RunSpec
from tests.conftest import experience_arrays

SPEC = RunSpec(
    env_id="CartPole-v1",
    algo="a3c-grad",
    num_envs=3,
    rollout_len=5,
    obs_shape=(4,),
    action_kind="discrete",
    action_n=2,
    hidden=(8, 8),
)


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def actor_gradient(model: torch.nn.Module, rollout: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What an a3c-grad actor sends: the real function, on a copy of the weights it holds."""
    cfg = LossConfig(SPEC.gamma, SPEC.gae_lambda, SPEC.value_coef, SPEC.entropy_coef)
    return rollout_gradients(copy.deepcopy(model), rollout, cfg)[0]


def test_applied_gradient_changes_weights_exactly_as_a_local_update():
    cfg = TrainerConfig(lr=1e-2, is_clip=0.0, seed=3)
    remote = Trainer(SPEC, cfg, torch.device("cpu"))
    local = Trainer(SPEC, cfg, torch.device("cpu"))
    before = params(remote.model)
    for step in range(3):
        rollout = experience_arrays(SPEC, SPEC.num_envs, seed=step)
        grads = actor_gradient(remote.model, rollout)
        # Through the wire and the checks, as the learner receives it.
        msg = decode(
            encode(
                Gradient(
                    arrays={
                        **grads,
                        "ep_returns": rollout["ep_returns"],
                        "ep_lengths": rollout["ep_lengths"],
                    }
                )
            )
        )
        check_gradient(msg, {n: tuple(p.shape) for n, p in remote.model.named_parameters()})
        applied = remote.apply_gradient(msg.arrays)
        trained = local.train_on([rollout])
        assert applied.applied and trained.applied
        assert abs(applied.grad_norm - trained.grad_norm) < 1e-5
    for name, p in remote.model.named_parameters():
        torch.testing.assert_close(
            p, dict(local.model.named_parameters())[name], rtol=1e-6, atol=1e-7
        )
        assert not torch.equal(p, before[name]), "the update changed the weights"
    assert remote.version == local.version == 3


def test_non_finite_loss_skips_the_update():
    trainer = Trainer(SPEC, TrainerConfig(), torch.device("cpu"))
    before = params(trainer.model)
    rollout = experience_arrays(SPEC, SPEC.num_envs)
    rollout["rewards"] = rollout["rewards"].copy()
    rollout["rewards"][0, 0] = np.nan  # past the checks only by a bug; the trainer still holds
    stats = trainer.train_on([rollout])
    assert not stats.applied and trainer.version == 0
    for name, p in trainer.model.named_parameters():
        assert torch.equal(p, before[name])
    assert not trainer.optimizer.state, "the optimizer never stepped"


def test_non_finite_gradient_skips_the_update():
    trainer = Trainer(SPEC, TrainerConfig(), torch.device("cpu"))
    before = params(trainer.model)
    grads = {
        f"grad/{n}": np.zeros(p.shape, dtype=np.float32)
        for n, p in trainer.model.named_parameters()
    }
    grads["grad/policy.0.weight"][0, 0] = np.inf
    assert not trainer.apply_gradient(grads).applied
    for name, p in trainer.model.named_parameters():
        assert torch.equal(p, before[name])
    # A good gradient afterwards is applied normally.
    grads["grad/policy.0.weight"][0, 0] = 1.0
    assert trainer.apply_gradient(grads).applied and trainer.version == 1


def test_truncated_importance_weights_leave_on_policy_data_unchanged():
    a = Trainer(SPEC, TrainerConfig(is_clip=1.0, seed=5), torch.device("cpu"))
    b = Trainer(SPEC, TrainerConfig(is_clip=0.0, seed=5), torch.device("cpu"))
    rollout = experience_arrays(SPEC, SPEC.num_envs)
    with torch.no_grad():
        out, _ = a.model(torch.from_numpy(rollout["obs"][:-1]))
        logp = torch.distributions.Categorical(logits=out).log_prob(
            torch.from_numpy(rollout["actions"])
        )
    rollout["logp"] = logp.numpy().astype(np.float32)
    sa, sb = a.train_on([rollout]), b.train_on([rollout])
    assert abs(sa.policy_loss - sb.policy_loss) < 1e-6
    # Off-policy data (behaviour much likelier than now) is down-weighted.
    rollout["logp"] = np.zeros_like(rollout["logp"])
    c = Trainer(SPEC, TrainerConfig(is_clip=1.0, seed=5), torch.device("cpu"))
    d = Trainer(SPEC, TrainerConfig(is_clip=0.0, seed=5), torch.device("cpu"))
    assert abs(c.train_on([rollout]).policy_loss) < abs(d.train_on([rollout]).policy_loss)
