"""The shape of the house, read statically with ``ast`` (nothing here imports our
packages): which package may import which, and no pickle anywhere.

Four floors, no import running back up: ``scripts/`` | ``evaluate/`` | ``launch/`` -> ``learner/`` |
``actor/`` -> ``core/`` -> ``protocol/``. The two roles never import each other, and nothing
shipped imports ``scripts`` or ``tests``. Every import counts: ``import x``,
``from x import y``, relative imports, imports inside functions or under
``if TYPE_CHECKING:``, and ``importlib.import_module("x")`` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the top-level packages of ours it may not import.
FORBIDDEN = {
    "protocol": {"core", "learner", "actor", "evaluate", "launch", "scripts", "tests"},
    "core": {"actor", "learner", "evaluate", "launch", "scripts", "tests"},
    "learner": {"actor", "evaluate", "launch", "scripts", "tests"},
    "actor": {"learner", "evaluate", "launch", "scripts", "tests"},
    # evaluate reads the learner's checkpoints: it sits above the learner, beside scripts.
    "evaluate": {"actor", "launch", "scripts", "tests"},
    # Launchers start the programs as processes: they never import the learner.
    "launch": {"learner", "evaluate", "scripts", "tests"},
    "scripts": {"tests"},
}
DYNAMIC_IMPORTS = {"import_module", "__import__"}


def imported_modules(source: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, at any depth.
    ``path`` is relative to the repository root; it resolves relative imports."""
    package = list(path.with_suffix("").parts[:-1])  # for __init__.py: its own package
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
        elif isinstance(node, ast.Call) and node.args:
            func, first = node.func, node.args[0]
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (
                name in DYNAMIC_IMPORTS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                found.append((node.lineno, first.value))
    return found


def sources(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files: was it renamed? Update FORBIDDEN."
    return files


def test_the_scanner_sees_every_form_of_import():
    source = (
        "import actor.client\n"
        "from learner import server as s\n"
        "from . import codec\n"
        "from .spec import RunSpec\n"
        "def f():\n"
        "    import scripts.procs\n"
        "    importlib.import_module('tests.hostile')\n"
        "if TYPE_CHECKING:\n"
        "    from core.policy import Policy\n"
    )
    found = imported_modules(source, Path("protocol/sub/x.py"))
    assert sorted(found) == [  # ast.walk goes breadth first: sort by line
        (1, "actor.client"),
        (2, "learner"),
        (3, "protocol.sub"),
        (4, "protocol.sub.spec"),
        (6, "scripts.procs"),
        (7, "tests.hostile"),
        (9, "core.policy"),
    ]
    assert imported_modules("from .. import y\n", Path("core/envs/__init__.py")) == [(1, "core")]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_back_up_a_floor_or_across_roles(package):
    forbidden = FORBIDDEN[package]
    offending = [
        f"  {path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sources(package)
        for line, module in imported_modules(path.read_text(), path.relative_to(ROOT))
        if module.split(".")[0] in forbidden
    ]
    assert not offending, (
        f"{package}/ may not import {', '.join(sorted(forbidden))} "
        "(see 'Shape of the house' in STYLE.md); found:\n" + "\n".join(offending)
    )


# --- no pickle on any network or checkpoint path ----------------------------------------
# This covers "no `import pickle`" too, at module level or anywhere else.

PICKLING_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "cloudpickle",
    "dill",
    "msgpack_numpy",
    "shelve",
}
PICKLING_CALLS = {"send_pyobj", "recv_pyobj"}
SCANNED = ("protocol", "learner", "actor", "core", "scripts")


def pickle_uses(source: str, filename: str) -> list[str]:
    """Every way ``source`` could unpickle: imports of pickling modules (also by name,
    as in importlib.import_module("pickle")), pyzmq's *_pyobj, ``allow_pickle=True``,
    and torch.load without ``weights_only=True``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.module == "torch" and any(a.name == "load" for a in node.names):
                found.append(f"{where}: from torch import load")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = []
            if node.attr in PICKLING_CALLS:
                found.append(f"{where}: .{node.attr}")
        else:
            names = []
        found += [f"{where}: {n}" for n in names if n.split(".")[0] in PICKLING_MODULES]
        if isinstance(node, ast.Call):
            kw = {k.arg: k.value for k in node.keywords}
            allow = kw.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                found.append(f"{where}: allow_pickle")
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "load"
                and isinstance(func.value, ast.Name)
                and func.value.id == "torch"
            ):
                weights_only = kw.get("weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    found.append(f"{where}: torch.load without weights_only=True")
    return found


def test_no_pickle_on_any_network_or_checkpoint_path():
    # The scanner finds what it looks for (a scan that finds nothing must mean something).
    bad = (
        "import pickle\nimport dill as d\nfrom msgpack_numpy import patch\nimport importlib\n"
        "importlib.import_module('cPickle')\nsock.recv_pyobj()\nsock.send_pyobj(x)\n"
        "torch.load(p)\ntorch.load(p, weights_only=False)\nnp.load(p, allow_pickle=True)\n"
    )
    assert len(pickle_uses(bad, "bad.py")) == 9
    assert pickle_uses("torch.load(p, map_location='cpu', weights_only=True)\n", "ok.py") == []

    files = sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))
    assert len(files) > 20 and any(p.name == "checkpoint.py" for p in files)
    found = [hit for p in files for hit in pickle_uses(p.read_text(), str(p.relative_to(ROOT)))]
    assert found == []
