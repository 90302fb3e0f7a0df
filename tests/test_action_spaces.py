"""MultiDiscrete and MultiBinary actions: the spec that describes them, the heads'
numpy sampling against their torch distributions, the map back to the env's values,
the learner's checks of what an actor sends, and the wire layout. Learning with them
through real processes: tests/test_learning.py."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from core.envs import describe, make_vec_env
from core.envs.family import EnvSpecError, spaces_to_spec_fields
from core.envs.structured import BITS_ID, MULTI_ID, NVEC, START
from core.models import ActorCritic, ModelConfig
from core.models.heads import BernoulliHead, MultiCategoricalHead
from protocol.checks import InvalidMessage, check_experience
from protocol.messages import Experience
from protocol.rollout import layout
from protocol.spec import RunSpec, SpecError
from tests.conftest import experience_arrays

T, N = 4, 3


def spec_for(env_id: str) -> RunSpec:
    return RunSpec(env_id=env_id, algo="a2c", num_envs=N, rollout_len=T, **describe(env_id))


def multi_head() -> MultiCategoricalHead:
    return MultiCategoricalHead((3,), tuple(map(float, START)), tuple(map(float, START + NVEC - 1)))


# --- the spaces as a run spec says them -------------------------------------------------


def test_a_multi_discrete_space_is_its_shape_and_each_components_range():
    fields = spaces_to_spec_fields(
        "x",
        gym.spaces.Box(0, 1, (2,)),
        gym.spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[0, 1], [2, -3]]),
    )
    assert fields["action_kind"] == "multi_discrete" and fields["action_shape"] == (2, 2)
    assert fields["action_low"] == (0.0, 1.0, 2.0, -3.0)
    assert fields["action_high"] == (1.0, 3.0, 5.0, 1.0)
    spec = RunSpec(env_id="x", algo="a2c", num_envs=1, rollout_len=1, **fields)
    assert spec.action_nvec == (2, 3, 4, 5) and spec.action_dtype == "<i8"


def test_a_multi_binary_space_is_its_shape_without_bounds():
    fields = spaces_to_spec_fields("x", gym.spaces.Box(0, 1, (2,)), gym.spaces.MultiBinary([2, 3]))
    assert fields["action_kind"] == "multi_binary" and fields["action_shape"] == (2, 3)
    assert "action_low" not in fields


def test_tuple_and_dict_action_spaces_are_refused_by_name():
    space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))
    with pytest.raises(EnvSpecError, match="MultiDiscrete and MultiBinary are"):
        spaces_to_spec_fields("x", gym.spaces.Box(0, 1, (2,)), space)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"action_low": (0.5, 0.0, 2.0)}, "integers"),
        ({"action_low": (2.0, 0.0, 2.0)}, "low <= high"),
        ({"action_high": (1.0, 3.0)}, "matching its shape"),
        ({"action_shape": (0,)}, "positive dims"),
    ],
)
def test_a_multi_discrete_spec_that_lies_is_refused(change, message):
    with pytest.raises(SpecError, match=message):
        dataclasses.replace(spec_for(MULTI_ID), **change)


def test_a_multi_binary_spec_with_bounds_is_refused():
    with pytest.raises(SpecError, match="no bounds"):
        dataclasses.replace(spec_for(BITS_ID), action_low=(0.0,) * 6, action_high=(1.0,) * 6)


# --- the heads: numpy on the actor, torch in the loss -----------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_multi_categorical_sample_logp_equals_torch_log_prob(temperature):
    head = multi_head()
    out = (3 * np.random.default_rng(0).standard_normal((256, head.out_dim))).astype(np.float32)
    actions, logp = head.sample(out, np.random.default_rng(1), temperature)
    assert actions.shape == (256, 3) and actions.dtype == np.int64 and logp.dtype == np.float32
    assert ((actions >= 0) & (actions < NVEC)).all()
    dist = head.distribution(torch.from_numpy(out) / temperature)
    expected = dist.log_prob(head.flat_actions(torch.from_numpy(actions)[None])[0]).numpy()
    np.testing.assert_allclose(logp, expected, rtol=1e-5, atol=1e-5)


def test_multi_categorical_components_follow_their_own_softmax_and_entropies_add():
    head = multi_head()
    out = np.random.default_rng(2).standard_normal((1, head.out_dim)).astype(np.float32)
    actions, _ = head.sample(np.repeat(out, 40_000, 0), np.random.default_rng(3), 1.0)
    parts = np.split(out[0], np.cumsum(NVEC)[:-1])
    for i, logits in enumerate(parts):
        want = np.exp(logits) / np.exp(logits).sum()
        seen = np.bincount(actions[:, i], minlength=len(logits)) / len(actions)
        np.testing.assert_allclose(seen, want, atol=0.01)
    entropy = head.distribution(torch.from_numpy(out)).entropy().item()
    by_hand = sum(
        -(np.exp(p) / np.exp(p).sum() * np.log(np.exp(p) / np.exp(p).sum())).sum() for p in parts
    )
    assert entropy == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_bernoulli_sample_logp_equals_torch_log_prob_and_bits_follow_the_sigmoid(temperature):
    head = BernoulliHead((2, 3))
    rng = np.random.default_rng(4)
    out = np.repeat((2 * rng.standard_normal((1, 6))).astype(np.float32), 40_000, 0)
    actions, logp = head.sample(out, np.random.default_rng(5), temperature)
    assert actions.shape == (40_000, 2, 3) and set(np.unique(actions)) <= {0, 1}
    dist = head.distribution(torch.from_numpy(out) / temperature)
    expected = dist.log_prob(head.flat_actions(torch.from_numpy(actions)[None])[0]).numpy()
    np.testing.assert_allclose(logp, expected, rtol=1e-5, atol=1e-5)
    p1 = 1 / (1 + np.exp(-out[0] / temperature))
    np.testing.assert_allclose(actions.reshape(-1, 6).mean(0), p1, atol=0.01)


def test_the_env_gets_values_in_its_own_range_and_dtype():
    head = multi_head()
    assert (head.to_env(np.array([[0, 0, 0], [2, 3, 4]])) == [START, START + NVEC - 1]).all()
    assert head.mode(np.eye(1, head.out_dim, 0, dtype=np.float32)).tolist() == [[0, 0, 0]]
    bits = BernoulliHead((6,)).to_env(np.ones((2, 6), np.int64))
    assert bits.dtype == np.int8
    envs = make_vec_env(BITS_ID, 2)
    try:
        envs.reset(seed=0)
        envs.step(bits)  # gymnasium's MultiBinary takes it
    finally:
        envs.close()


def test_the_network_outputs_one_logit_per_choice():
    for env_id, out_dim in ((MULTI_ID, int(NVEC.sum())), (BITS_ID, 6)):
        model = ActorCritic(ModelConfig.from_spec(spec_for(env_id)))
        out, value = model(torch.zeros(5, *spec_for(env_id).obs_shape))
        assert out.shape == (5, out_dim) and value.shape == (5,)


# --- what the learner accepts -----------------------------------------------------------


def rollout(spec: RunSpec, actions: np.ndarray) -> Experience:
    arrays = experience_arrays(
        dataclasses.replace(
            spec, action_kind="discrete", action_n=2, action_shape=(), action_low=(), action_high=()
        ),
        N,
    )
    arrays["actions"] = actions
    return Experience(actor_id="a", incarnation="i", seq=0, learner_id="L", arrays=arrays)


def test_the_wire_carries_one_index_per_component():
    spec = spec_for(MULTI_ID)
    assert layout(spec, N)["actions"] == ("<i8", (T, N, 3))
    ok = np.zeros((T, N, 3), "<i8") + (NVEC - 1)  # every component at its largest index
    check_experience(rollout(spec, ok), spec, N)


@pytest.mark.parametrize("component, value", [(0, -1), (0, 3), (1, 4), (2, 5), (2, 2**40)])
def test_a_multi_discrete_index_outside_its_components_range_is_refused(component, value):
    spec = spec_for(MULTI_ID)
    actions = np.zeros((T, N, 3), "<i8")
    actions[1, 2, component] = value
    with pytest.raises(InvalidMessage) as info:
        check_experience(rollout(spec, actions), spec, N)
    assert info.value.reason == "out_of_range"


@pytest.mark.parametrize("value, ok", [(0, True), (1, True), (2, False), (-1, False)])
def test_multi_binary_actions_are_bits(value, ok):
    spec = spec_for(BITS_ID)
    actions = np.zeros((T, N, 6), "<i8")
    actions[0, 0, 5] = value
    if ok:
        check_experience(rollout(spec, actions), spec, N)
    else:
        with pytest.raises(InvalidMessage, match="0, 1"):
            check_experience(rollout(spec, actions), spec, N)


def test_a_random_policy_scores_what_the_task_says():
    """The tasks' figures that the learning tests' thresholds stand on."""
    for env_id, random_return in ((MULTI_ID, 10 * np.mean(1 / NVEC)), (BITS_ID, 5.0)):
        envs = make_vec_env(env_id, 64)
        try:
            envs.reset(seed=0)
            total = np.zeros(64)
            for _ in range(10):
                _, r, *_ = envs.step(envs.action_space.sample())
                total += r
        finally:
            envs.close()
        assert math.isclose(total.mean(), random_return, abs_tol=0.5), env_id
