"""Defaults per environment family: what a user of that family should not have to tune.

A preset replaces the learner's defaults for the flags it names (``--preset none`` turns
it off); any flag given on the command line still wins. The loss settings it names apply
when the chosen algorithm has them. The run's config.json records what applied.

    preset = preset_for("ALE/Pong-v5")      # the "atari" preset, or None
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    family: str  # the env family (core/envs) it is for
    flags: dict[str, Any]  # learner flags (LearnerConfig field names)
    loss: dict[str, Any] = field(default_factory=dict)  # loss settings, where the algo has them
    source: str = ""


# Atari. The network is the Nature CNN chosen by --encoder auto. The numbers follow the
# published Atari settings of the A2C/PPO baselines and CleanRL's PPO (Adam, entropy
# 0.01, value 0.5, GAE 0.95, gradient norm 0.5, rewards clipped to [-1, 1] for the
# loss, 128-step rollouts) and IMPALA (asynchronous actors with an off-policy
# correction; reward clipping). The learning rate is higher than PPO's 2.5e-4 because an
# update here is one step on a large merged batch (16 envs x 128 steps per rollout,
# several rollouts per update) rather than many minibatch steps. 128-step rollouts also
# put the frame-once wire under 7.5 kB per transition (protocol/frames.py).
ATARI = Preset(
    name="atari",
    family="ale",
    flags={
        "algo": "a3c",
        "envs": 16,
        "rollout_len": 128,
        "lr": 6e-4,
        "max_grad_norm": 0.5,
        "max_batches_per_update": 4,
    },
    loss={
        "entropy_coef": 0.01,
        "value_coef": 0.5,
        "gae_lambda": 0.95,
        "normalize_advantages": True,
        "reward_clip": 1.0,
    },
    source="A2C/PPO baselines and CleanRL PPO Atari settings; IMPALA (Espeholt et al. 2018)",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (ATARI,)}


def preset_for(env_id: str, name: str = "auto") -> Preset | None:
    """The preset named ``name``; "auto": the one for the env's family, if any;
    "none": no preset."""
    if name == "none":
        return None
    if name != "auto":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: auto, none, {', '.join(PRESETS)}")
        return PRESETS[name]
    from core.envs import EnvSpecError, family_for

    try:
        family = family_for(env_id).name
    except EnvSpecError:
        return None
    return next((p for p in PRESETS.values() if p.family == family), None)
