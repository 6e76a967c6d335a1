"""The shape of the house, checked: import contracts, page rules, file sizes, private names.

The contracts themselves are in ``pyproject.toml`` (``[tool.importlinter]``) and run in
``make lint``; here they are also shown to refuse a deliberately wrong import.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "lovedcrm"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_LINES = 800
MAX_PAGE_LINES = 500


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_page_module(path: Path) -> bool:
    parts = path.relative_to(PACKAGE).parts
    return (
        parts[0] == "web"
        or "pages" in parts
        or path.stem == "pages"
        or path.stem.endswith("_pages")  # auth/team_pages.py and the like
    )


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "refusal"),
    [
        (
            "core/bad.py",
            "from lovedcrm.leads import service\n",
            "lovedcrm.core is not allowed to import lovedcrm.leads",
        ),
        (
            "leads/bad.py",
            "from lovedcrm.messaging import inbox\n",
            "lovedcrm.leads is not allowed to import lovedcrm.messaging",
        ),
        (
            "messaging/bad.py",
            "from lovedcrm.leads import api\n",
            "lovedcrm.messaging.bad -> lovedcrm.leads.api",
        ),
    ],
)
def test_a_wrong_import_is_refused(tmp_path: Path, module: str, source: str, refusal: str) -> None:
    """A copy of the package with one wrong import added: the contracts break and say why."""
    shutil.copytree(PACKAGE, tmp_path / "src" / "lovedcrm", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src" / "lovedcrm" / module).write_text(source)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    result = _lint_imports(tmp_path, env)
    assert result.returncode != 0
    assert refusal in result.stdout.replace("\n", " ").replace("  ", " "), result.stdout


def test_no_page_writes_its_own_savepoint() -> None:
    """Pages get their roll-back from the kit (an error answer, or ``attempt``)."""
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _modules()
        if _is_page_module(path) and path.name != "kit.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "begin_nested"
    ]
    assert offenders == []


def test_no_file_is_too_long() -> None:
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines()))
        > (MAX_PAGE_LINES if _is_page_module(path) else MAX_LINES)
    }
    assert too_long == {}


def _package_of(path: Path) -> str:
    return ".".join(("lovedcrm", *path.relative_to(PACKAGE).parts[:-1]))


def test_no_private_name_is_used_outside_its_package() -> None:
    """``from lovedcrm.x.y import _name`` or ``y._name`` from another package is a private
    name crossing a boundary: make it public in the module's service instead."""
    offenders = []
    for path in _modules():
        here = _package_of(path)
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lovedcrm"):
                source = str(node.module)
                for name in node.names:
                    target = f"{source}.{name.name}"
                    aliases[name.asname or name.name] = target
                    private = name.name.startswith("_") and not name.name.startswith("__")
                    if private and not source.startswith(here):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {target}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not aliases[node.value.id].startswith(here + ".")
            ):
                offenders.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} {aliases[node.value.id]}.{node.attr}"
                )
    assert offenders == []


def test_no_import_hides_inside_a_function() -> None:
    """Imports of the product's own modules stand at the top of the module (a cycle is fixed,
    not dodged); only the command line may defer what a command alone needs."""
    offenders = []
    for path in _modules():
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lovedcrm"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
                if isinstance(node, ast.Import) and any(
                    a.name.startswith("lovedcrm") for a in node.names
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
