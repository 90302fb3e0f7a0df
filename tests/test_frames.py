"""Frame-stacked observations on the wire (protocol/frames.py): each frame once, rebuilt
exactly on the learner, checked like any other array, and sized up front."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.acting import build_acting
from core.batch import Batch
from core.envs import describe
from learner.admission import HelloRefused, admit_hello
from learner.registry import ActorRegistry
from protocol import frames
from protocol.checks import InvalidMessage, check_experience
from protocol.codec import decode, encode
from protocol.messages import Experience, Hello
from protocol.rollout import PackedObs, Rollout, max_envs, too_large
from protocol.spec import RunSpec

CATCH = "zmq_a3c/Catch-v0"


def stacked_sequence(rng, t1: int, n: int, s: int, hw=(5, 6), resets=(), reset_fill="copy"):
    """Observations [T+1, N, S, H, W] of envs that stack frames, with resets at the given
    (t, n): the stack then restarts from a new frame (``copy``: repeated S times, as
    Catch does; ``zeros``: zeros before it, as ale-py does)."""
    obs = np.zeros((t1, n, s, *hw), dtype=np.uint8)
    for j in range(n):
        stack = np.repeat(rng.integers(0, 256, (1, *hw), dtype=np.uint8), s, axis=0)
        for t in range(t1):
            new = rng.integers(0, 256, hw, dtype=np.uint8)
            if t > 0 and (t, j) in resets:
                stack = np.repeat(new[None], s, axis=0)
                if reset_fill == "zeros":
                    stack[:-1] = 0
            elif t > 0:
                stack = np.concatenate([stack[1:], new[None]])
            obs[t, j] = stack
    return obs


@pytest.mark.parametrize("fill", ["copy", "zeros"])
def test_pack_round_trips_through_resets(fill):
    rng = np.random.default_rng(0)
    resets = {(3, 0), (4, 0), (7, 2), (1, 1)}
    obs = stacked_sequence(rng, 9, 3, 4, resets=resets, reset_fill=fill)
    packed, idx = frames.pack(obs)
    assert np.array_equal(frames.unpack(packed, idx), obs)
    # Whole stacks at t=0, one new frame per step, whole stacks again after each reset.
    assert len(packed) == 3 * 4 + 8 * 3 + len(resets) * 3
    assert idx.dtype.str == frames.STACK_IDX_DTYPE


def test_pack_is_exact_for_observations_that_do_not_stack():
    """The rule only compares arrays: random observations (no stacking at all) still
    round-trip, every stack sent whole."""
    rng = np.random.default_rng(1)
    obs = rng.integers(0, 256, (6, 2, 3, 4, 4), dtype=np.uint8)
    packed, idx = frames.pack(obs)
    assert np.array_equal(frames.unpack(packed, idx), obs)
    assert len(packed) <= frames.max_frames(5, 2, 3)


def catch_spec(num_envs: int = 4, rollout_len: int = 12) -> RunSpec:
    return RunSpec(
        env_id=CATCH,
        algo="a2c",
        num_envs=num_envs,
        rollout_len=rollout_len,
        model={"encoder": "cnn"},
        **describe(CATCH),
    )


def test_collected_rollouts_round_trip_across_rollout_and_episode_boundaries():
    """Catch episodes end every 9 steps (terminations, then autoreset steps) and 12-step
    rollouts cut them anywhere: every rollout, decoded from the bytes, rebuilds exactly,
    alone and merged with others, in numpy and in the learner's batch."""
    spec = catch_spec()
    assert spec.frame_stack == 4
    acting = build_acting(spec, num_envs=4, seed=3, temperature=1.0)
    try:
        collected = [acting.collect() for _ in range(3)]
    finally:
        acting.close()
    assert any(r.terminated.any() for r in collected) and any((~r.valid).any() for r in collected)
    received = []
    for r in collected:
        msg = decode([bytes(f) for f in encode(Experience(arrays=r.wire_arrays(spec)))])
        assert "obs" not in msg.arrays
        check_experience(msg, spec, 4)
        received.append(Rollout.from_arrays(msg.arrays))
        assert isinstance(received[-1].obs, PackedObs)
        assert np.array_equal(received[-1].obs.unpack(), r.obs)
    merged = Rollout.concat(received)
    whole = np.concatenate([r.obs for r in collected], axis=1)
    assert np.array_equal(merged.obs.unpack(), whole)
    batch = Batch.from_rollouts(received, torch.device("cpu"))
    assert torch.equal(batch.obs, torch.from_numpy(whole))


