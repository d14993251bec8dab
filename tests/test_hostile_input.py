"""Hostile input to create_venv, check_requirements and vendor_wheels: one line per problem,
naming the file and line (or wheel) and the fix, never a traceback; exit 2 for bad input
(check_requirements: exit 1, its code for problems found in the files it checks).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ToolRepo, WheelSpec

pytestmark = pytest.mark.e2e

DEEP = "(" * 2000 + 'python_version >= "3"' + ")" * 2000


def run(repo: ToolRepo, command: str, reqs: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if command == "create_venv":
        return repo.run(str(tmp_path / "venv"), str(reqs))
    if command == "vendor_wheels":  # offline: it must fail before any download
        return repo.command(command, "--no-index", str(reqs))
    return repo.command(command, str(reqs))


def problem_lines(command: str, out: subprocess.CompletedProcess[str]) -> list[str]:
    """The problem lines, without the command's prefix; checks exit code and the absence of tracebacks."""
    assert "Traceback" not in out.stderr, out.stderr
    if command == "check_requirements":
        assert out.returncode == 1, out.stdout + out.stderr
        return [line for line in out.stdout.splitlines() if ": warning: " not in line]
    assert out.returncode == 2, out.stderr
    prefix = f"{command}: error: "
    assert all(line.startswith(prefix) for line in out.stderr.splitlines()), out.stderr
    return [line[len(prefix):] for line in out.stderr.splitlines()]


COMMANDS = ["create_venv", "check_requirements", "vendor_wheels"]
BAD_MARKERS = [
    pytest.param('alpha==1.0 ; python_version ~= "3"', "cannot evaluate the marker 'python_version ~= \"3\"'",
                 id="undefined-comparison"),
    pytest.param(f"alpha==1.0 ; {DEEP}", "is nested too deeply to parse", id="nested-too-deeply"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("line", "message"), BAD_MARKERS)
def test_a_marker_packaging_cannot_evaluate(wheelhouse: ToolRepo, tmp_path: Path, command: str, line: str,
                                            message: str) -> None:
    reqs = wheelhouse.requirements("r.txt", f"beta==1.0\n{line}\n")
    (problem,) = problem_lines(command, run(wheelhouse, command, reqs, tmp_path))
    assert problem.startswith(f"{reqs}:2: ") and message in problem


@pytest.mark.parametrize("command", ["create_venv", "check_requirements"])
def test_a_wheel_dependency_marker_packaging_cannot_evaluate(tool_repo: ToolRepo, tmp_path: Path,
                                                             command: str) -> None:
    tool_repo.add_wheel(WheelSpec("odd", "1.0", requires=['beta ; os_name ~= "3"']))
    reqs = tool_repo.requirements("r.txt", "odd==1.0\n")
    (problem,) = problem_lines(command, run(tool_repo, command, reqs, tmp_path))
    assert problem.startswith(f"{reqs}:1: odd-1.0-py3-none-any.whl declares 'beta ; os_name ~= \"3\"', but cannot "
                              "evaluate the marker")
    assert problem.endswith("replace the wheel with a good build, or pin another version of odd")


def test_create_venv_refuses_a_wheel_whose_metadata_lies(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    shutil.copy(wheelhouse.wheels / "beta-1.0-py3-none-any.whl", wheelhouse.wheels / "psi-1.0-py3-none-any.whl")
    reqs = wheelhouse.requirements("r.txt", "psi==1.0\n")
    assert problem_lines("create_venv", run(wheelhouse, "create_venv", reqs, tmp_path)) == [
        f"{reqs}:1: psi-1.0-py3-none-any.whl says it is beta 1.0 in its METADATA, not psi 1.0; "
        "replace it with a good wheel of psi==1.0"]
    assert not (tmp_path / "venv").exists()


@pytest.mark.parametrize("command", ["create_venv", "check_requirements"])
def test_a_directory_named_like_a_wheel_is_not_a_wheel(wheelhouse: ToolRepo, tmp_path: Path, command: str) -> None:
    odd = wheelhouse.wheels / "omega-1.0-py3-none-any.whl"
    odd.mkdir()
    reqs = wheelhouse.requirements("r.txt", "omega==1.0\n")
    lines = problem_lines(command, run(wheelhouse, command, reqs, tmp_path))
    assert lines[0].startswith(f"{reqs}:1: ") and "no wheel for omega==1.0" in lines[0]
    assert "wheels of omega present: none" in lines[0]
    if command == "check_requirements":
        assert lines[1:] == [f"{odd}:0: is a directory, not a wheel file; remove it, "
                             "or put the wheel file there"]
