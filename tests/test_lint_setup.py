"""bin/lint's setup: its tools are vendored, it covers every Python file, CI and presubmit run it.

ruff and mypy themselves are not run here (that takes seconds to minutes): CI runs bin/lint.
"""

from __future__ import annotations

import configparser
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEV_REQUIREMENTS = REPO / "venv" / "dev-requirements.txt"
PYTHON_SCRIPT = '"exec" "python3"'  # the second line of bin/ scripts that are Python


def pins(path: Path) -> list[tuple[str, Requirement]]:
    """(file:line, requirement) for each pin of `path` and its -r includes that this interpreter selects."""
    found = []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        line = re.sub(r"(^|\s)#.*", "", text).strip()
        if line.startswith(("-r ", "--requirement ")):
            found += pins(path.parent / line.split(None, 1)[1])
        elif line:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate():
                found.append((f"{path.name}:{number}", req))
    return found


def test_every_dev_pin_has_a_wheel_for_this_interpreter() -> None:
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("the lint tools are vendored for Linux x86_64 only, the platform CI runs on")
    tags = set(sys_tags())
    wheels = [parse_wheel_filename(p.name) for p in (REPO / "pip_packages").glob("*.whl")]
    found = pins(DEV_REQUIREMENTS)
    names = {canonicalize_name(req.name) for _, req in found}
    assert {"ruff", "mypy"} <= names
    # mypy type-checks tests/, so the lint venv has everything the tests import.
    assert {canonicalize_name(req.name) for _, req in pins(REPO / "venv" / "requirements.txt")} <= names
    missing = []
    for where, req in found:
        (spec,) = req.specifier
        assert spec.operator == "==", f"{where}: {req} is not pinned to one version"
        if not any(name == canonicalize_name(req.name) and version == Version(spec.version) and tags & set(wheel_tags)
                   for name, version, _, wheel_tags in wheels):
            missing.append(f"{where}: {req}")
    assert missing == [], "no wheel in pip_packages/ for this interpreter"


def non_comment_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_lint_and_the_tests() -> None:
    lines = non_comment_lines(REPO / ".ci" / "run")
    for command in ("bin/lint", "bin/run_tests"):
        assert any(re.search(rf"(^|\s){command}(\s|$)", line) for line in lines), f".ci/run does not run {command}"
    assert subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")]).returncode == 0


def test_presubmit_runs_lint_and_checks_the_dev_requirements() -> None:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "PRESUBMIT.cfg")
    commands = [shlex.split(command) for _, command in cfg.items("Hook Scripts")]
    assert ["bin/lint"] in commands
    check = next(argv for argv in commands if argv[0] == "bin/check_requirements")
    assert "--strict" in check and "venv/requirements.txt" in check and "venv/dev-requirements.txt" in check


def test_bin_lint_is_an_executable_python_script() -> None:
    lint = REPO / "bin" / "lint"
    assert os.access(lint, os.X_OK)
    assert lint.read_text().splitlines()[1].startswith(PYTHON_SCRIPT)


def python_files() -> list[str]:
    """This checkout's *.py files, relative to it; not in venvs, hidden or git-ignored directories."""
    found = []
    for directory, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("venv", "__pycache__")]
        found += [os.path.relpath(os.path.join(directory, f), REPO) for f in files if f.endswith(".py")]
    return found


def test_lint_covers_every_python_file() -> None:
    with open(REPO / "pyproject.toml", "rb") as f:
        settings = tomllib.load(f)["tool"]
    mypy = settings["mypy"]
    assert mypy["strict"] is True
    # Whole directories, so mypy finds modules added later (cros_venv/tools/...) by itself.
    assert all((REPO / entry).is_dir() for entry in mypy["files"])
    outside = sorted(path for path in python_files() if path.split("/")[0] not in mypy["files"])
    assert outside == [], "not type-checked: add their directory to [tool.mypy] files in pyproject.toml"
    # ruff checks *.py by itself; a script without the suffix only if pyproject.toml names it.
    scripts = [p for p in [REPO / "create_venv", *sorted((REPO / "bin").iterdir())]
               if p.is_file() and not p.is_symlink() and PYTHON_SCRIPT in [*p.read_text().splitlines(), "", ""][1]]
    assert len(scripts) >= 3
    unlinted = [str(p.relative_to(REPO)) for p in scripts
                if str(p.relative_to(REPO)) not in settings["ruff"]["extend-include"]]
    assert unlinted == [], "not linted: add them to [tool.ruff] extend-include in pyproject.toml"


def test_lint_venv_and_caches_are_git_ignored() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["venv/.lint-venv/bin/python", "venv/.lint-venv.lock", ".mypy_cache/x", ".ruff_cache/x"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == paths