def test_wire_bytes_per_transition_meet_the_atari_target():
    """A 4x84x84 stack is 28 kB; packed at the Atari preset's 80 steps, a transition
    without resets costs frames (T+S)/T * 7056 B plus its indices: under 7.5 kB."""
    rng = np.random.default_rng(2)
    t, n = 80, 2
    obs = stacked_sequence(rng, t + 1, n, 4, hw=(84, 84))
    packed, idx = frames.pack(obs)
    per_transition = (packed.nbytes + idx.nbytes) / (t * n)
    assert per_transition < 7500
    assert obs.nbytes / (t * n) > 28000


def packed_message(spec, **changes):
    acting = build_acting(spec, num_envs=2, seed=1, temperature=1.0)
    try:
        arrays = acting.collect().wire_arrays(spec)
    finally:
        acting.close()
    arrays.update(changes)
    return Experience(arrays={k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"stack_idx": None}, "missing_array"),
        ({"obs": np.zeros((7, 2, 4, 40, 40), np.uint8)}, "unexpected_array"),
        ({"frames": np.zeros((20, 40, 40), np.float32)}, "bad_dtype"),
        ({"frames": np.zeros((20, 40, 41), np.uint8)}, "bad_shape"),
        ({"frames": np.zeros((7 * 2 * 4 + 1, 40, 40), np.uint8)}, "bad_shape"),
        ({"stack_idx": np.full((7, 2, 4), -1, np.int32)}, "out_of_range"),
        ({"stack_idx": np.full((7, 2, 4), 10**6, np.int32)}, "out_of_range"),
        ({"stack_idx": np.zeros((7, 2, 4), np.int64)}, "bad_dtype"),
        ({"stack_idx": np.zeros((7, 3, 4), np.int32)}, "bad_shape"),
    ],
)
def test_bad_packed_observations_rejected(change, reason):
    spec = catch_spec(num_envs=2, rollout_len=6)
    msg = packed_message(spec, **change)
    with pytest.raises(InvalidMessage) as info:
        check_experience(msg, spec, 2)
    assert info.value.reason == reason


def test_whole_observations_in_an_unstacked_run_are_still_the_format():
    spec = catch_spec(num_envs=2, rollout_len=6)
    flat = RunSpec(**{**spec.__dict__, "frame_stack": 0})
    acting = build_acting(flat, num_envs=2, seed=1, temperature=1.0)
    try:
        arrays = acting.collect().wire_arrays(flat)
    finally:
        acting.close()
    assert "obs" in arrays and "frames" not in arrays
    check_experience(Experience(arrays=arrays), flat, 2)


def test_size_guard_names_the_flag_to_change():
    spec = RunSpec(
        env_id="ALE/Pong-v5",
        algo="a3c",
        num_envs=16,
        rollout_len=128,
        obs_shape=(4, 84, 84),
        obs_dtype="|u1",
        frame_stack=4,
        action_kind="discrete",
        action_n=6,
    )
    cap = 64 * 2**20
    fit = max_envs(spec, cap)
    assert fit == cap // (129 * 4 * 84 * 84)  # every stack whole: the unpacked size
    assert too_large(spec, fit, cap) == ""
    message = too_large(spec, fit + 1, cap)
    assert f"--envs {fit}" in message and "--rollout-len" in message


def test_actor_asking_for_too_many_envs_is_refused_at_hello():
    hello = Hello(actor_id="a", incarnation="i", hostname="h", pid=1, num_envs=64)
    decision = admit_hello(
        ActorRegistry(3.0, 20),
        hello,
        b"r",
        None,
        0.0,
        authenticated=False,
        run_seed=1,
        default_envs=16,
        temperatures=(1.0,),
        max_envs=31,
    )
    assert isinstance(decision, HelloRefused)
    assert decision.code == "rollout_too_large" and "--envs 31" in decision.detail


def test_spec_frame_stack_must_match_the_observation():
    base = catch_spec().__dict__
    with pytest.raises(ValueError):
        RunSpec(**{**base, "frame_stack": 3})
    with pytest.raises(ValueError):
        RunSpec(**{**base, "obs_shape": (1600,), "frame_stack": 4})
