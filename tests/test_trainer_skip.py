"""An update with no valid transition is skipped, and a skipped update changes nothing:
not the parameters, not the optimizer state (an Adam step on a zero gradient would
still move the parameters and advance its moment estimates), not the version."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from core import algos
from learner.trainer import Trainer, TrainerConfig
from protocol.rollout import Rollout
from tests.conftest import CARTPOLE

SPEC = dataclasses.replace(CARTPOLE, model={"hidden": [8, 8]})


def rollout(seed: int, *, valid: bool = True) -> Rollout:
    """A rollout of SPEC with random content; every step valid, or none."""
    rng = np.random.default_rng(seed)
    r = Rollout.allocate(SPEC, SPEC.num_envs)
    r.obs[:] = rng.standard_normal(r.obs.shape)
    r.actions[:] = rng.integers(0, SPEC.action_n, r.actions.shape)
    r.logp[:] = np.log(0.5)
    r.rewards[:] = rng.standard_normal(r.rewards.shape)
    r.terminated[2, 1] = True
    r.valid[:] = valid
    if not valid:
        # What an all-invalid rollout can look like: flags only on valid steps.
        r.terminated[:] = False
    return r


def make_trainer(optimizer: str) -> Trainer:
    algo = algos.get("a2c")
    cfg = TrainerConfig(lr=1e-2, optimizer=optimizer, max_grad_norm=0.5, seed=5)
    return Trainer(SPEC, algo, algo.make_config({"entropy_coef": 0.01}), cfg, torch.device("cpu"))


def assert_same(a, b, path: str = "") -> None:
    """Deep equality of nested state dicts, tensors compared exactly."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def snapshot(trainer: Trainer) -> dict:
    # state_dict() holds references to the live tensors: copy them.
    return copy.deepcopy(trainer.state_dict())


def some_gradient(trainer: Trainer) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        f"grad/{name}": rng.standard_normal(p.shape).astype(np.float32)
        for name, p in trainer.model.named_parameters()
    }


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "after_an_update"])
def test_a_batch_with_no_valid_transition_is_skipped_and_changes_nothing(optimizer, warm):
    trainer = make_trainer(optimizer)
    if warm:  # optimizer state (moments, step counts) to disturb
        stats = trainer.train_on([rollout(0)])
        assert stats.applied and trainer.version == 1
    before = snapshot(trainer)
    assert bool(before["optimizer"]["state"]) == warm

    stats = trainer.train_on([rollout(1, valid=False), rollout(2, valid=False)])

    assert not stats.applied
    assert stats.skipped == "no_valid_transitions"
    assert stats.transitions == 0
    assert trainer.version == before["version"]
    assert_same(snapshot(trainer), before)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_a_gradient_of_no_transitions_is_skipped_and_changes_nothing(optimizer):
    trainer = make_trainer(optimizer)
    assert trainer.apply_gradient(some_gradient(trainer), transitions=15).applied
    before = snapshot(trainer)

    stats = trainer.apply_gradient(some_gradient(trainer), transitions=0)

    assert not stats.applied
    assert stats.skipped == "no_valid_transitions"
    assert stats.transitions == 0
    assert trainer.version == before["version"] == 1
    assert_same(snapshot(trainer), before)


def test_the_comparison_sees_an_applied_update():
    """The control: the same snapshot comparison fails when an update is applied, even
    one whose gradient is zero (Adam's step still moves the parameters)."""
    trainer = make_trainer("adam")
    trainer.train_on([rollout(0)])
    before = snapshot(trainer)
    zero = {k: np.zeros_like(v) for k, v in some_gradient(trainer).items()}
    stats = trainer.apply_gradient(zero, transitions=1)
    assert stats.applied and trainer.version == 2
    after = snapshot(trainer)
    with pytest.raises(AssertionError):
        assert_same(after["model"], before["model"])
    with pytest.raises(AssertionError):
        assert_same(after["optimizer"], before["optimizer"])


def test_a_mix_of_valid_and_invalid_rollouts_still_trains():
    trainer = make_trainer("adam")
    stats = trainer.train_on([rollout(1, valid=False), rollout(0)])
    assert stats.applied and stats.skipped == ""
    assert stats.transitions == SPEC.rollout_len * SPEC.num_envs
    assert trainer.version == 1
