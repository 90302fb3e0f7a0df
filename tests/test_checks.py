"""protocol.checks (content checks against the run's settings) and protocol.spec."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocol.checks import (
    MAX_ABS_OBS,
    MAX_ABS_REWARD,
    InvalidMessage,
    check_experience,
    check_gradient,
    check_params,
    check_steps,
    check_weights,
)
from protocol.codec import decode, encode
from protocol.messages import Experience, Gradient, Weights, Welcome
from protocol.rollout import GRADIENT_ROLLOUT_ARRAYS
from protocol.spec import RunSpec, SpecError
from tests.conftest import CARTPOLE, experience_arrays

N = 3  # envs per actor in these tests


def experience(arrays) -> Experience:
    return Experience(actor_id="a", incarnation="i", seq=0, learner_id="L", arrays=arrays)


def reject(reason: str, fn, *args) -> None:
    with pytest.raises(InvalidMessage) as info:
        fn(*args)
    assert info.value.reason == reason, str(info.value)


# --- check_experience ---


def test_valid_rollout_accepted(cartpole_spec, make_rollout):
    arrays = make_rollout(cartpole_spec, N)
    # One autoreset step, so one fewer transition than T * N.
    assert (
        check_experience(experience(arrays), cartpole_spec, N) == cartpole_spec.rollout_len * N - 1
    )
    # Also after a trip through the codec (read-only views of the frames).
    received = decode([bytes(memoryview(f)) for f in encode(experience(arrays))])
    assert check_experience(received, cartpole_spec, N) == cartpole_spec.rollout_len * N - 1


def test_valid_rollout_with_no_finished_episode(cartpole_spec, make_rollout):
    arrays = make_rollout(cartpole_spec, N)
    arrays["ep_returns"] = np.zeros(0, dtype="<f8")
    arrays["ep_lengths"] = np.zeros(0, dtype="<i8")
    check_experience(experience(arrays), cartpole_spec, N)


def test_valid_box_rollout(make_rollout):
    spec = RunSpec(
        env_id="Pendulum-v1",
        algo="a3c",
        num_envs=2,
        rollout_len=4,
        obs_shape=(3,),
        action_kind="box",
        action_n=0,
        action_shape=(1,),
        action_low=(-2.0,),
        action_high=(2.0,),
    )
    arrays = make_rollout(dataclasses.replace(spec, action_kind="discrete", action_n=2), 2)
    arrays["actions"] = np.zeros((4, 2, 1), dtype="<f4")
    check_experience(experience(arrays), spec, 2)
    arrays["actions"] = np.full((4, 2, 1), np.nan, dtype="<f4")
    reject("not_finite", check_experience, experience(arrays), spec, 2)
    arrays["actions"] = np.zeros((4, 2), dtype="<f4")
    reject("bad_shape", check_experience, experience(arrays), spec, 2)


def mutate(name, fn):
    def apply(arrays):
        arrays[name] = fn(arrays[name])

    return apply


def set_at(name, index, value):
    def fn(arr):
        arr = arr.copy()
        arr[index] = value
        return arr

    return mutate(name, fn)


def drop(name):
    return lambda arrays: arrays.pop(name)


T = 5  # cartpole_spec.rollout_len
CASES = {
    "obs_wrong_feature_dim": ("bad_shape", mutate("obs", lambda a: np.zeros((T + 1, N, 5), "<f4"))),
    "obs_missing_bootstrap": ("bad_shape", mutate("obs", lambda a: a[:T])),
    "obs_wrong_n": ("bad_shape", mutate("obs", lambda a: a[:, : N - 1])),
    "rewards_wrong_t": ("bad_shape", mutate("rewards", lambda a: a[: T - 1])),
    "actions_wrong_t": ("bad_shape", mutate("actions", lambda a: np.zeros((T + 1, N), "<i8"))),
    "valid_wrong_n": ("bad_shape", mutate("valid", lambda a: np.ones((T, N + 1), bool))),
    "logp_transposed": ("bad_shape", mutate("logp", lambda a: np.zeros((N, T), "<f4"))),
    "obs_float64": ("bad_dtype", mutate("obs", lambda a: a.astype("<f8"))),
    "actions_int32": ("bad_dtype", mutate("actions", lambda a: a.astype("<i4"))),
    "actions_float": ("bad_dtype", mutate("actions", lambda a: a.astype("<f4"))),
    "rewards_float64": ("bad_dtype", mutate("rewards", lambda a: a.astype("<f8"))),
    "terminated_uint8": ("bad_dtype", mutate("terminated", lambda a: a.astype("|u1"))),
    "obs_nan": ("not_finite", set_at("obs", (T, N - 1, 2), np.nan)),
    "obs_inf": ("not_finite", set_at("obs", (0, 0, 0), -np.inf)),
    "reward_nan": ("not_finite", set_at("rewards", (2, 1), np.nan)),
    "reward_inf": ("not_finite", set_at("rewards", (0, 0), np.inf)),
    "logp_nan": ("not_finite", set_at("logp", (1, 1), np.nan)),
    "reward_huge": ("out_of_range", set_at("rewards", (4, 2), MAX_ABS_REWARD * 2)),
    "obs_huge": ("out_of_range", set_at("obs", (1, 0, 3), -MAX_ABS_OBS * 2)),
    "reward_huge_negative": ("out_of_range", set_at("rewards", (0, 1), -MAX_ABS_REWARD * 2)),
    "action_negative": ("out_of_range", set_at("actions", (3, 0), -1)),
    "action_equal_n": ("out_of_range", set_at("actions", (0, 2), 2)),
    "action_huge": ("out_of_range", set_at("actions", (T - 1, N - 1), 2**40)),
    "missing_obs": ("missing_array", drop("obs")),
    "missing_valid": ("missing_array", drop("valid")),
    "missing_ep_lengths": ("missing_array", drop("ep_lengths")),
    "ep_arrays_mismatched": (
        "bad_shape",
        mutate("ep_lengths", lambda a: np.array([2, 3], "<i8")),
    ),
    "ep_returns_2d": ("bad_shape", mutate("ep_returns", lambda a: a.reshape(1, 1))),
    "ep_lengths_float": ("bad_dtype", mutate("ep_lengths", lambda a: a.astype("<f8"))),
    "ep_lengths_zero": ("out_of_range", set_at("ep_lengths", 0, 0)),
    "ep_lengths_negative": ("out_of_range", set_at("ep_lengths", 0, -4)),
    "ep_returns_nan": ("not_finite", set_at("ep_returns", 0, np.nan)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_rollout_rejected(case, cartpole_spec, make_rollout):
    reason, change = CASES[case]
    arrays = make_rollout(cartpole_spec, N)
    change(arrays)
    reject(reason, check_experience, experience(arrays), cartpole_spec, N)


def test_action_range_edges_accepted(cartpole_spec, make_rollout):
    arrays = make_rollout(cartpole_spec, N)
    arrays["actions"] = np.zeros((T, N), "<i8")
    arrays["actions"][0, 0] = cartpole_spec.action_n - 1
    arrays["rewards"][arrays["valid"]] = -MAX_ABS_REWARD  # the bound itself is allowed
    check_experience(experience(arrays), cartpole_spec, N)


def test_num_envs_is_the_callers_not_the_specs(cartpole_spec, make_rollout):
    # An actor may run a different N from the spec default; the learner passes it in.
    arrays = make_rollout(cartpole_spec, 7)
    check_experience(experience(arrays), cartpole_spec, 7)
    reject("bad_shape", check_experience, experience(arrays), cartpole_spec, N)


# --- check_params / check_gradient / check_weights ---

SHAPES = {"policy.0.weight": (3, 4), "policy.0.bias": (3,), "log_std": (1,)}


def params(prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + k: np.ones(s, dtype="<f4") for k, s in SHAPES.items()}


def episodes() -> dict[str, np.ndarray]:
    """The rollout a gradient came from (one finished episode, as conftest's rollout)."""
    rollout = experience_arrays(CARTPOLE, N)
    return {k: rollout[k] for k in GRADIENT_ROLLOUT_ARRAYS}


def gradient(arrays, env_steps: int | None = None) -> Gradient:
    if env_steps is None:
        env_steps = int(arrays["valid"].sum()) if "valid" in arrays else 0
    return Gradient(actor_id="a", incarnation="i", env_steps=env_steps, arrays=arrays)


def check_grad(msg: Gradient, shapes=SHAPES) -> int:
    return check_gradient(msg, shapes, CARTPOLE, N)


def test_valid_params_accepted():
    check_params(params(), SHAPES)
    check_weights(Weights(arrays=params()), SHAPES)
    assert check_grad(gradient({**params("grad/"), **episodes()})) == T * N - 1


PARAM_CASES = {
    "missing": ("bad_params", lambda a, p: a.pop(p + "log_std")),
    "extra": ("bad_params", lambda a, p: a.update({p + "value.0.bias": np.ones(2, "<f4")})),
    "extra_episode_name": (
        "bad_params",
        lambda a, p: a.update({p + "ep_returns": np.ones(1, "<f4")}),
    ),
    "unprefixed": ("bad_params", lambda a, p: a.update({"log_std": a.pop(p + "log_std")})),
    "wrong_shape": (
        "bad_shape",
        lambda a, p: a.update({p + "policy.0.weight": np.ones((4, 3), "<f4")}),
    ),
    "scalar_for_vector": ("bad_shape", lambda a, p: a.update({p + "log_std": np.ones((), "<f4")})),
    "float64": ("bad_dtype", lambda a, p: a.update({p + "policy.0.bias": np.ones(3, "<f8")})),
    "nan": ("not_finite", lambda a, p: a[p + "policy.0.bias"].__setitem__(1, np.nan)),
    "inf": ("not_finite", lambda a, p: a[p + "log_std"].__setitem__(0, np.inf)),
}


@pytest.mark.parametrize("case", sorted(set(PARAM_CASES) - {"unprefixed"}))
def test_bad_weights_rejected(case):
    reason, change = PARAM_CASES[case]
    arrays = params()
    change(arrays, "")
    reject(reason, check_weights, Weights(arrays=arrays), SHAPES)


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_bad_gradient_rejected(case):
    reason, change = PARAM_CASES[case]
    arrays = {**params("grad/"), **episodes()}
    change(arrays, "grad/")
    reject(reason, check_grad, gradient(arrays))


def test_gradient_needs_its_rollout_and_its_step_count_is_the_datas():
    reject("missing_array", check_grad, gradient(params("grad/")))
    bad = {**params("grad/"), **episodes()}
    # The actor's env_steps is a claim: the valid flags decide (T x N - 1 here).
    for claim in (-1, 0, T * N, 10**9):
        reject("false_claim", check_grad, gradient(bad, env_steps=claim))
    for name in ("rewards", "valid"):
        wrong = {**bad, name: bad[name][:-1]}  # one step short
        reject("bad_shape", check_grad, gradient(wrong))
    bad["ep_lengths"] = np.array([0], "<i8")
    reject("out_of_range", check_grad, gradient(bad))


@pytest.mark.parametrize("field", ["policy_loss", "value_loss", "entropy"])
def test_gradient_loss_claims_must_be_finite(field):
    msg = dataclasses.replace(gradient({**params("grad/"), **episodes()}), **{field: float("nan")})
    reject("not_finite", check_grad, msg)


def _steps(**changes) -> dict[str, np.ndarray]:
    arrays = experience_arrays(CARTPOLE, N)
    for name, (t, i, value) in changes.items():
        arrays[name][t, i] = value
    return arrays


@pytest.mark.parametrize(
    "changes",
    [
        {"terminated": (2, 0, True)},  # an end on the reset step
        {"truncated": (2, 0, True)},
        {"rewards": (2, 0, 5.0)},  # a reward on the reset step
        {"valid": (2, 0, True)},  # a transition right after an end
        {"terminated": (4, 1, True), "truncated": (3, 1, True)},  # end, then no reset
        {"valid": (3, 1, False), "rewards": (3, 1, 0.0)},  # a reset after no end
    ],
    ids=[
        "end_on_reset",
        "trunc_on_reset",
        "reward_on_reset",
        "no_reset",
        "end_then_end",
        "reset_without_end",
    ],
)
def test_flags_no_env_produces_are_refused(changes):
    reject("bad_flags", check_steps, _steps(**changes))


# --- RunSpec ---


def test_spec_round_trips_through_dict_and_wire(cartpole_spec):
    d = cartpole_spec.to_dict()
    assert d["obs_shape"] == [4] and d["model"] == {}
    assert RunSpec.from_dict(d) == cartpole_spec
    welcome = Welcome(learner_id="L", run=d, pub_port=1, temperature=1.0, seed=0)
    received = decode(encode(welcome))
    assert RunSpec.from_dict(received.run) == cartpole_spec


def test_box_spec_round_trips():
    spec = RunSpec(
        env_id="Pendulum-v1",
        algo="a3c-grad",
        num_envs=2,
        rollout_len=4,
        obs_shape=(3,),
        action_kind="box",
        action_n=0,
        action_shape=(1,),
        action_low=(-2.0,),
        action_high=(2.0,),
        env_kwargs={"g": 9.81},
        coordination="gradients",
        loss={"gamma": 0.9, "normalize_advantages": True},
    )
    out = RunSpec.from_dict(decode(encode(Welcome("L", spec.to_dict(), 1, 1.0, 0))).run)
    assert out == spec
    assert type(out.action_low) is tuple and type(out.action_low[0]) is float
    assert out.coordination == "gradients"


def test_spec_ints_accepted_for_floats(cartpole_spec):
    out = RunSpec.from_dict({**cartpole_spec.to_dict(), "heartbeat_s": 1})
    assert out.heartbeat_s == 1.0 and type(out.heartbeat_s) is float


@pytest.mark.parametrize(
    "change",
    [
        {"unknown": 1},
        {b"heartbeat_s": 0.9},
        {"gamma": 0.9},  # a loss setting travels inside "loss", not beside it
        {"num_envs": "3"},
        {"num_envs": 3.0},
        {"num_envs": True},
        {"env_id": 5},
        {"obs_shape": (4,)},  # tuples never come off the wire; lists do
        {"obs_shape": [4.0]},
        {"obs_shape": [True]},
        {"hidden": [64]},  # a network setting travels inside "model", not beside it
        {"model": [1]},
        {"model": {1: 2}},
        {"heartbeat_s": "0.99"},
        {"heartbeat_s": float("nan")},
        {"heartbeat_s": True},
        {"loss": [1]},
        {"loss": {1: 2}},
        {"env_kwargs": {1: 2}},
        {"env_kwargs": [1]},
        {"action_low": ["x"]},
        {"algo": ""},
        {"algo": "x" * 65},
        {"coordination": "ppo"},
        {"obs_dtype": "<f8"},
        {"obs_dtype": "|O"},
        {"action_kind": "multi"},
        {"num_envs": 0},
        {"rollout_len": 0},
        {"obs_shape": []},
        {"obs_shape": [4, 0]},
        {"action_n": 1},
        {"max_in_flight": 0},
        {"action_n": 1 << 23},
        {"obs_shape": [1 << 12, 1 << 12]},
        {
            "action_kind": "box",
            "action_shape": [-1, -2],
            "action_low": [0.0] * 2,
            "action_high": [1.0] * 2,
        },
        {
            "action_kind": "box",
            "action_shape": [1],
            "action_low": [float("nan")],
            "action_high": [1.0],
        },
        {"action_kind": "box", "action_shape": [1], "action_low": [1.0], "action_high": [0.0]},
        {"heartbeat_s": 0.0},
    ],
    ids=str,
)
def test_spec_from_dict_rejects(change, cartpole_spec):
    with pytest.raises(SpecError):
        RunSpec.from_dict({**cartpole_spec.to_dict(), **change})


@pytest.mark.parametrize("missing", ["env_id", "algo", "obs_shape", "action_n"])
def test_spec_from_dict_rejects_missing_required(missing, cartpole_spec):
    d = cartpole_spec.to_dict()
    del d[missing]
    with pytest.raises(SpecError, match=missing):
        RunSpec.from_dict(d)


def test_spec_from_dict_fills_defaults(cartpole_spec):
    d = {k: cartpole_spec.to_dict()[k] for k in ("env_id", "algo", "num_envs", "rollout_len")}
    d.update(obs_shape=[4], action_kind="discrete", action_n=2, coordination="sync")
    assert RunSpec.from_dict(d) == cartpole_spec


@pytest.mark.parametrize("value", [None, [], "spec", 3])
def test_spec_from_dict_rejects_non_map(value):
    with pytest.raises(SpecError):
        RunSpec.from_dict(value)


def test_box_spec_needs_matching_bounds():
    with pytest.raises(SpecError):
        RunSpec(
            env_id="P",
            algo="a3c",
            num_envs=1,
            rollout_len=1,
            obs_shape=(3,),
            action_kind="box",
            action_n=0,
            action_shape=(2,),
            action_low=(-1.0,),
            action_high=(1.0, 1.0),
        )
