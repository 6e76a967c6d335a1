"""The test suite's own shape: no test file imports from another test file. Shared helpers
live in `tests/factories.py` (and fixtures in `conftest.py`), so running, moving or deleting
one test file never breaks another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    return any(part.startswith("test_") for part in dotted.split("."))


def imports_of_test_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of each import in ``source`` that names a ``test_*`` module, absolute
    (``from tests.web.test_x import y``, ``import tests.web.test_x``) or relative
    (``from .test_x import y``, ``from . import test_x``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if _is_test_module(module):
                found.append((node.lineno, module))
            else:
                prefix = module if module.endswith(".") else f"{module}."
                found += [
                    (node.lineno, prefix + a.name) for a in node.names if a.name.startswith("test_")
                ]
    return found


def test_the_checker_sees_every_form() -> None:
    source = "\n".join(
        [
            "from tests.web.test_web_session import web_signup",
            "import tests.leads.test_dedup",
            "from tests.leads import test_dedup",
            "from .test_board import _lead",
            "from . import test_board",
            "from tests.factories import signup",
            "import tests.jobs.handlers",
            "from tests.fakes.waha import FakeWaha",
        ]
    )
    assert [line for line, _ in imports_of_test_modules(source)] == [1, 2, 3, 4, 5]


def test_no_test_file_imports_from_another_test_file() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}: imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != Path(__file__).name
        for line, module in imports_of_test_modules(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, (
        "move shared helpers to tests/factories.py (or a fixture in a conftest.py):\n"
        + "\n".join(offenders)
    )
