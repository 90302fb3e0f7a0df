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


# Atari. The network is the Nature CNN chosen by --encoder auto. The algorithm is
# asynchronous PPO (Sample Factory's APPO) with CleanRL's PPO Atari settings (Adam at
# 2.5e-4 raised to 3e-4 for fewer steps per sample, clip 0.1, entropy 0.01, value 0.5,
# GAE 0.95, gradient norm 0.5, rewards clipped to [-1, 1] for the loss only), two epochs
# of 320-transition minibatches per arriving batch. The unroll of 80 steps is
# TorchBeast's IMPALA default; it also keeps the frame-once wire under 7.5 kB per
# transition (protocol/frames.py). With many actors each update lands while every other
# actor is mid-rollout, so the lag is about the number of actors: the bound is 32
# versions; the ratio against the behaviour policy corrects it.
ATARI = Preset(
    name="atari",
    family="ale",
    flags={
        "algo": "appo",
        "envs": 16,
        "rollout_len": 80,
        "lr": 3e-4,
        "max_grad_norm": 0.5,
        "max_batches_per_update": 4,
        "max_policy_lag": 32,
    },
    loss={
        "entropy_coef": 0.01,
        "value_coef": 0.5,
        "gae_lambda": 0.95,
        "normalize_advantages": True,
        "reward_clip": 1.0,
        "clip": 0.1,
        "epochs": 2,
        "minibatch_size": 320,
    },
    source="CleanRL PPO Atari settings; Sample Factory APPO; TorchBeast IMPALA unroll length",
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
