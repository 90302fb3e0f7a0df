"""zmq_a3c/CartPoleNoVel-v1 (core/envs/memory.py): CartPole-v1 itself, with the
velocities left out of what the policy sees."""

from __future__ import annotations

import numpy as np

from core.envs import describe, make_vec_env, reward_threshold
from core.envs.memory import ENV_ID


def test_it_is_cartpole_without_the_velocities_step_for_step():
    full, blind = make_vec_env("CartPole-v1", 4), make_vec_env(ENV_ID, 4)
    try:
        a, _ = full.reset(seed=3)
        b, _ = blind.reset(seed=3)
        np.testing.assert_array_equal(b, a[:, [0, 2]])
        rng = np.random.default_rng(0)
        ends = 0
        for _ in range(200):  # across episode ends and next-step autoresets
            act = rng.integers(0, 2, 4)
            a, ra, ta, ua, _ = full.step(act)
            b, rb, tb, ub, _ = blind.step(act)
            np.testing.assert_array_equal(b, a[:, [0, 2]])
            assert (ra == rb).all() and (ta == tb).all() and (ua == ub).all()
            ends += int(ta.sum())
        assert ends > 0
    finally:
        full.close()
        blind.close()


def test_the_run_spec_sees_two_numbers_and_the_same_target():
    fields = describe(ENV_ID)
    assert fields["obs_shape"] == (2,) and fields["action_n"] == 2
    assert reward_threshold(ENV_ID) == 475.0
