"""The pieces Atari adds: the ale-py family, the CNN, reward clipping in the loss and the
preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.algos.a2c import A2CConfig, a2c_loss
from core.envs import EnvSpecError, describe, family_for, make_vec_env
from core.envs.ale_family import game_of
from core.models import ModelConfig
from core.models.actor_critic import ActorCritic
from core.models.encoders import default_encoder
from learner.flags import parse
from tests.conftest import small_batch


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


def test_channels_last_images_get_the_cnn_and_mean_what_their_transpose_means():
    # gymnasium's own layout, [H, W, C] (CarRacing's 96x96x3): the CNN, read as images.
    assert default_encoder((96, 96, 3), "|u1") == "cnn"
    assert default_encoder((84, 84, 1), "|u1") == "cnn"
    assert default_encoder((40, 10, 3), "|u1") == "mlp"  # too small for the CNN
    torch.manual_seed(0)
    hwc = ActorCritic(ModelConfig((48, 40, 3), "box", 2, encoder="cnn", obs_dtype="|u1"))
    chw = ActorCritic(ModelConfig((3, 48, 40), "box", 2, encoder="cnn", obs_dtype="|u1"))
    chw.load_state_dict(hwc.state_dict())  # one network: the same weights fit both
    x = torch.randint(0, 256, (2, 5, 48, 40, 3), dtype=torch.uint8)
    out_hwc, v_hwc = hwc(x)
    out_chw, v_chw = chw(x.permute(0, 1, 4, 2, 3).contiguous())
    assert out_hwc.shape[:2] == (2, 5) and v_hwc.shape == (2, 5)
    torch.testing.assert_close(out_hwc, out_chw)
    torch.testing.assert_close(v_hwc, v_chw)


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
