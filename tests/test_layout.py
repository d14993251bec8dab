"""The package's two audiences stay apart: create_venv's modules never import the maintainer tools.

cros_venv/*.py (and the create_venv script) is what every create_venv call may load;
cros_venv/tools/ holds the maintainer commands (check_requirements, vendor_wheels, presubmit).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

TOOLS = "cros_venv.tools"


def tools_imports(source: str, filename: str = "<string>", package: str = "cros_venv") -> list[str]:
    """Every import of cros_venv.tools (or of something in it) in `source`, as `line: statement`.

    `package` is the module's package, for relative imports. A string naming the package
    (importlib.import_module("cros_venv.tools.x"), a lazy-import table) counts too.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        if any(name == TOOLS or name.startswith(TOOLS + ".") for name in names):
            assert isinstance(node, (ast.Import, ast.ImportFrom, ast.Constant))
            found.append(f"{node.lineno}: {ast.get_source_segment(source, node) or ast.dump(node)}")
    return found


CORE = sorted((REPO / "cros_venv").glob("*.py"))


def test_core_modules_are_found() -> None:
    names = {p.name for p in CORE}
    assert {"__main__.py", "fastpath.py", "build.py", "cache.py", "lock.py", "cli.py"} <= names
    assert not names & {"check.py", "vendor.py", "presubmit.py", "targets.py", "commands.py"}


@pytest.mark.parametrize("path", [*CORE, REPO / "create_venv"], ids=lambda p: str(Path(p).relative_to(REPO)))
def test_create_venv_never_imports_the_tools(path: Path) -> None:
    found = tools_imports(path.read_text(encoding="utf-8"), str(path))
    assert not found, f"{path.relative_to(REPO)} imports the maintainer tools: {found}"


@pytest.mark.parametrize("source", [
    "import cros_venv.tools",
    "import cros_venv.tools.check as c",
    "from cros_venv.tools import targets",
    "from cros_venv.tools.commands import run",
    "from cros_venv import build, tools",
    "from . import tools",
    "from .tools import vendor",
    "from .tools.check import main",
    "def f():\n    from cros_venv.tools import presubmit\n",
    "importlib.import_module('cros_venv.tools.vendor')",
])
def test_the_check_sees_every_form_of_import(source: str) -> None:
    assert tools_imports(source)


@pytest.mark.parametrize("source", [
    "import cros_venv.toolchain",
    "from cros_venv import toolchain, build",
    "from . import toolchain",
    "from .toolchain import activate",
    "from cros_venv.toolsmith import x",
    "'cros_venv.toolchain'",
])
def test_the_check_passes_what_is_not_the_tools(source: str) -> None:
    assert not tools_imports(source)
