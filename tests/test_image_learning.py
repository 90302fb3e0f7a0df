"""The whole image path learns: uint8 frame stacks from real actor processes, each frame
once on the wire, stacks rebuilt by the learner, the CNN chosen from the observation
space. Catch (core/envs/catch.py) shows the correct action only in its pixels, so a
return of 0.8 (a random policy scores -0.8) is reached only if every link holds."""

from __future__ import annotations

import json

import pytest

from learner.__main__ import main


@pytest.mark.slow
def test_cnn_learns_catch_from_pixels_through_real_actors(tmp_path, restore_logging):
    argv = ["--env", "zmq_a3c/Catch-v0", "--algo", "a2c", "--actors", "2", "--port", "0"]
    argv += ["--envs", "16", "--rollout-len", "16", "--lr", "1e-3", "--entropy-coef", "0.01"]
    argv += ["--target-return", "0.8", "--max-seconds", "150", "--checkpoint-every-s", "0"]
    argv += ["--run-dir", str(tmp_path)]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["solved"], summary
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["spec"]["encoder"] == "cnn"
    assert config["spec"]["frame_stack"] == 4 and config["spec"]["obs_dtype"] == "|u1"
    events = [json.loads(line) for line in (tmp_path / "learner.jsonl").read_text().splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["rejected"] == 0
