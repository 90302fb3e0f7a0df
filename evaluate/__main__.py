"""``python -m evaluate RUN_DIR [--episodes N] [--video] [--deterministic] [--checkpoint PATH]``

Loads the newest checkpoint of a run that loads (or the one given), rebuilds the policy
from the run spec it holds, plays N episodes in this process, prints their returns and
mean ± std, and writes ``RUN_DIR/eval/eval.json``; with ``--video``, an mp4 of the first
``--video-episodes`` episodes under ``RUN_DIR/eval/``. Exit 0, or 2 with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core import coordination
from core.evaluation import Played, play, video_refusal
from learner.checkpoint import (
    CheckpointConfig,
    Checkpointer,
    UnreadableCheckpoint,
    read,
    stored_spec,
)
from protocol.spec import RunSpec, SpecError


class EvalError(Exception):
    """Something the user can fix: said in one line, exit 2."""


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m evaluate",
        description="Play a trained policy from a run's checkpoint; report returns, record video.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="the run directory (holds checkpoints/)")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play")
    p.add_argument("--video", action="store_true", help="record an mp4 under RUN_DIR/eval/")
    p.add_argument("--video-episodes", type=int, default=1, help="episodes recorded with --video")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="the most likely action (the mean for continuous actions) instead of sampling",
    )
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="this checkpoint instead of the newest"
    )
    p.add_argument(
        "--seed", type=int, default=None, help="env and sampling seed; default: run seed + 10,000"
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument(
        "--max-steps", type=int, default=1_000_000, help="stop after this many env steps in all"
    )
    args = p.parse_args(argv)
    if args.episodes < 1 or args.video_episodes < 0 or args.max_steps < 1:
        p.error("--episodes and --max-steps must be >= 1, --video-episodes >= 0")
    if not args.temperature > 0:
        p.error("--temperature must be > 0")
    return args


def load(run_dir: Path, checkpoint: Path | None) -> tuple[Path, dict]:
    if checkpoint is not None:
        try:
            return checkpoint, read(checkpoint)
        except (OSError, UnreadableCheckpoint) as exc:
            raise EvalError(f"--checkpoint {checkpoint}: {exc}") from None
    if not run_dir.is_dir():
        raise EvalError(f"{run_dir}: no such run directory")
    found = Checkpointer(CheckpointConfig(run_dir / "checkpoints")).load_latest()
    if found is None:
        raise EvalError(f"{run_dir}: no checkpoint that loads under {run_dir / 'checkpoints'}")
    return found


def evaluate(args: argparse.Namespace) -> dict:
    path, state = load(args.run_dir, args.checkpoint)
    try:
        # Any mode this code has: a checkpoint's mode does not change how a policy plays.
        spec = RunSpec.from_dict(stored_spec(state["spec"]), coordinations=coordination.names())
        model = state["trainer"]["model"]
        version = int(state["trainer"]["version"])
    except (KeyError, TypeError, SpecError) as exc:
        raise EvalError(f"{path}: not a learner checkpoint ({exc})") from None
    weights = {name: t.numpy() for name, t in model.items()}
    counters = state.get("counters", {})
    seed = (
        args.seed if args.seed is not None else int(state.get("config", {}).get("seed", 0)) + 10_000
    )
    out_dir = args.run_dir / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    videos: list[str] = []
    if args.video and (why := video_refusal(spec)):
        # The numbers are what was asked for first (`make eval` always asks for a video):
        # an env that cannot be recorded here is evaluated without one.
        print(f"evaluate: no video ({why}); evaluating without it", file=sys.stderr)
        args.video = False
    recorder = VideoRecorder(out_dir, version, fps=_fps(spec)) if args.video else None
    started = time.monotonic()
    try:
        played = play(
            spec,
            weights,
            episodes=args.episodes,
            seed=seed,
            temperature=args.temperature,
            deterministic=args.deterministic,
            max_steps=args.max_steps,
            on_frame=recorder.frame if recorder else None,
            record_episodes=args.video_episodes if recorder else 0,
        )
    except ValueError as exc:  # e.g. video of an env with neither rendering nor images
        raise EvalError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a renderer that cannot start: say which
        if not args.video:
            raise
        raise EvalError(
            f"recording failed ({type(exc).__name__}: {str(exc)[:200]}); MuJoCo renders "
            "with MUJOCO_GL=egl or osmesa, pygame with SDL_VIDEODRIVER=dummy"
        ) from None
    finally:
        if recorder is not None:
            videos = recorder.close()
    result = report(played, spec, path, version, counters, args, seed, videos)
    result["wall_s"] = round(time.monotonic() - started, 3)
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(
    played: Played,
    spec: RunSpec,
    path: Path,
    version: int,
    counters: dict,
    args: argparse.Namespace,
    seed: int,
    videos: list[str],
) -> dict:
    return {
        "env": spec.env_id,
        "algo": spec.algo,
        "checkpoint": str(path),
        "policy_version": version,
        "env_steps": int(counters.get("env_steps", 0)),
        "episodes": len(played.returns),
        "complete": played.complete,
        "returns": played.returns,
        "lengths": played.lengths,
        "mean": played.mean,
        "std": played.std,
        "deterministic": args.deterministic,
        "temperature": args.temperature,
        "seed": seed,
        "videos": videos,
    }


class VideoRecorder:
    """Frames of each recorded episode into ``episode-<i>-v<version>.mp4`` (H.264 by
    the ffmpeg that imageio-ffmpeg ships). Small frames (Atari's 84x84) are scaled up
    4x, nearest neighbour, so the video is watchable."""

    def __init__(self, out_dir: Path, version: int, fps: int) -> None:
        self.out_dir, self.version, self.fps = out_dir, version, fps
        self._writer = None
        self._episode = -1
        self.paths: list[str] = []

    def frame(self, episode: int, frame: np.ndarray) -> None:
        if episode != self._episode:
            self._close_writer()
            self._open(episode)
        if frame.shape[0] < 200:
            frame = frame.repeat(4, axis=0).repeat(4, axis=1)
        self._writer.append_data(frame)

    def _open(self, episode: int) -> None:
        import imageio.v2 as imageio  # the video writer: only needed with --video

        path = self.out_dir / f"episode-{episode}-v{self.version}.mp4"
        self._writer = imageio.get_writer(
            path, fps=self.fps, codec="libx264", macro_block_size=2, ffmpeg_log_level="error"
        )
        self._episode = episode
        self.paths.append(str(path))

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> list[str]:
        self._close_writer()
        return self.paths


def _fps(spec: RunSpec) -> int:
    from core.envs import make_vec_env

    envs = make_vec_env(spec.env_id, 1, dict(spec.env_kwargs), spec.env_family)
    try:
        return int(envs.metadata.get("render_fps") or 30)
    finally:
        envs.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    # Render off-screen: pygame (classic control, Box2D) without a window, MuJoCo through
    # EGL (headless GPUs and Mesa alike). Either can be overridden from the environment.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        result = evaluate(args)
    except EvalError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    for i, (ret, n) in enumerate(zip(result["returns"], result["lengths"], strict=True)):
        print(f"episode {i}: return {ret:.2f}, {n} steps")
    mean, std = result["mean"], result["std"]
    if mean is None:
        print(
            f"evaluate: no episode finished within --max-steps {args.max_steps}; "
            f"wrote {args.run_dir / 'eval' / 'eval.json'}",
            file=sys.stderr,
        )
        return 2
    print(
        f"{result['env']} {result['algo']} policy v{result['policy_version']} "
        f"({result['env_steps']} env steps): mean return {mean:.2f} ± {std:.2f} over "
        f"{result['episodes']} episodes"
        + ("" if result["complete"] else f" (stopped at --max-steps {args.max_steps})")
    )
    for v in result["videos"]:
        print(f"video: {v}")
    print(f"wrote {args.run_dir / 'eval' / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
