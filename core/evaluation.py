"""Playing a policy for whole episodes in this process: no sockets, no training.

    played = play(spec, weights, episodes=10, seed=7)
    played.returns, played.lengths, played.complete

The learner uses it to confirm a "solved" with its own eyes (``--confirm-episodes``,
learner/confirm.py) and for periodic evaluation (``--eval-every-s``); ``python -m
evaluate`` uses it on a checkpoint, with video. The returns here come from envs this
process built and stepped, not from any actor. Episodes are played side by side (one
batched forward pass per step), each env contributing only its first episode, so short
episodes are not favoured; with video, one env plays them one after another.

Frames for video come from the env's ``rgb_array`` rendering where it has one; an env
that cannot render (ale-py's vector env) is recorded from its image observations (the
newest frame of the stack: what the agent sees).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from core.envs import EnvSpecError, make_vec_env
from core.models import ModelConfig
from core.policy import Policy
from protocol.rollout import wire_obs
from protocol.spec import RunSpec


@dataclass(frozen=True)
class Played:
    returns: list[float]
    lengths: list[int]
    steps: int
    complete: bool  # all the episodes asked for were played (not cut by a step budget)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.returns)) if self.returns else None

    @property
    def std(self) -> float | None:
        return float(np.std(self.returns)) if self.returns else None


FrameFn = Callable[[int, np.ndarray], None]  # (episode index, frame [H, W, 3] uint8)


def play(
    spec: RunSpec,
    weights: Mapping[str, np.ndarray],
    *,
    episodes: int,
    seed: int,
    temperature: float = 1.0,
    deterministic: bool = False,
    max_steps: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_frame: FrameFn | None = None,
    record_episodes: int = 0,
) -> Played:
    """Play ``episodes`` whole episodes with the policy of ``weights``: sampling actions
    as the actors do, or the most likely action with ``deterministic``. Stops early
    (``complete`` False) after ``max_steps`` env steps or when ``should_stop()`` says
    so (checked every step). ``on_frame`` gets every frame of the first
    ``record_episodes`` episodes: the reset's, then one after each step (length + 1)."""
    policy = Policy(ModelConfig.from_spec(spec), temperature=temperature, seed=seed)
    policy.load(weights, version=0)
    recording = on_frame is not None and record_episodes > 0
    if not recording:
        return _side_by_side(spec, policy, episodes, seed, deterministic, max_steps, should_stop)
    envs, renders = _make_env(spec, recording)
    returns: list[float] = []
    lengths: list[int] = []
    steps = 0

    def frame(obs: np.ndarray) -> None:
        if recording and len(returns) < record_episodes:
            on_frame(len(returns), _render(envs) if renders else obs_frame(_image(obs)[0]))

    try:
        obs, _ = envs.reset(seed=seed)
        frame(obs)
        ret, length = 0.0, 0
        while len(returns) < episodes:
            if (max_steps is not None and steps >= max_steps) or (should_stop and should_stop()):
                break
            o = wire_obs(spec, obs)  # [1, *obs_shape]
            actions = policy.act_greedy(o) if deterministic else policy.act(o)[0]
            obs, reward, terminated, truncated, _ = envs.step(policy.to_env(actions))
            ret += float(reward[0])
            length += 1
            steps += 1
            frame(obs)  # the last one shows how the episode ended
            if terminated[0] or truncated[0]:
                returns.append(ret)
                lengths.append(length)
                ret, length = 0.0, 0
                # An explicit reset rather than the vector env's autoreset step.
                obs, _ = envs.reset(seed=seed + len(returns))
                policy.forget()  # a recurrent policy's memory starts again too
                frame(obs)
    finally:
        envs.close()
    return Played(returns, lengths, steps, complete=len(returns) == episodes)


# Envs played side by side when nothing is recorded: one batched forward pass per step
# for up to this many episodes (100 CartPole episodes: 500 passes instead of 50,000).
WAVE = 100


