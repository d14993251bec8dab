"""A venv built by the fast path is one pip understands: list, show, check, uninstall, reinstall."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ToolRepo, WheelSpec, venv_python

pytestmark = pytest.mark.e2e


def pip(venv_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return subprocess.run([str(venv_dir / "bin/python"), "-m", "pip", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture
def ns_venv(wheelhouse: ToolRepo, tmp_path: Path) -> Path:
    # Two wheels sharing the implicit namespace package `nsroot` (like google.protobuf and google.auth).
    wheelhouse.add_wheel(WheelSpec("ns-one", files={"nsroot/one/__init__.py": b"VERSION = '1.0'\n"}))
    wheelhouse.add_wheel(WheelSpec("ns-two", files={"nsroot/two/__init__.py": b"VERSION = '1.0'\n"}))
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\nns-one==1.0\nns-two==1.0\n")
    out = wheelhouse.run(str(tmp_path / "v"), str(reqs))
    assert out.returncode == 0, out.stderr
    return tmp_path / "v"


def test_namespace_packages_from_two_wheels_both_import(ns_venv: Path) -> None:
    out = venv_python(ns_venv, "import nsroot.one, nsroot.two; print(nsroot.one.VERSION, nsroot.two.VERSION)")
    assert out.stdout.split() == ["1.0", "1.0"], out.stderr


def test_pip_list_check_and_show(ns_venv: Path) -> None:
    listed = pip(ns_venv, "list", "--format=freeze")
    assert set(listed.stdout.split()) == {"alpha==1.0", "beta==1.0", "ns-one==1.0", "ns-two==1.0", "pip==26.0.1"}
    assert pip(ns_venv, "check").returncode == 0
    show = pip(ns_venv, "show", "-f", "alpha")
    assert show.returncode == 0
    assert "Requires: beta" in show.stdout and "Required-by: \n" in show.stdout
    files = [line.strip() for line in show.stdout.split("Files:")[1].splitlines() if line.strip()]
    assert "../../../bin/alpha-cli" in files and "alpha.py" in files and "alpha-1.0.dist-info/INSTALLER" in files
    assert "Required-by: alpha" in pip(ns_venv, "show", "beta").stdout


def test_pip_uninstall_removes_everything_and_reinstall_works(ns_venv: Path) -> None:
    site = next((ns_venv / "lib").glob("python*/site-packages"))
    venv_python(ns_venv, "import alpha")  # leave bytecode behind, as real use does
    out = pip(ns_venv, "uninstall", "-y", "alpha", "ns-one")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (site / "alpha.py").exists() and not list(site.glob("alpha-*.dist-info"))
    assert not (ns_venv / "bin/alpha-cli").exists()
    assert not (site / "nsroot" / "one").exists() and (site / "nsroot" / "two").exists()
    assert not list(site.glob("__pycache__/alpha.*"))
    out = pip(ns_venv, "install", "alpha==1.0", "ns-one==1.0")  # offline, from the venv's pip.conf
    assert out.returncode == 0, out.stdout + out.stderr
    assert subprocess.run([str(ns_venv / "bin/alpha-cli")], capture_output=True, text=True).stdout == "alpha says hi\n"
    assert pip(ns_venv, "check").returncode == 0


def test_pip_itself_runs_from_its_console_script(ns_venv: Path) -> None:
    out = subprocess.run([str(ns_venv / "bin/pip"), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("pip 26.0.1 from " + str(ns_venv))
