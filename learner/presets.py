"""Config files (``--config FILE``) and the presets shipped in ``configs/``: TOML files that
set learner flags.

A config file sets any learner flag, loss settings included, by its name (``envs = 16``,
``entropy_coef = 0.01``; dashes or underscores). A preset is a config file in
``configs/`` with a ``[preset]`` table saying which envs it is for:

    [preset]
    envs = ["CartPole-v1"]    # exact env ids, or
    family = "ale"            # every env of a family (core/envs), or
    action_kind = "box"       # every env with this kind of action space
    source = "where the numbers came from"

Precedence, lowest first: built-in defaults, the preset (``--preset auto`` picks the one
for ``--env``: an exact id first, then the family, then the action space),
``--config FILE``, the command line.
A preset's loss settings apply where the chosen algorithm has them (a preset serves
several algorithms); a config file's must apply, as on the command line. The run's
config.json records what applied.

    preset = preset_for("ALE/Pong-v5")          # the "atari" preset, or None
    values = load_config(Path("my.toml"), known) # {flag: value}
"""

from __future__ import annotations

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
    source: str = ""
    loss_names: frozenset[str] = field(default_factory=frozenset)

    @property
    def flags(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k not in self.loss_names}

    @property
    def loss(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k in self.loss_names}


def load_config(path: Path, known: Iterable[str]) -> dict[str, Any]:
    """{flag: value} of a config file; every key must be a learner flag in ``known``.
    A ``[preset]`` table (the match of a shipped preset) is left out."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    data.pop("preset", None)
    known = set(known)
    values, unknown = {}, []
    for key, value in data.items():
        name = key.replace("-", "_")
        if isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}]: flags are top-level keys, not tables")
        if name not in known:
            unknown.append(key)
        values[name] = tuple(value) if isinstance(value, list) else value
    if unknown:
        raise ConfigError(f"{path}: not learner flags: {', '.join(sorted(unknown))}")
    return values


def load_preset(path: Path, known: Iterable[str], loss_names: Iterable[str]) -> Preset:
    try:
        meta = tomllib.loads(path.read_text(encoding="utf-8")).get("preset", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Preset(
        name=path.stem,
        path=path,
        values=load_config(path, known),
        envs=tuple(meta.get("envs", ())),
        family=str(meta.get("family", "")),
        action_kind=str(meta.get("action_kind", "")),
        source=str(meta.get("source", "")),
        loss_names=frozenset(loss_names),
    )


def shipped(known: Iterable[str], loss_names: Iterable[str]) -> dict[str, Preset]:
    """The presets in configs/ by name (the file's stem)."""
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
        kind = describe(env_id)["action_kind"]  # builds the env once to read its spaces
    except Exception:  # noqa: BLE001 - the build makes the env again and reports why not
        return None
    return next((p for p in presets.values() if p.action_kind == kind), None)
