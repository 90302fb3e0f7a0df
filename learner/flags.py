"""The learner's command line, layered over its presets and config files in one pass:
defaults < the algorithm's own (core/algos) < preset < preset's [algos.<chosen>] table < --config file < its table <
flags given. The settings themselves, their groups and their cross-field rules are
config.py's; what a preset or a file may say is presets.py's.

    cfg, parser = parse(sys.argv[1:])   # a checked LearnerConfig, or a usage error
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import algos
from core.cli import add_flags, show
from learner.config import LearnerConfig
from learner.presets import ConfigError, algo_tables, load_config, preset_for

# The learner's flags by the part of the learner that consumes them: the sections of
# --help, and of the README's flag tables. Every field is in exactly one group.
GROUPS: dict[str, tuple[str, ...]] = {
    "what to train (build.py)": (
        "env", "env_kwargs", "config", "preset", "algo", "seed", "serial", "signal_exit_code",
    ),
    "stopping (housekeeping.py, confirm.py)": (
        "target_return", "max_env_steps", "max_seconds", "confirm_episodes",
    ),
    "actors and coordination (intake.py, batching.py)": (
        "actors", "min_actors", "min_actors_wait_s", "barrier_timeout_s", "envs",
        "rollout_len", "temperatures", "max_in_flight", "max_batches_per_update",
        "async_gather", "max_policy_lag", "weights_delay",
    ),
    "network (core/models)": ("encoder", "hidden", "core", "core_size", "obs_norm", "log_std_init"),
    "optimisation (trainer.py)": (
        "lr", "optimizer", "lr_schedule", "clip_schedule", "max_grad_norm", "reward_norm",
        "device", "torch_threads",
    ),
    "endpoints and liveness (server.py, registry.py)": (
        "host", "port", "pub_port", "keys", "insecure", "address_file", "advertise_host",
        "max_frame_bytes", "heartbeat_s", "actor_timeout_s", "max_bad_messages",
    ),
    "evaluation (playing.py)": ("eval_every_s", "eval_episodes"),
    "output (checkpoint.py, reporting.py, console.py)": (
        "run_dir", "checkpoint_every_s", "keep_checkpoints", "resume", "log_interval_s",
        "milestones", "log_level", "tensorboard", "console",
    ),
}  # fmt: skip


def build_parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """The learner's parser: its own flags in their groups (GROUPS), then every
    algorithm's loss flags. A flag left alone is absent from the parsed namespace (its
    default shows in the help), so ``parse`` can layer the sources under what the
    command line gives. Returns the parser and the loss flag names."""
    parser = argparse.ArgumentParser(
        prog="python -m learner",
        description="The learner: trains an actor-critic network on experience (or gradients) "
        "streamed by actors over ZeroMQ, and broadcasts the weights.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for title, names in GROUPS.items():
        group = parser.add_argument_group(title)
        add_flags(group, LearnerConfig, unset_default=True, only=frozenset(names))
    loss_names: list[str] = []
    group = parser.add_argument_group(
        "loss settings (core/algos): each algorithm's own default; "
        "a setting the chosen algorithm lacks is refused"
    )
    shown = loss_defaults_by_algorithm(algos.ALGORITHMS.values())
    for config in dict.fromkeys(a.config for a in algos.ALGORITHMS.values()):
        loss_names += add_flags(
            group, config, unset_default=True, skip=frozenset(loss_names), shown_defaults=shown
        )
    return parser, loss_names


def loss_defaults_by_algorithm(algorithms) -> dict[str, str]:
    """Loss setting -> its default for each algorithm that has it (the config's default
    under the algorithm's ``loss_defaults``), as --help shows it: the value alone where
    every algorithm has it with the same value, else ``a2c, a3c-grad: 0.0; a3c: 0.01``."""
    algorithms = list(algorithms)
    values: dict[str, dict[str, list[str]]] = {}
    for algo in algorithms:
        for f in dataclasses.fields(algo.config):
            if not f.init or "help" not in f.metadata:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            value = show(algo.loss_defaults.get(f.name, default))
            values.setdefault(f.name, {}).setdefault(value, []).append(algo.name)
    shown = {}
    for name, by_value in values.items():
        (value, owners), *others = by_value.items()
        if not others and len(owners) == len(algorithms):
            shown[name] = value
        else:
            shown[name] = "; ".join(f"{', '.join(who)}: {v}" for v, who in by_value.items())
    return shown


def parse(argv: Sequence[str] | None) -> tuple[LearnerConfig, argparse.ArgumentParser]:
    """Flags -> a checked LearnerConfig (exits with a usage error on a bad value).

    One pass over the command line, then the sources layered lowest first: the
    defaults, the preset (for --env, or named by --preset), its ``[algos.<chosen>]``
    table, --config's file, its table, the command line. Which preset and which
    algorithm apply is read through the same layers (the algorithm may come from the
    preset, the file or a flag); a loss setting that the chosen algorithm lacks is an
    error where it was given (a flag, the file, the preset's table) and skipped where a
    preset sets it for every algorithm."""
    parser, loss_names = build_parser()
    given = vars(parser.parse_args(argv))  # only what the command line says
    try:
        return layered(given, loss_names, parser), parser
    except ConfigError as exc:
        parser.error(str(exc))
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    raise AssertionError("unreachable: parser.error exits")


def layered(
    given: dict[str, Any], loss_names: list[str], parser: argparse.ArgumentParser
) -> LearnerConfig:
    own_flags = [f.name for f in dataclasses.fields(LearnerConfig) if f.name != "loss"]
    known = [*own_flags, *loss_names]
    defaults = {f.name: f.default for f in dataclasses.fields(LearnerConfig) if f.name != "loss"}
    typed = {a.dest: a for a in parser._actions if a.dest in known}
    file: dict[str, Any] = {}
    file_algos: dict[str, dict[str, Any]] = {}
    config = given.get("config", defaults["config"])
    if config:
        try:
            file = _typed(load_config(Path(config), known), typed)
            file_algos = {k: _typed(v, typed) for k, v in algo_tables(Path(config), known).items()}
        except ConfigError as exc:
            raise ConfigError(f"--config: {exc}") from None

    def pick(name: str, *layers: dict[str, Any]) -> Any:
        for layer in (given, *layers):
            if name in layer:
                return layer[name]
        return defaults[name]

    try:
        preset = preset_for(pick("env", file), pick("preset", file), known, loss_names)
    except ConfigError as exc:
        raise ConfigError(f"--preset: {exc}") from None
    preset_flags = _typed(preset.flags, typed) if preset else {}
    algo_name = pick("algo", file, preset_flags)
    try:
        algo = algos.get(algo_name)
    except ValueError as exc:
        raise ConfigError(f"--algo: {exc}") from None
    own_loss = {f.name for f in dataclasses.fields(algo.config)}
    where_preset = f"--preset {preset.name}" if preset else "--preset"
    for where, tables in ((where_preset, preset.algos if preset else {}), ("--config", file_algos)):
        if unknown := sorted(tables.keys() - algos.ALGORITHMS.keys()):
            raise ConfigError(f"{where}: [algos.{unknown[0]}]: unknown algorithm")
        for name, table in tables.items():  # each table, whichever algorithm is chosen now
            theirs = {f.name for f in dataclasses.fields(algos.get(name).config)}
            if foreign := sorted(k for k in table if k in loss_names and k not in theirs):
                raise ConfigError(
                    f"{where}: [algos.{name}] {', '.join(foreign)} is not a loss setting of {name}"
                )
    preset_table = _typed(preset.algos.get(algo_name, {}), typed) if preset else {}
    if foreign := sorted(k for k in preset_table if k in loss_names and k not in own_loss):
        raise ConfigError(
            f"--preset {preset.name}: [algos.{algo_name}] {', '.join(foreign)} is not a loss setting of {algo_name}"
        )
    file_table = file_algos.get(algo_name, {})
    # Lowest first. A preset's top-level loss settings apply to the algorithms that have
    # them; anything else must be the chosen algorithm's.
    preset_loss = _typed(
        {k: v for k, v in (preset.loss if preset else {}).items() if k in own_loss}, typed
    )
    layers = [
        dict(algo.loss_defaults),
        {k: v for k, v in preset_flags.items() if k not in loss_names},
        preset_loss,
        preset_table,
        file,
        file_table,
        given,
    ]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    if foreign := sorted(k for k in given if k in loss_names and k not in own_loss):
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise ConfigError(f"{flags} does not apply to --algo {algo_name}")
    in_file = {**file, **file_table}
    if foreign := sorted(k for k in in_file if k in loss_names and k not in own_loss):
        raise ConfigError(
            f"--config {config}: {', '.join(foreign)} does not apply to --algo {algo_name}"
        )
    values = {**defaults, **{k: v for k, v in merged.items() if k in own_flags}}
    values["preset"] = preset.name if preset is not None else "none"
    loss = algo.make_config({k: v for k, v in merged.items() if k in loss_names})
    return LearnerConfig(**values, loss=loss)


def _typed(values: dict[str, Any], actions: dict[str, argparse.Action]) -> dict[str, Any]:
    """A file's values read as the command line would read them, with its checks: a
    TOML ``hidden = "64,64"`` or ``hidden = [64, 64]`` is the flag's ``--hidden 64,64``,
    ``envs = 2.5`` is refused as ``--envs 2.5`` is, and a value outside a flag's choices
    is refused; ``ConfigError`` names the setting."""
    out = {}
    for key, value in values.items():
        action = actions.get(key)
        if action is None:  # not a flag here (the caller refuses unknown keys)
            out[key] = value
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        try:
            converted = action.type(text) if action.type is not None else text
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"{key} = {value!r}: {exc}") from None
        if isinstance(value, bool) and action.type is not None and converted is not value:
            raise ConfigError(f"{key} = {value!r}: expected a {action.metavar or 'value'}")
        if action.choices is not None and converted not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise ConfigError(f"{key} = {value!r}: not one of {choices}")
        out[key] = converted
    return out
