"""The run spec a learner hands its actors, from its checked settings and the
environment's spaces (the env is built once to read them). No sockets, no training.

    spec = build_spec(cfg)   # may raise BuildError
"""

from __future__ import annotations

import dataclasses

from core import algos
from core.envs import describe
from core.models import ModelConfig
from core.models.encoders import default_encoder
from learner.config import LearnerConfig
from protocol.spec import RunSpec


class BuildError(ValueError):
    """The configuration cannot run here (unknown env, no CUDA, bad keys, a checkpoint
    trained with other settings); the message says which and why."""


def build_spec(cfg: LearnerConfig) -> RunSpec:
    """The run spec actors get, from the flags and the environment's spaces."""
    env_kwargs = cfg.env_kwargs_dict
    env = describe(cfg.env, env_kwargs)
    if env.get("obs_keys"):  # a Dict: each key gets the encoder its space calls for
        if cfg.encoder != "auto":
            raise BuildError(
                f"--encoder {cfg.encoder}: {cfg.env} has Dict observations, whose keys each "
                "get their own encoder (cnn for images, mlp otherwise); leave it auto"
            )
        if cfg.obs_norm:
            raise BuildError("--obs-norm is for Box vector observations, not Dict ones")
        encoder = "dict"
    else:
        encoder = (
            cfg.encoder
            if cfg.encoder != "auto"
            else default_encoder(env["obs_shape"], env["obs_dtype"])
        )
    if cfg.obs_norm and env["obs_dtype"] == "|u1":
        raise BuildError("--obs-norm is for vector observations; images are scaled by the CNN")
    model = {"encoder": encoder, "hidden": list(cfg.hidden), "obs_norm": cfg.obs_norm}
    if cfg.core != "none":
        model.update(core=cfg.core, core_size=cfg.core_size)
    spec = RunSpec(
        env_id=cfg.env,
        algo=cfg.algo,
        coordination=cfg.algorithm.coordination,
        loss=algos.config_dict(cfg.loss),
        num_envs=cfg.envs,
        rollout_len=cfg.rollout_len,
        model=model,
        max_in_flight=cfg.max_in_flight,
        heartbeat_s=cfg.heartbeat_s,
        env_kwargs=env_kwargs,
        **env,
    )
    try:
        size = ModelConfig.from_spec(spec).core_state_size
    except ValueError as exc:  # a network the spaces cannot take
        raise BuildError(str(exc)) from None
    return dataclasses.replace(spec, core_state_size=size)
