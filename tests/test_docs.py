"""The manual names the tests that back its claims (the README's reliability table,
docs/reliability.md, docs/*.md); a renamed or moved test must not leave it pointing at
nothing. And it says what every log line means: an event the code logs at info or above
must appear in README's "What the logs say". Read statically with ``ast``: nothing here
imports the code it checks.

A reference is ``test_file.py::test_name`` (optionally under ``tests/``, optionally with a
parametrize id in brackets), a bare ``test_file.py`` in backticks, or ``::test_name`` after
one of those in the same line, which names a test of the same file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
REFERENCE = re.compile(r"(?:tests/)?(test_\w+\.py)(?:::(test_\w+))?|::(test_\w+)")


def named_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def references(text: str) -> list[tuple[int, str, str | None]]:
    """(line, file, test or None) for every test the text names."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        current = None
        for match in REFERENCE.finditer(line):
            file, test, continued = match.groups()
            if file:
                current = file
                found.append((number, file, test))
            elif continued:
                # '::name' with no file before it in the line names nothing we can check.
                found.append((number, current or "<no file in this line>", continued))
    return found


def test_the_reference_reader_sees_each_form():
    text = "`tests/test_a.py::test_one`, `::test_two[x-1]`; `test_b.py`\n`::test_orphan`\n"
    assert references(text) == [
        (1, "test_a.py", "test_one"),
        (1, "test_a.py", "test_two"),
        (1, "test_b.py", None),
        (2, "<no file in this line>", "test_orphan"),
    ]


def test_every_test_the_docs_name_exists():
    tests = {p.name: named_tests(p) for p in (ROOT / "tests").glob("test_*.py")}
    missing = []
    for doc in DOCS:
        for line, file, test in references(doc.read_text()):
            where = f"{doc.relative_to(ROOT)}:{line}"
            if file not in tests:
                missing.append(f"{where}: no tests/{file}")
            elif test is not None and test not in tests[file]:
                missing.append(f"{where}: no {test} in tests/{file}")
    assert not missing, "\n".join(missing)
    # The check reads something: the reliability table alone names dozens of tests.
    assert sum(len(references(doc.read_text())) for doc in DOCS) > 50


LOGGING = ("info", "warning", "error", "exception", "critical")
EVENT = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[a-z]+")


def logged_events(path: Path) -> set[str]:
    """Events logged by name at info or above: ``<anything>.info("name", ...)``."""
    return {
        node.args[0].value
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in LOGGING
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and EVENT.fullmatch(node.args[0].value)
    }


def test_the_event_reader_sees_calls_across_lines(tmp_path):
    code = tmp_path / "m.py"
    code.write_text(
        'log.info("a_b", x=1)\nself.log.warning(\n    "c_d",\n)\nlog.debug("quiet")\n'
        'print("not_logged")\nlog.error(f"{x}_y")\nlog.info("Not an event")\n'
    )
    assert logged_events(code) == {"a_b", "c_d"}


def test_every_event_logged_at_info_or_above_is_in_the_logs_table():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## What the logs say") :]
    table = table[: table.index("\n## ", 1)]
    documented = set(re.findall(r"`([a-z0-9_]+)`", table))
    logged = {
        event: path
        for package in ("learner", "actor", "core", "launch", "protocol")
        for path in sorted((ROOT / package).rglob("*.py"))
        for event in logged_events(path)
    }
    assert len(logged) > 50, "the reader finds the events the code logs"
    missing = sorted(
        f"{e} ({p.relative_to(ROOT)})" for e, p in logged.items() if e not in documented
    )
    assert not missing, "README's 'What the logs say' lacks: " + ", ".join(missing)
