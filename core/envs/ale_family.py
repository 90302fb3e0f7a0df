"""The Atari family: ``ALE/<Game>-v5`` ids (optionally ``ale_py:ALE/...``), stepped by
ale-py's own C++ vector env, ``ale_py.vector_env.AtariVectorEnv``.

Its preprocessing is the standard one (Machado et al. 2018 and the DQN/A3C papers):
84x84 grayscale, frame skip 4 with max-pooling over the last two frames, a stack of the
last 4 frames, up to 30 no-op starts, FIRE on reset, next-step autoreset. Two defaults
are changed on purpose:

- ``reward_clipping=False``: the env returns the game score, so episode returns are
  real scores; the loss clips rewards itself (``reward_clip`` in the Atari preset).
- ``episodic_life=False`` (ale-py's default, kept): an episode is a whole game, so
  returns are full-game returns, not per life.

The v5 ids keep their registered settings (sticky actions with probability 0.25, the
minimal action set, 108k frames per episode at most); ``env_kwargs`` override any of
AtariVectorEnv's arguments (``repeat_action_probability``, ``num_threads``, ...).

Threads: by default each actor's vector env steps on ``num_threads=1``. The intended
deployment is one actor process per core (the policy runs in the same process, between
env steps); a single actor on a big machine should raise it.
"""

from __future__ import annotations

import re

import gymnasium as gym

from core.envs.family import EnvSpecError

_ID = re.compile(r"^(?:ale_py:)?ALE/(?P<name>[A-Za-z0-9]+)-v5$")
# The arguments of AtariVectorEnv a run may set (its constructor's keyword arguments).
ALLOWED_KWARGS = frozenset(
    {
        "batch_size",
        "num_threads",
        "thread_affinity_offset",
        "max_num_frames_per_episode",
        "repeat_action_probability",
        "full_action_space",
        "img_height",
        "img_width",
        "stack_num",
        "frameskip",
        "maxpool",
        "noop_max",
        "episodic_life",
        "reward_clipping",
        "use_fire_reset",
    }
)


def game_of(env_id: str) -> str:
    """``ALE/SpaceInvaders-v5`` -> ``space_invaders`` (ale-py's ROM id)."""
    match = _ID.match(env_id)
    if not match:
        raise EnvSpecError(f"{env_id!r} is not an ALE v5 id (ALE/<Game>-v5)")
    try:
        import ale_py.roms
    except ImportError as exc:  # pragma: no cover - ale-py is a dependency
        raise EnvSpecError(f"{env_id}: ale-py is not installed ({exc})") from None
    name = match.group("name")
    for rom in ale_py.roms.get_all_rom_ids():
        if rom.title().replace("_", "") == name:
            return rom
    raise EnvSpecError(f"{env_id}: ale-py has no ROM for {name!r}")


class AleFamily:
    name = "ale"
    # An actor's envs as two vector envs stepped in turn: one emulates in ale-py's own
    # threads while the policy computes the other's actions (core/collector.py).
    env_groups = 2

    def matches(self, env_id: str) -> bool:
        return _ID.match(env_id) is not None

    def make(self, env_id: str, num_envs: int, env_kwargs: dict) -> gym.vector.VectorEnv:
        from ale_py.vector_env import AtariVectorEnv

        unknown = set(env_kwargs) - ALLOWED_KWARGS
        if unknown:
            raise EnvSpecError(
                f"{env_id}: unknown env kwargs {sorted(unknown)}; known: {sorted(ALLOWED_KWARGS)}"
            )
        if env_kwargs.get("batch_size", 0) not in (0, num_envs):
            # The asynchronous mode returns a subset of envs per step; the rollout
            # layout is [T, N] over all envs.
            raise EnvSpecError(f"{env_id}: batch_size (asynchronous stepping) is not supported")
        kwargs = {
            "repeat_action_probability": 0.25,
            "full_action_space": False,
            "max_num_frames_per_episode": 108_000,
            "reward_clipping": False,
            "episodic_life": False,
            "num_threads": 1,
            **env_kwargs,
        }
        try:
            return AtariVectorEnv(game=game_of(env_id), num_envs=num_envs, **kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise EnvSpecError(f"{env_id}: {exc}") from None

    def frame_stack(self, envs: gym.vector.VectorEnv) -> int:
        """Observations are [stack_num, H, W(, 3)]: stacks of frames on the first axis."""
        return int(envs.single_observation_space.shape[0])

    def reward_threshold(self, env_id: str) -> float | None:
        return None  # Atari games have none; give --target-return (or a step/time limit)
