"""python -m evaluate: a policy from a run's checkpoint played here, reported, recorded."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest

from core.envs import describe
from core.evaluation import obs_frame, play, video_refusal
from core.models import ActorCritic, ModelConfig, weights_to_arrays
from evaluate.__main__ import main
from protocol.spec import RunSpec
from scripts.procs import python_path

ROOT = python_path()


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """A short serial CartPole run: its final checkpoint is what evaluate reads."""
    run = tmp_path_factory.mktemp("run")
    subprocess.run(
        [sys.executable, "-m", "learner", "--serial", "--max-env-steps", "20000",
         "--run-dir", str(run)],
        check=True, cwd=ROOT, capture_output=True, timeout=300,
    )  # fmt: skip
    return run


def test_evaluate_writes_returns_and_a_playable_video(cartpole_run, capsys):
    assert main([str(cartpole_run), "--episodes", "5", "--video"]) == 0
    result = json.loads((cartpole_run / "eval" / "eval.json").read_text())
    assert len(result["returns"]) == len(result["lengths"]) == 5 and result["complete"]
    assert result["mean"] == pytest.approx(np.mean(result["returns"]))
    assert result["std"] == pytest.approx(np.std(result["returns"]))
    assert result["env_steps"] >= 20000 and result["policy_version"] > 0
    assert result["checkpoint"].endswith(".pt")
    # CartPole's return is its length; a trained policy does better than random (~22).
    assert result["returns"] == [float(n) for n in result["lengths"]]
    assert result["mean"] > 30
    [video] = result["videos"]
    reader = imageio.get_reader(video)  # its len() is inf: count by iterating
    first, count = None, 0
    for frame in reader:
        first = frame if first is None else first
        count += 1
    reader.close()
    # Every frame of the first episode: the reset's, then one per step.
    assert count == result["lengths"][0] + 1
    assert first.shape == (400, 600, 3) and first.std() > 0
    out = capsys.readouterr().out
    assert "mean return" in out and video in out


def test_deterministic_evaluation_repeats_exactly(cartpole_run):
    runs = []
    for _ in range(2):
        assert main([str(cartpole_run), "--episodes", "3", "--deterministic", "--seed", "5"]) == 0
        runs.append(json.loads((cartpole_run / "eval" / "eval.json").read_text()))
    assert runs[0]["returns"] == runs[1]["returns"] and runs[0]["deterministic"]


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "no checkpoint that loads" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(tmp_path), "--checkpoint", str(bad)]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_a_budget_that_ends_no_episode_says_so_and_exits_2(cartpole_run, capsys):
    assert main([str(cartpole_run), "--episodes", "3", "--max-steps", "5"]) == 2
    assert "no episode finished within --max-steps 5" in capsys.readouterr().err
    result = json.loads((cartpole_run / "eval" / "eval.json").read_text())
    assert result["returns"] == [] and result["mean"] is None and not result["complete"]


def test_an_env_that_cannot_be_recorded_is_evaluated_without_video(tmp_path, capsys):
    # MatchBits: vector observations and no rendering. `make eval` always asks for video.
    spec = RunSpec(env_id="zmq_a3c/MatchBits-v0", algo="a2c", num_envs=1, rollout_len=8,
                   **describe("zmq_a3c/MatchBits-v0"))  # fmt: skip
    assert "cannot record video" in video_refusal(spec)
    assert video_refusal(image_spec("zmq_a3c/Catch-v0")) is None  # its images are recorded
    subprocess.run(
        [sys.executable, "-m", "learner", "--serial", "--env", "zmq_a3c/MatchBits-v0",
         "--max-env-steps", "500", "--run-dir", str(tmp_path)],
        check=True, cwd=ROOT, capture_output=True, timeout=300,
    )  # fmt: skip
    assert main([str(tmp_path), "--episodes", "2", "--video"]) == 0
    captured = capsys.readouterr()
    assert "no video" in captured.err and "mean return" in captured.out
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert len(result["returns"]) == 2 and result["videos"] == []


def random_weights(spec: RunSpec) -> dict[str, np.ndarray]:
    return weights_to_arrays(ActorCritic(ModelConfig.from_spec(spec)))


def image_spec(env_id: str) -> RunSpec:
    return RunSpec(env_id=env_id, algo="appo", num_envs=1, rollout_len=8, **describe(env_id))


@pytest.mark.parametrize("env_id", ["zmq_a3c/Catch-v0", "ALE/Pong-v5"])
def test_envs_that_do_not_render_are_recorded_from_their_image_observations(env_id):
    spec = image_spec(env_id)
    frames: list[tuple[int, np.ndarray]] = []
    played = play(
        spec,
        random_weights(spec),
        episodes=1,
        seed=0,
        max_steps=40,
        on_frame=lambda ep, f: frames.append((ep, f)),
        record_episodes=1,
    )
    h, w = spec.obs_shape[-2:]
    assert len(frames) == min(played.steps, 40) + (1 if played.complete else 1)
    assert all(f.shape == (h, w, 3) and f.dtype == np.uint8 for _, f in frames)


def test_obs_frame_shapes():
    gray_stack = np.arange(4 * 6 * 5, dtype=np.uint8).reshape(4, 6, 5)
    frame = obs_frame(gray_stack)
    assert frame.shape == (6, 5, 3) and (frame[..., 0] == gray_stack[-1]).all()
    rgb_stack = np.zeros((4, 6, 5, 3), np.uint8)
    assert obs_frame(rgb_stack).shape == (6, 5, 3)
    assert obs_frame(np.zeros((6, 5, 3), np.uint8)).shape == (6, 5, 3)
    with pytest.raises(ValueError, match="not images"):
        obs_frame(np.zeros(4, np.float32))


def test_side_by_side_play_counts_each_envs_first_episode_only():
    """Episodes of very different lengths: played side by side, every env gives its
    first episode and no more, so the short ones are not over-counted; the step count
    is the sum of the episode lengths; a budget cuts it short, marked incomplete."""
    import torch

    from tests.conftest import CARTPOLE

    torch.manual_seed(0)
    weights = weights_to_arrays(ActorCritic(ModelConfig.from_spec(CARTPOLE)))
    played = play(CARTPOLE, weights, episodes=140, seed=3)  # two waves: 100 + 40
    assert played.complete and len(played.returns) == 140
    assert played.returns == [float(n) for n in played.lengths]  # CartPole: 1 per step
    assert played.steps == sum(played.lengths)
    assert len(set(played.lengths)) > 5  # a random policy: lengths vary widely
    again = play(CARTPOLE, weights, episodes=140, seed=3)
    assert again.returns == played.returns  # seeded: repeatable
    cut = play(CARTPOLE, weights, episodes=140, seed=3, max_steps=50)
    assert not cut.complete and cut.steps <= 50 + 100