def _side_by_side(
    spec: RunSpec,
    policy: Policy,
    episodes: int,
    seed: int,
    deterministic: bool,
    max_steps: int | None,
    should_stop: Callable[[], bool] | None,
) -> Played:
    """``episodes`` episodes in waves of up to WAVE envs stepped together, each env
    contributing only its first episode: every episode counts whatever its length (an
    env that went on after a short episode would favour short ones). A wave's envs are
    seeded from ``seed`` plus the episodes played before it (the vector env spreads it)."""
    returns: list[float] = []
    lengths: list[int] = []
    steps = 0
    stopped = False
    while len(returns) < episodes and not stopped:
        k = min(WAVE, episodes - len(returns))
        envs = make_vec_env(spec.env_id, k, dict(spec.env_kwargs), spec.env_family)
        try:
            obs, _ = envs.reset(seed=seed + len(returns))  # a seed per wave
            policy.forget()  # new envs: a recurrent policy's memory starts empty
            ret = np.zeros(k)  # [k]
            length = np.zeros(k, dtype=np.int64)
            running = np.ones(k, dtype=bool)
            while running.any():
                if (max_steps is not None and steps >= max_steps) or (
                    should_stop and should_stop()
                ):
                    stopped = True
                    break
                o = wire_obs(spec, obs)  # [k, *obs_shape]
                actions = policy.act_greedy(o) if deterministic else policy.act(o)[0]
                obs, reward, terminated, truncated, _ = envs.step(policy.to_env(actions))
                ret += np.where(running, reward, 0.0)
                length += running
                steps += int(running.sum())
                running &= ~(np.asarray(terminated) | np.asarray(truncated))
        finally:
            envs.close()
        if stopped:
            break
        returns += [float(r) for r in ret]
        lengths += [int(n) for n in length]
    return Played(returns, lengths, steps, complete=len(returns) == episodes)


def _make_env(spec: RunSpec, recording: bool):
    """One env; with ``recording``, one that renders rgb frames where the env can."""
    kwargs = dict(spec.env_kwargs)
    if recording:
        try:
            envs = make_vec_env(
                spec.env_id, 1, {**kwargs, "render_mode": "rgb_array"}, spec.env_family
            )
            return envs, True
        except (EnvSpecError, TypeError):  # no render_mode argument (ale-py's vector env)
            pass
    return make_vec_env(spec.env_id, 1, kwargs, spec.env_family), False


def _image(obs) -> np.ndarray:
    """What a video shows of a batch of observations that cannot be rendered: the
    observations, or a Dict's first key that holds images (uint8 of 2 to 4 dims)."""
    if not isinstance(obs, dict):
        return obs
    images = [
        v for v in obs.values() if np.asarray(v).dtype == np.uint8 and np.ndim(v) - 1 in (2, 3, 4)
    ]
    if not images:
        raise ValueError("cannot record video: the env does not render and has no image key")
    return images[0]


def video_refusal(spec: RunSpec) -> str | None:
    """Why this run's env cannot be recorded (no rendering and no image observations,
    or a renderer that cannot start here), tried on one env's first frame; None when it
    can."""
    try:
        envs, renders = _make_env(spec, recording=True)
        try:
            obs, _ = envs.reset(seed=0)
            _render(envs) if renders else obs_frame(_image(obs)[0])
        finally:
            envs.close()
    except Exception as exc:  # noqa: BLE001 - any failure to make a frame is the answer
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def _render(envs) -> np.ndarray:
    frames = envs.render()  # one per env
    return np.asarray(frames[0], dtype=np.uint8)


def obs_frame(obs: np.ndarray) -> np.ndarray:
    """An image observation as an RGB frame [H, W, 3] uint8: the newest frame of a
    stack ([S, H, W] gray or [S, H, W, 3]), or the image itself ([H, W], [H, W, 3])."""
    if obs.dtype != np.uint8 or obs.ndim not in (2, 3, 4):
        raise ValueError(
            f"cannot record video: the env does not render and its observations "
            f"({obs.dtype} {list(obs.shape)}) are not images"
        )
    if obs.ndim == 4 or (obs.ndim == 3 and obs.shape[-1] not in (1, 3)):
        obs = obs[-1]  # the newest of the stack
    if obs.ndim == 2:
        obs = obs[..., None]
    return np.ascontiguousarray(np.broadcast_to(obs, (*obs.shape[:2], 3)))
