"""What an independent break-it session found create_venv doing wrong (each test failed
before its fix): output that cannot be written, paths a venv cannot live at, inputs a
rebuild would destroy, and an interpreter wrapper that never answers.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ToolRepo
from tests.test_create_venv import assert_complete

pytestmark = pytest.mark.e2e

REQS = "alpha==1.0\nbeta==1.0\n"


def one_error(out: subprocess.CompletedProcess[str], *words: str) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("create_venv: error: ") and all(w in line for w in words), line
    return line


def test_a_closed_stderr_still_builds(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """Cron jobs and daemons: `create_venv ... 2>&-` (Python's sys.stderr is None)."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    out = subprocess.run(["/bin/sh", "-c", 'exec "$@" 2>&-', "sh", PYTHON, str(wheelhouse.root / "create_venv"),
                          str(venv_dir), str(reqs)], env=wheelhouse.env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


def test_a_reader_that_goes_away_does_not_stop_the_build(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """`create_venv -v ... 2>&1 | head -1`: the pipe closes after the first line; the build
    goes on, and exits 0 (not 120, Python's code for a failed flush at exit)."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    proc = subprocess.Popen([PYTHON, str(wheelhouse.root / "create_venv"), "-v", str(venv_dir), str(reqs)],
                            env=wheelhouse.env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    proc.stderr.readline()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


@pytest.mark.parametrize("char", ["\t", "\n", "\x7f"], ids=["tab", "newline", "del"])
def test_a_venv_path_with_a_control_character_is_refused(wheelhouse: ToolRepo, tmp_path: Path, char: str) -> None:
    """Its scripts' #! lines could not name it (a tab ends the interpreter's name; a newline
    ends the line; other control characters are refused with them): exit 2 before anything
    is made."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / f"odd{char}dir" / "venv"
    one_error(wheelhouse.run(str(venv_dir), str(reqs)), "control character", "choose another directory")
    assert not venv_dir.parent.exists()


def test_requirements_inside_the_venv_are_refused_and_kept(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """A rebuild replaces DIR: a requirements file (or one it includes) inside it would be lost."""
    venv_dir = tmp_path / "venv"
    first = wheelhouse.requirements("r.txt", "beta==1.0\n")
    assert wheelhouse.run(str(venv_dir), str(first)).returncode == 0
    inside = venv_dir / "req.txt"
    inside.write_text(REQS)
    one_error(wheelhouse.run(str(venv_dir), str(inside)), str(inside), "inside the venv directory")
    assert inside.read_text() == REQS
    included = venv_dir / "more.txt"
    included.write_text("alpha==1.0\n")
    outer = wheelhouse.requirements("outer.txt", f"beta==1.0\n-r {included}\n")
    one_error(wheelhouse.run(str(venv_dir), str(outer)), str(included), "inside the venv directory")
    assert included.read_text() == "alpha==1.0\n"
    assert_complete(venv_dir, {"beta": "1.0"})  # the venv as it was


def test_a_cache_inside_the_venv_is_refused(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    env = wheelhouse.env(CROS_VENV_CACHE=str(venv_dir / "cache"))
    one_error(wheelhouse.run(str(venv_dir), str(reqs), env=env), "CROS_VENV_CACHE", "inside the venv directory")
    assert not venv_dir.exists()


def test_a_python_wrapper_that_never_answers_is_an_error_not_a_hang(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", REQS)
    script = tmp_path / "python-wrapper"
    script.write_text("#!/bin/sh\nexec sleep 1000\n")
    script.chmod(0o755)
    start = time.monotonic()
    out = wheelhouse.run("--python", str(script), str(tmp_path / "venv"), str(reqs), timeout=60)
    one_error(out, "is a script that did not say which interpreter it runs")
    assert time.monotonic() - start < 50  # asked once (10 s), not once by the no-op check and again by the build
    assert not (tmp_path / "venv").exists()


def test_the_closed_stderr_case_is_not_a_shell_artefact() -> None:
    """The shell form above does close fd 2 (else the first test would prove nothing)."""
    out = subprocess.run(["/bin/sh", "-c", 'exec "$@" 2>&-', "sh", PYTHON, "-c", "import sys; print(sys.stderr)"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "None"
