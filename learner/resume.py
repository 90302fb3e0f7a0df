"""What a resumed run may change: compare the checkpoint's run spec and settings with
the current ones. Pure; the shell refuses or applies and logs.

Incompatible (the checkpoint's network, optimizer state or data would not fit): the
environment, the algorithm and its coordination, the network, the observation and
action spaces, the optimizer. Everything else (learning rate, loss settings, gradient
clipping, stopping rules, actors, ports, ...) is applied from the current flags, and
the differences are reported so the log says what changed.
"""

from __future__ import annotations

from typing import Any

from learner.checkpoint import stored_spec

INCOMPATIBLE_SPEC = (
    "env_id",
    "env_family",
    "env_kwargs",
    "algo",
    "coordination",
    "obs_shape",
    "obs_dtype",
    "obs_keys",
    "action_kind",
    "action_n",
    "action_shape",
    "action_low",
    "action_high",
)
# The network (the spec's ``model`` map): every key must match, each named as its flag.
MODEL_DEFAULTS = {
    "encoder": "mlp",
    "hidden": [64, 64],
    "obs_norm": False,
    "core": "none",
    "core_size": 0,
}
INCOMPATIBLE_CONFIG = ("optimizer",)
# Settings of where and how long, not of what is learned: not worth a log line.
# Where and how the learner talks and reports: nothing a resumed run's training depends on.
IGNORED_CONFIG = (
    "resume",
    "run_dir",
    "port",
    "pub_port",
    "host",
    "advertise_host",
    "signal_exit_code",
    "address_file",
    "keys",
    "log_level",
    "console",
    "tensorboard",
    "config",
)


class IncompatibleResume(ValueError):
    """The checkpoint cannot continue under the current flags."""


def compare(
    saved_spec: dict[str, Any],
    saved_config: dict[str, Any],
    spec: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, tuple[Any, Any]]:
    """The settings that changed, as {name: (saved, now)}; raises IncompatibleResume
    naming every incompatible difference."""
    saved_spec = stored_spec(saved_spec)
    saved_model = saved_spec.get("model", {})
    saved_model, model = {**MODEL_DEFAULTS, **saved_model}, {**MODEL_DEFAULTS, **spec["model"]}
    saved_spec, spec = {**saved_spec, **saved_model}, {**spec, **model}
    bad = [k for k in INCOMPATIBLE_SPEC if saved_spec.get(k) != spec.get(k)]
    bad += [
        k for k in sorted(saved_model.keys() | model.keys()) if saved_model.get(k) != model.get(k)
    ]
    bad += [k for k in INCOMPATIBLE_CONFIG if saved_config.get(k) != config.get(k)]
    if bad:
        details = ", ".join(
            f"{k}: {_get(saved_spec, saved_config, k)!r} -> {_get(spec, config, k)!r}" for k in bad
        )
        raise IncompatibleResume(
            f"the checkpoint was trained with different {', '.join(bad)} ({details}); "
            "resume with the original settings or start a new --run-dir"
        )
    changed: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(saved_config) | set(config)):
        if key in IGNORED_CONFIG or key == "loss":
            continue
        if saved_config.get(key) != config.get(key):
            changed[key] = (saved_config.get(key), config.get(key))
    saved_loss, loss = saved_config.get("loss") or {}, config.get("loss") or {}
    for key in sorted(set(saved_loss) | set(loss)):
        if saved_loss.get(key) != loss.get(key):
            changed[key] = (saved_loss.get(key), loss.get(key))
    for key in ("num_envs", "rollout_len", "max_in_flight", "heartbeat_s"):
        if saved_spec.get(key) != spec.get(key):
            changed[key] = (saved_spec.get(key), spec.get(key))
    return changed


def _get(spec: dict, config: dict, key: str) -> Any:
    return spec[key] if key in spec else config.get(key)
