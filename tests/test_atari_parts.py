"""The pieces Atari adds: the ale-py family, the CNN, reward clipping in the loss, the
preset, and the training thread."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from core.algos.a2c import A2CConfig, a2c_loss
from core.batch import Batch
from core.envs import EnvSpecError, describe, family_for, make_vec_env
from core.envs.ale_family import game_of
from core.models import ModelConfig
from core.models.actor_critic import ActorCritic
from core.models.encoders import default_encoder
from learner.batching import Release, Submission
from learner.config import parse
from learner.pipeline import TrainingFailed, TrainingThread
from learner.updates import Done
from protocol.rollout import Rollout


def test_ale_ids_go_to_the_ale_family_with_stacked_uint8_frames():
    assert family_for("ALE/Pong-v5").name == "ale"
    assert family_for("ale_py:ALE/SpaceInvaders-v5").name == "ale"
    assert family_for("CartPole-v1").name == "gymnasium"
    assert game_of("ALE/SpaceInvaders-v5") == "space_invaders"
    d = describe("ALE/Pong-v5")
    assert d["obs_shape"] == (4, 84, 84) and d["obs_dtype"] == "|u1"
    assert d["frame_stack"] == 4 and d["action_n"] == 6
    with pytest.raises(EnvSpecError, match="no ROM"):
        game_of("ALE/NoSuchGame-v5")
    with pytest.raises(EnvSpecError, match="unknown env kwargs"):
        make_vec_env("ALE/Pong-v5", 1, {"render_mode": "human"})


def test_ale_returns_are_game_scores_not_clipped_rewards():
    """Breakout's bricks are worth 1, 4 and 7: with ale-py's default clipping every
    reward would be 1. A random policy on a few envs scores only 1s at first, so this
    checks the setting the family passes instead."""
    envs = make_vec_env("ALE/Breakout-v5", 2, {})
    try:
        envs.reset(seed=0)
        total = 0.0
        for _ in range(400):
            _, r, *_ = envs.step(envs.action_space.sample())
            total += float(np.abs(r).sum())
            assert set(np.unique(r)) <= {0.0, 1.0, 4.0, 7.0}
        assert total > 0
    finally:
        envs.close()


def test_cnn_is_chosen_for_images_and_scales_uint8_inside():
    assert default_encoder((4, 84, 84), "|u1") == "cnn"
    assert default_encoder((4,), "<f4") == "mlp"
    assert default_encoder((4, 10, 10), "|u1") == "mlp"  # too small for the CNN
    torch.manual_seed(0)
    as_u8 = ActorCritic(
        ModelConfig((4, 40, 40), "discrete", 3, encoder="cnn", obs_dtype="|u1")
    ).eval()
    as_f32 = ActorCritic(
        ModelConfig((4, 40, 40), "discrete", 3, encoder="cnn", obs_dtype="<f4")
    ).eval()
    as_f32.load_state_dict(as_u8.state_dict())
    x = torch.randint(0, 256, (2, 5, 4, 40, 40), dtype=torch.uint8)
    out_u8, v_u8 = as_u8(x)
    out_f, v_f = as_f32(x.float() / 255.0)
    assert out_u8.shape == (2, 5, 3) and v_u8.shape == (2, 5)
    torch.testing.assert_close(out_u8, out_f)
    torch.testing.assert_close(v_u8, v_f)


def small_batch(rewards: float) -> Batch:
    t, n = 4, 2
    rng = np.random.default_rng(0)
    r = Rollout(
        obs=rng.standard_normal((t + 1, n, 3)).astype(np.float32),
        actions=rng.integers(0, 2, (t, n)),
        logp=np.full((t, n), -np.log(2), np.float32),
        rewards=np.full((t, n), rewards, np.float32),
        terminated=np.zeros((t, n), bool),
        truncated=np.zeros((t, n), bool),
        valid=np.ones((t, n), bool),
        ep_returns=np.zeros(0),
        ep_lengths=np.zeros(0, np.int64),
    )
    return Batch.from_rollouts([r], torch.device("cpu"))


def test_reward_clip_applies_in_the_loss_only():
    torch.manual_seed(0)
    model = ActorCritic(ModelConfig((3,), "discrete", 2))
    clipped = a2c_loss(model, small_batch(5.0), A2CConfig(reward_clip=1.0))
    unit = a2c_loss(model, small_batch(1.0), A2CConfig())
    unclipped = a2c_loss(model, small_batch(5.0), A2CConfig())
    torch.testing.assert_close(clipped.total, unit.total)
    assert not torch.isclose(unclipped.total, unit.total)


def test_atari_preset_applies_to_ale_ids_and_given_flags_win():
    cfg, _ = parse(["--env", "ALE/Pong-v5"])
    assert cfg.preset == "atari" and cfg.algo == "appo" and cfg.rollout_len == 80
    assert cfg.loss.reward_clip == 1.0 and cfg.loss.entropy_coef == 0.01
    cfg, _ = parse(["--env", "ALE/Pong-v5", "--rollout-len", "64", "--entropy-coef", "0"])
    assert cfg.rollout_len == 64 and cfg.loss.entropy_coef == 0.0 and cfg.loss.reward_clip == 1
    cfg, _ = parse(["--env", "ALE/Pong-v5", "--preset", "none"])
    assert cfg.preset == "none" and cfg.algo == "a2c" and cfg.loss.reward_clip == 0.0
    cfg, _ = parse(["--env", "ALE/Pong-v5", "--algo", "a3c"])  # preset loss keys it lacks: skipped
    assert cfg.algo == "a3c" and cfg.loss.reward_clip == 1.0 and not hasattr(cfg.loss, "clip")
    cfg, _ = parse(["--env", "CartPole-v1"])  # its own preset: the built-in defaults
    assert cfg.preset == "cartpole" and cfg.algo == "a2c" and cfg.rollout_len == 32


def test_bad_env_kwargs_and_presets_are_usage_errors(capsys):
    for argv in (
        ["--env-kwargs", "{nope"],
        ["--env-kwargs", "[1]"],
        ["--preset", "no-such-preset"],
    ):
        with pytest.raises(SystemExit) as info:
            parse(argv)
        assert info.value.code == 2
    assert "--env-kwargs" in capsys.readouterr().err


class FakeUpdater:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.fail, self.delay, self.computed = fail, delay, []

    def compute(self, release, prepared):
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("boom")
        self.computed.append(prepared)
        return Done(release, [], None)


def release(seq: int) -> Release:
    return Release([Submission("a", b"r", seq, 0, None)])


def test_training_thread_runs_updates_in_order_and_reports_busy_time():
    updater = FakeUpdater(delay=0.05)
    training = TrainingThread(updater, depth=2)
    try:
        training.submit(release(1), "first")
        training.submit(release(2), "second")
        assert not training.has_room
        finished: list[Done] = []
        training.drain(finished.append, timeout_s=10)
        assert [d.release.items[0].seq for d in finished] == [1, 2]
        assert updater.computed == ["first", "second"] and training.has_room
        assert training.busy_s(time.monotonic()) >= 0.1
    finally:
        training.close()


def test_queued_updates_can_be_taken_back_when_the_run_stops():
    updater = FakeUpdater(delay=0.3)
    training = TrainingThread(updater, depth=2)
    try:
        training.submit(release(1), "running")
        time.sleep(0.1)  # the first has started
        training.submit(release(2), "queued")
        taken = training.cancel_queued()
        assert [r.items[0].seq for r in taken] == [2]
        finished: list[Done] = []
        training.drain(finished.append, timeout_s=10)
        assert [d.release.items[0].seq for d in finished] == [1] and updater.computed == ["running"]
    finally:
        training.close()


def test_an_update_that_raises_is_raised_on_the_loop_thread():
    training = TrainingThread(FakeUpdater(fail=True), depth=1)
    try:
        training.submit(release(1), None)
        with pytest.raises(TrainingFailed, match="boom"):
            training.drain(lambda done: None, timeout_s=10)
    finally:
        training.close()


def test_drain_never_waits_forever():
    training = TrainingThread(FakeUpdater(delay=1.0), depth=1)
    try:
        training.submit(release(1), None)
        with pytest.raises(TrainingFailed, match="still running"):
            training.drain(lambda done: None, timeout_s=0.2)
    finally:
        training.close()


def test_a_joined_actor_gets_a_grace_period_to_build_its_envs():
    """Between Welcome and its first heartbeat an actor builds envs and network (seconds
    for Atari on a loaded machine): it is not lost after the usual timeout, only after
    JOIN_GRACE_S; once heard from, the usual timeout applies."""
    from learner.registry import JOIN_GRACE_S, ActorRecord, ActorRegistry

    def record(route: bytes) -> ActorRecord:
        return ActorRecord(
            actor_id=route.decode(), incarnation="i", routing_id=route, hostname="h", pid=1,
            num_envs=1, temperature=1.0, seed=1, index=0, joined_at=0.0, last_seen=0.0,
        )  # fmt: skip

    registry = ActorRegistry(timeout_s=3.0, max_bad=20)
    quiet, heard = record(b"quiet"), record(b"heard")
    heard.heard = True
    registry.join(quiet)
    registry.join(heard)
    assert [r.actor_id for r in registry.expire(3.5)] == ["heard"]
    assert registry.expire(JOIN_GRACE_S - 1) == []
    assert [r.actor_id for r in registry.expire(JOIN_GRACE_S + 1)] == ["quiet"]


class MixedUpdater(FakeUpdater):
    """The first update succeeds, the second raises."""

    def compute(self, release, prepared):
        if release.items[0].seq == 2:
            raise RuntimeError("second")
        return Done(release, [], None)


def test_results_that_finished_before_a_failure_are_handed_back_first():
    training = TrainingThread(MixedUpdater(), depth=2)
    try:
        training.submit(release(1), None)
        training.submit(release(2), None)
        deadline = time.monotonic() + 10
        while training._done.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        first = training.finished()
        assert [d.release.items[0].seq for d in first] == [1]
        with pytest.raises(TrainingFailed, match="second"):
            training.finished()
    finally:
        training.close()


def test_close_drops_updates_not_yet_started():
    updater = FakeUpdater(delay=0.3)
    training = TrainingThread(updater, depth=2)
    training.submit(release(1), "running")
    time.sleep(0.1)
    training.submit(release(2), "queued")
    training.close()
    assert updater.computed == ["running"] and not training.alive


def test_sync_barrier_hands_back_what_it_drops_for_an_ack():
    from learner.batching import SyncBarrier

    barrier = SyncBarrier(min_actors=1, min_actors_wait_s=1.0, barrier_timeout_s=1.0)
    barrier.offer(Submission("a", b"r", 7, 0, None), 0.0)  # collected with version 0
    assert barrier.take({"a"}, 1, 0.5) is None  # the learner is at version 1 now
    assert [s.seq for s in barrier.take_dropped()] == [7]
    assert barrier.take_dropped() == []


def test_ppo_ratio_is_bounded_against_absurd_behaviour_log_probs():
    from core.algos.ppo import PPOConfig, ppo_loss, ppo_targets

    torch.manual_seed(0)
    model = ActorCritic(ModelConfig((3,), "discrete", 2))
    batch = small_batch(1.0)
    batch = Batch(**{**batch.__dict__, "behaviour_logp": torch.full((4, 2), -1e30)})
    terms = ppo_loss(model, batch, PPOConfig(), ppo_targets(model, batch, PPOConfig()))
    assert torch.isfinite(terms.total)
