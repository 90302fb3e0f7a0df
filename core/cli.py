"""Command lines from frozen config dataclasses.

Each config field carries its help line in ``metadata["help"]``; ``build_parser``
turns the fields into ``--kebab-case`` flags with their defaults shown, and
``parse_config`` builds the frozen config (whose ``__post_init__`` checks cross-field
rules). A bad value exits with argparse's usage error and the config's own message.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

C = TypeVar("C")


def arg(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A config field with a help line (and optional argparse extras, e.g. choices)."""
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(scalar type, optional?) for int | None style annotations."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_flags(parser, cls)
    return parser


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    unset_default: bool = False,
    skip: frozenset[str] = frozenset(),
    only: frozenset[str] | None = None,
    shown_defaults: Mapping[str, str] | None = None,
) -> list[str]:
    """Add a ``--kebab-case`` flag per help-carrying field of ``cls`` (those named in
    ``only``, if given; none in ``skip``); return the field names added.
    ``unset_default``: a flag left alone is absent from the parsed namespace (so a
    caller can tell a flag given on the command line from one left alone, and layer
    other sources under it) and the help shows the field's own default, or its text in
    ``shown_defaults`` where one value would mislead (a flag several owners share)."""
    hints = typing.get_type_hints(cls)
    added = []
    for f in dataclasses.fields(cls):
        if not f.init or "help" not in f.metadata or f.name in skip:
            continue
        if only is not None and f.name not in only:
            continue
        tp, optional = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"help": f.metadata["help"], "default": f.default, "dest": f.name}
        if unset_default:
            kwargs["default"] = argparse.SUPPRESS
            shown = (shown_defaults or {}).get(f.name, show(f.default))
            kwargs["help"] += f" (default: {shown})"
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            # "--flag" alone means true; "--flag false" is accepted too.
            kwargs.update(type=_bool, nargs="?", const=True, metavar="true|false")
        elif typing.get_origin(tp) is tuple:
            inner = typing.get_args(tp)[0]
            kwargs["type"] = lambda s, inner=inner: tuple(inner(x) for x in s.split(",") if x)
            kwargs["metavar"] = "A,B,..."
        else:
            kwargs["type"] = tp
        if optional:
            kwargs["help"] += " (unset: none)"
        parser.add_argument(flag, **kwargs)
        added.append(f.name)
    return added


def show(value: Any) -> str:
    """A default as the command line would write it."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def parse_config(cls: type[C], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> C:
    ns = parser.parse_args(argv)
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
