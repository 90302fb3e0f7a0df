"""Config files (``--config FILE``) and the presets shipped in ``configs/``: TOML files that
set learner flags.

A config file sets any learner flag, loss settings included, by its name (``envs = 16``,
``entropy_coef = 0.01``; dashes or underscores). A preset is a config file in
``configs/`` with a ``[preset]`` table saying which envs it is for:

    [preset]
    envs = ["CartPole-v1"]    # exact env ids, or
    family = "ale"            # every env of a family (core/envs), or
    action_kind = "box"       # every env with this kind of action space,
    observations = "vector"   #   optionally only with vector (or "image") observations
    source = "where the numbers came from"

Settings for one algorithm only go in a table of its name under ``algos``; they apply
when that algorithm is the one chosen (by the file, or by ``--algo``), over the file's
top-level values, and must apply to it:

    algo = "ppo"              # what runs unless --algo says otherwise
    lr = 1e-3
    [algos.a2c]               # --algo a2c: these instead
    rollout_len = 8
    lr = 7e-4

Precedence, lowest first: built-in defaults, the preset (``--preset auto`` picks the one
for ``--env``: an exact id first, then the family, then the action space), the preset's
table for the chosen algorithm, ``--config FILE`` (then its table for the algorithm), the
command line.
A preset's top-level loss settings apply where the chosen algorithm has them (a preset
serves several algorithms); a config file's must apply, as on the command line. The
run's config.json records what applied.

    preset = preset_for("ALE/Pong-v5")          # the "atari" preset, or None
    values = load_config(Path("my.toml"), known) # {flag: value}
    tables = algo_tables(Path("my.toml"), known) # {algo: {flag: value}}
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config file that cannot be used: said in one line."""


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    values: dict[str, Any]  # flag name (underscores) -> value, loss settings included
    envs: tuple[str, ...] = ()
    family: str = ""
    action_kind: str = ""
    observations: str = ""  # with action_kind: "vector" or "image" only; "": either
    source: str = ""
    loss_names: frozenset[str] = field(default_factory=frozenset)
    algos: dict[str, dict[str, Any]] = field(default_factory=dict)  # [algos.<name>] tables

    def for_algo(self, algo: str) -> Preset:
        """This preset with its table for ``algo`` (if any) over its top-level values;
        that table's loss settings must all be ``algo``'s (checked by the caller)."""
        table = self.algos.get(algo, {})
        return dataclasses.replace(self, values={**self.values, **table}, algos={})

    @property
    def flags(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k not in self.loss_names}

    @property
    def loss(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k in self.loss_names}


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _flags(data: dict[str, Any], known: set[str], where: str) -> dict[str, Any]:
    values, unknown = {}, []
    for key, value in data.items():
        name = key.replace("-", "_")
        if isinstance(value, dict):
            raise ConfigError(f"{where}: [{key}]: flags are top-level keys, not tables")
        if name not in known:
            unknown.append(key)
        values[name] = tuple(value) if isinstance(value, list) else value
    if unknown:
        raise ConfigError(f"{where}: not learner flags: {', '.join(sorted(unknown))}")
    return values


def load_config(path: Path, known: Iterable[str]) -> dict[str, Any]:
    """{flag: value} of a config file's top level; every key must be a learner flag in
    ``known``. The ``[preset]`` table (the match of a shipped preset) and the ``[algos.*]``
    tables (``algo_tables``) are left out."""
    data = _read(path)
    if isinstance(data.get("preset"), dict):  # the [preset] table; preset = "x" is a flag
        del data["preset"]
    data.pop("algos", None)
    if "config" in data:
        raise ConfigError(f"{path}: config = ... has no meaning inside a config file")
    return _flags(data, set(known), str(path))


def algo_tables(path: Path, known: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{algorithm: {flag: value}} of a config file's ``[algos.<name>]`` tables: settings
    for that algorithm only. The algorithm names are checked where they are used."""
    tables = _read(path).get("algos", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: algos must be tables, [algos.<algorithm>]")
    out = {}
    for name, table in tables.items():
        where = f"{path} [algos.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table of flags")
        out[name] = _flags(table, set(known), where)
        if "algo" in out[name]:
            raise ConfigError(f"{where}: cannot set algo (it is the table's name)")
    return out


def load_preset(path: Path, known: Iterable[str], loss_names: Iterable[str]) -> Preset:
    known = list(known)
    try:
        meta = tomllib.loads(path.read_text(encoding="utf-8")).get("preset", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Preset(
        name=path.stem,
        path=path,
        values=load_config(path, known),
        algos=algo_tables(path, known),
        envs=tuple(meta.get("envs", ())),
        family=str(meta.get("family", "")),
        action_kind=str(meta.get("action_kind", "")),
        observations=str(meta.get("observations", "")),
        source=str(meta.get("source", "")),
        loss_names=frozenset(loss_names),
    )


def shipped(known: Iterable[str], loss_names: Iterable[str]) -> dict[str, Preset]:
    """The presets in configs/ by name (the file's stem). ConfigError when configs/ is
    not there: a wheel built from this project does not carry it, and a learner that
    silently trained Pong without its preset would be worse than one that says so."""
    if not CONFIGS_DIR.is_dir():
        raise ConfigError(
            f"no presets: {CONFIGS_DIR} is missing (the configs/ directory of a checkout, "
            "which an installed wheel does not carry); run from a checkout (pip install -e "
            "., as make does), or pass --preset none with your own --config FILE"
        )
    known, loss_names = list(known), list(loss_names)
    return {p.stem: load_preset(p, known, loss_names) for p in sorted(CONFIGS_DIR.glob("*.toml"))}


def preset_for(
    env_id: str, name: str, known: Iterable[str], loss_names: Iterable[str]
) -> Preset | None:
    """The preset named ``name``; "auto": the one for ``env_id`` (an exact id first,
    then its family, then its kind of action space), if any; "none": no preset."""
    if name == "none":
        return None
    presets = shipped(known, loss_names)
    if name != "auto":
        if name not in presets:
            raise ConfigError(
                f"unknown preset {name!r}; known: auto, none, {', '.join(sorted(presets))}"
            )
        return presets[name]
    for p in presets.values():
        if env_id in p.envs:
            return p
    from core.envs import EnvSpecError, describe, family_for

    try:
        family = family_for(env_id).name
    except EnvSpecError:
        return None
    found = next((p for p in presets.values() if p.family and p.family == family), None)
    if found is not None or not any(p.action_kind for p in presets.values()):
        return found
    try:
        env = describe(env_id)  # builds the env once to read its spaces
    except Exception:  # noqa: BLE001 - the build makes the env again and reports why not
        return None
    obs = "dict" if env.get("obs_keys") else "image" if env["obs_dtype"] == "|u1" else "vector"
    return next(
        (
            p
            for p in presets.values()
            if p.action_kind == env["action_kind"] and p.observations in ("", obs)
        ),
        None,
    )
