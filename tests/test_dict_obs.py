"""Dict observations: the spec's keys, each key on the wire in its own dtype (a stacked
image key's frames once), the checks per key, each key through its own encoder, and the
learner's reproduction of the actor's log-probs. Learning through real processes is in
test_image_learning.py (CatchDict: the ball in the image, the paddle in a vector)."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from core.algos.ppo import minibatches
from core.batch import Batch
from core.envs import EnvSpecError, describe
from core.envs.family import spaces_to_spec_fields
from core.evaluation import play
from core.models import ActorCritic, ModelConfig, weights_to_arrays
from core.models.encoders import MLPEncoder, NatureCNN
from learner.config import LearnerConfig
from learner.spec import BuildError, build_spec
from protocol import decode, encode
from protocol.checks import InvalidMessage, check_experience
from protocol.messages import Experience
from protocol.rollout import PackedObs, Rollout
from protocol.spec import RunSpec, SpecError
from tests.fresh_acting import collect, learner_logp

CPU = torch.device("cpu")
ENV = "zmq_a3c/CatchDict-v0"
BOX = gym.spaces.Box(0, 1, (3,))


def dict_spec(**flags) -> RunSpec:
    return build_spec(LearnerConfig(env=ENV, algo="a2c", envs=4, rollout_len=12, **flags))


def test_a_dict_of_boxes_is_the_specs_keys_and_anything_else_is_refused_by_name():
    obs = gym.spaces.Dict({"goal": BOX, "image": gym.spaces.Box(0, 255, (2, 40, 40), np.uint8)})
    fields = spaces_to_spec_fields("x", obs, gym.spaces.Discrete(2))
    assert fields["obs_shape"] == ()
    assert fields["obs_keys"] == {
        "goal": {"shape": [3], "dtype": "<f4", "frame_stack": 0},
        "image": {"shape": [2, 40, 40], "dtype": "|u1", "frame_stack": 0},
    }
    for space, match in [
        (gym.spaces.Dict({"a": gym.spaces.Dict({"b": BOX})}), "nested Dict"),
        (gym.spaces.Dict({"a": gym.spaces.Tuple((BOX,))}), "nested Tuple"),
        (gym.spaces.Dict({"dir": gym.spaces.Discrete(4)}), "must be a Box.*one-hot"),
        (gym.spaces.Dict({"a.b": BOX}), "letters, digits"),
        (gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (2,), np.int32)}), "dtype int32"),
        (gym.spaces.Tuple((BOX, BOX)), "Tuple observation spaces are not supported"),
    ]:
        with pytest.raises(EnvSpecError, match=match):
            spaces_to_spec_fields("x", space, gym.spaces.Discrete(2))


def test_the_env_names_its_stacked_keys_and_the_spec_carries_them():
    env = describe(ENV)
    assert env["obs_keys"]["image"] == {"shape": [4, 40, 40], "dtype": "|u1", "frame_stack": 4}
    assert env["obs_keys"]["paddle"] == {"shape": [10], "dtype": "<f4", "frame_stack": 0}
    spec = dict_spec()
    assert [(p.name, p.frame_stack) for p in spec.obs_parts] == [
        ("obs/image", 4),
        ("obs/paddle", 0),
    ]
    assert RunSpec.from_dict(spec.to_dict()) == spec
    assert spec.model["encoder"] == "dict"


@pytest.mark.parametrize(
    "change, match",
    [
        ({"obs_shape": [3]}, "obs_shape is \\[\\]"),
        ({"frame_stack": 4}, "obs_shape is \\[\\]"),
        ({"obs_keys": {"a/b": {"shape": [1], "dtype": "<f4", "frame_stack": 0}}}, "letters"),
        ({"obs_keys": {"a": {"shape": [1], "dtype": "<f4"}}}, "exactly shape"),
        ({"obs_keys": {"a": {"shape": [0], "dtype": "<f4", "frame_stack": 0}}}, "positive"),
        ({"obs_keys": {"a": {"shape": [True], "dtype": "<f4", "frame_stack": 0}}}, "integers"),
        ({"obs_keys": {"a": {"shape": [1], "dtype": "<f8", "frame_stack": 0}}}, "dtype"),
        ({"obs_keys": {"a": {"shape": [3, 8], "dtype": "|u1", "frame_stack": 4}}}, "frame_stack"),
        ({"obs_keys": {"a": "x"}}, "exactly shape"),
        ({"obs_keys": {f"k{i}": {"shape": [1], "dtype": "<f4", "frame_stack": 0}
                       for i in range(65)}}, "at most 64"),
    ],
)  # fmt: skip
def test_a_spec_with_bad_keys_is_refused(change, match):
    with pytest.raises(SpecError, match=match):
        RunSpec.from_dict({**dict_spec().to_dict(), **change})


@pytest.mark.parametrize("core", ["none", "gru"])
def test_each_key_travels_in_its_own_dtype_and_the_learner_reproduces_the_actor(core):
    """Over the wire (each image frame once, the vector as float32) and back, side by
    side from two rollouts as the learner batches them: the stacks rebuilt equal the
    observations collected, and the network's log-probs equal the actor's."""
    spec = dict_spec(core=core)
    model, rollouts = collect(spec, rollouts=2)
    received = []
    for r in rollouts:
        wire = r.wire_arrays(spec)
        assert {k for k in wire if k.startswith("obs")} == {
            "obs/image/frames",
            "obs/image/stack_idx",
            "obs/paddle",
        }
        assert wire["obs/paddle"].dtype == np.float32 and wire["obs/image/frames"].dtype == np.uint8
        assert len(wire["obs/image/frames"]) < 13 * 4 * 4  # frames once, not whole stacks
        msg = decode(encode(Experience(actor_id="a", arrays=wire)))
        assert check_experience(msg, spec, 4) == r.transitions
        received.append(Rollout.from_arrays(msg.arrays))
    assert isinstance(received[0].obs["image"], PackedObs)
    batch = Batch.from_rollouts(received, CPU)  # [T+1, 8, ...] per key
    for key in ("image", "paddle"):
        whole = np.concatenate([r.obs[key] for r in rollouts], axis=1)
        np.testing.assert_array_equal(batch.obs[key].numpy(), whole)
    lp = learner_logp(model, batch)
    torch.testing.assert_close(
        lp[batch.valid], batch.behaviour_logp[batch.valid], atol=1e-5, rtol=0
    )


def test_the_checks_know_every_keys_shape_and_dtype():
    spec = dict_spec()
    _, (rollout,) = collect(spec, rollouts=1)
    arrays = rollout.wire_arrays(spec)

    def refused(change: dict, reason: str, on: RunSpec = spec) -> None:
        bad = {k: v for k, v in {**arrays, **change}.items() if v is not None}
        with pytest.raises(InvalidMessage) as err:
            check_experience(Experience(actor_id="a", arrays=bad), on, 4)
        assert err.value.reason == reason, err.value

    paddle = arrays["obs/paddle"]
    refused({"obs/paddle": None}, "missing_array")
    refused({"obs/goal": paddle}, "unexpected_array")
    refused({"obs/paddle": paddle[:, :, :9]}, "bad_shape")
    refused({"obs/paddle": paddle.astype(np.float64)}, "bad_dtype")
    refused({"obs/paddle": np.where(paddle > 0, np.inf, paddle).astype(np.float32)}, "not_finite")
    refused({"obs/image/frames": arrays["obs/image/frames"].astype(np.float32)}, "bad_dtype")
    idx = arrays["obs/image/stack_idx"].copy()
    idx[0, 0, 0] = len(arrays["obs/image/frames"])
    refused({"obs/image/stack_idx": idx}, "out_of_range")
    whole = dataclasses.replace(spec, obs_keys={**spec.obs_keys, "image": {
        "shape": [4, 40, 40], "dtype": "|u1", "frame_stack": 0}})  # fmt: skip
    refused({}, "missing_array", on=whole)  # whole stacks expected, frames sent


def test_each_key_gets_the_encoder_its_space_calls_for():
    model = ActorCritic(ModelConfig.from_spec(dict_spec()))
    parts = model.policy_encoder.parts
    assert isinstance(parts["image"], NatureCNN) and isinstance(parts["paddle"], MLPEncoder)
    assert model.value_encoder is None  # a CNN inside: one trunk for policy and value
    assert model.policy_encoder.out_dim == 512 + 64
    with pytest.raises(BuildError, match="leave it auto"):
        dict_spec(encoder="mlp")
    with pytest.raises(BuildError, match="obs-norm"):
        dict_spec(obs_norm=True)


def test_ppo_minibatches_split_every_key_alike():
    spec = dict_spec()
    _, rollouts = collect(spec, rollouts=1)
    batch = Batch.from_rollouts(rollouts, CPU)
    cfg_cols = {"minibatch_size": 24, "epochs": 1}  # two columns each
    gen = torch.Generator().manual_seed(0)
    from core import algos

    ppo = algos.get("ppo")
    targets = {"advantages": torch.zeros(12, 4)}
    for cfg in (ppo.make_config(cfg_cols), ppo.make_config({"minibatch_size": 5, "epochs": 1})):
        for mb, _ in minibatches(batch, targets, cfg, gen):
            n = mb.valid.shape[1]
            assert mb.obs["image"].shape[1:] == (n, 4, 40, 40)
            assert mb.obs["paddle"].shape[1:] == (n, 10)


def test_evaluation_plays_a_dict_policy_and_records_its_image_key():
    spec = dict_spec()
    weights = weights_to_arrays(ActorCritic(ModelConfig.from_spec(spec)))
    played = play(spec, weights, episodes=4, seed=3)
    assert played.complete and played.lengths == [9, 9, 9, 9]
    frames: list[np.ndarray] = []
    play(spec, weights, episodes=1, seed=3, on_frame=lambda i, f: frames.append(f),
         record_episodes=1)  # fmt: skip
    assert len(frames) == 10 and frames[0].shape == (40, 40, 3)
