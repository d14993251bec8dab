"""End to end: create_venv builds real venvs, leaves current ones alone, survives kills and races."""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OTHER_PYTHONS, PYTHON, ToolRepo, WheelSpec, snapshot, venv_python

pytestmark = pytest.mark.e2e


def marker(venv_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((venv_dir / ".cros_venv.json").read_text())
    return data


def installed(venv_dir: Path) -> set[str]:
    return {r.split("==")[0].split("[")[0] for r in marker(venv_dir)["spec"]["requirements"]}


def assert_complete(venv_dir: Path, packages: dict[str, str]) -> None:
    """The venv has its marker, imports each package at its version, and pip agrees."""
    assert (venv_dir / ".cros_venv.json").exists()
    assert (venv_dir / ".cros_venv.owner").exists()
    code = "import importlib, sys; print(sys.prefix); " + "; ".join(
        f"print(importlib.import_module({name!r}).VERSION)" for name in packages)
    out = venv_python(venv_dir, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(venv_dir), *packages.values()]
    check = subprocess.run([str(venv_dir / "bin/python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_builds_a_working_venv(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, _ = built
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})
    assert subprocess.run([str(venv_dir / "bin/alpha-cli")], capture_output=True, text=True).stdout == "alpha says hi\n"
    spec = marker(venv_dir)["spec"]
    assert spec["requirements"] == ["alpha==1.0", "beta==1.0", "pip==26.0.1"]
    assert spec["interpreter"]["path"] == PYTHON
    assert [w["filename"] for w in spec["wheels"]] == [
        "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "pip-26.0.1-py3-none-any.whl"]
    conf = (venv_dir / "pip.conf").read_text()
    assert "no-index = true" in conf and str(repo.wheels) in conf
    assert (venv_dir / "bin/activate").exists() and "cros_venv = " in (venv_dir / "pyvenv.cfg").read_text()


def test_quiet_unless_asked(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", "beta==1.0\n")
    quiet = wheelhouse.run(str(tmp_path / "v"), str(reqs))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    loud = wheelhouse.run("-v", str(tmp_path / "w"), str(reqs))
    assert loud.returncode == 0 and "building" in loud.stderr and "wrote" in loud.stderr


def test_bin_create_venv_is_the_same_command(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    assert os.readlink(wheelhouse.root / "bin" / "create_venv") == "../create_venv"
    reqs = wheelhouse.requirements("r.txt", "beta==1.0\n")
    env = wheelhouse.env(PATH=f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}")
    out = subprocess.run([str(wheelhouse.root / "bin/create_venv"), str(tmp_path / "v"), str(reqs)],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert_complete(tmp_path / "v", {"beta": "1.0"})


def test_pip_inside_installs_vendored_wheels_offline(built: tuple[ToolRepo, Path, Path]) -> None:
    _, venv_dir, _ = built
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    out = subprocess.run([str(venv_dir / "bin/python"), "-m", "pip", "install", "gamma==1.0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert venv_python(venv_dir, "import gamma; print(gamma.VERSION)").stdout.strip() == "1.0"


def test_an_up_to_date_venv_is_left_alone(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    before = snapshot(venv_dir)
    out = repo.run(str(venv_dir), str(reqs))
    assert (out.returncode, out.stderr) == (0, "")
    out = repo.run("-v", str(venv_dir), str(reqs))  # the full path agrees
    assert out.returncode == 0 and "is up to date" in out.stderr
    assert snapshot(venv_dir) == before


def test_a_change_with_the_same_meaning_does_not_rebuild(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    inode = (venv_dir / "lib").stat().st_ino
    reqs.write_text("# reordered, renamed, commented\nBeta==1.0\r\nALPHA==1.0.0  # same pin\n")
    out = repo.run("-v", str(venv_dir), str(reqs))
    assert out.returncode == 0 and "is up to date" in out.stderr, out.stderr
    assert (venv_dir / "lib").stat().st_ino == inode
    before = snapshot(venv_dir)
    out = repo.run(str(venv_dir), str(reqs))  # the refreshed no-op key now matches
    assert out.returncode == 0 and snapshot(venv_dir) == before


def test_changed_requirements_rebuild_from_scratch(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    (venv_dir / "lib" / "stray.txt").write_text("left by someone")
    reqs.write_text("beta==2.0\ngamma[fast]==1.0\ndelta==1.0\n")
    out = repo.run(str(venv_dir), str(reqs))
    assert out.returncode == 0, out.stderr
    assert_complete(venv_dir, {"beta": "2.0", "gamma": "1.0", "delta": "1.0"})
    assert not (venv_dir / "lib" / "stray.txt").exists()
    assert venv_python(venv_dir, "import alpha").returncode != 0
    assert installed(venv_dir) == {"beta", "gamma", "delta", "pip"}
    assert not list(venv_dir.parent.glob(".venv.cros_venv-trash*"))  # the trash, or an old-style one


def test_a_venv_without_its_marker_is_wiped_and_rebuilt(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    os.unlink(venv_dir / ".cros_venv.json")
    (venv_dir / "half-written").write_text("")
    out = repo.run(str(venv_dir), str(reqs))
    assert out.returncode == 0, out.stderr
    assert not (venv_dir / "half-written").exists()
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


def test_an_unreadable_marker_means_rebuild(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    (venv_dir / ".cros_venv.json").write_text('{"noop": "garbage"')
    out = repo.run("-v", str(venv_dir), str(reqs))
    assert out.returncode == 0 and "building" in out.stderr
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


def test_killed_builds_are_finished_by_the_next_run(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    # Many files, so that a kill lands in the middle of the install.
    wheelhouse.add_wheel(WheelSpec("bulky", files={f"bulky/m{i}.py": b"X = 1\n" for i in range(2000)}))
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\nbulky==1.0\n")
    venv_dir = tmp_path / "venv"
    rng = random.Random(1234)
    for sig in (signal.SIGKILL, signal.SIGKILL, signal.SIGKILL, signal.SIGINT):
        proc = wheelhouse.start(str(venv_dir), str(reqs))
        time.sleep(rng.uniform(0.05, 0.3))
        proc.send_signal(sig)
        proc.communicate()
        if sig == signal.SIGINT and proc.returncode != 0:
            # 130 once create_venv runs; killed by the signal if it came while Python started
            assert proc.returncode in (130, -signal.SIGINT)
        if (venv_dir / ".cros_venv.json").exists():  # the marker only ever stands in a complete venv
            assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})
            shutil.rmtree(venv_dir)
    out = wheelhouse.run(str(venv_dir), str(reqs))
    assert out.returncode == 0, out.stderr
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})
    assert len(list((venv_dir / "lib").glob("python*/site-packages/bulky/*.py"))) == 2000


def test_eight_concurrent_creators(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    venv_dir = tmp_path / "venv"
    procs = [wheelhouse.start("-v", str(venv_dir), str(reqs)) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outs
    assert sum("building" in err for _, err in outs) == 1  # one builds, the others find its marker
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


def test_racing_different_requirements_end_with_one_set(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    one = wheelhouse.requirements("one.txt", "alpha==1.0\nbeta==1.0\n")
    two = wheelhouse.requirements("two.txt", "beta==2.0\ngamma[fast]==1.0\ndelta==1.0\n")
    venv_dir = tmp_path / "venv"
    procs = [wheelhouse.start(str(venv_dir), str(r)) for r in (one, two) * 4]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outs
    names = installed(venv_dir)
    site = next((venv_dir / "lib").glob("python*/site-packages"))
    on_disk = {p.name.split("-")[0] for p in site.glob("*.dist-info")}
    if names == {"alpha", "beta", "pip"}:
        assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})
        assert on_disk == {"alpha", "beta", "pip"}
    else:
        assert names == {"beta", "gamma", "delta", "pip"}
        assert_complete(venv_dir, {"beta": "2.0", "gamma": "1.0", "delta": "1.0"})
        assert on_disk == {"beta", "gamma", "delta", "pip"}


BAD_INPUTS = [
    pytest.param("alpha==1.0\nbeta\n", [], 2, "r.txt:2: beta is not pinned", id="unpinned"),
    pytest.param("alpha==1.0\nbeta==1.0\nepsilon==3.0\n", [], 2, "no wheel for epsilon==3.0", id="missing-wheel"),
    pytest.param("alpha==1.0\n", [], 2, "alpha==1.0 needs beta>=1.0, which is not pinned", id="closure"),
    pytest.param("alpha==1.0\nbeta==2.0 --hash=sha256:" + "0" * 64 + "\n", [], 2, "does not match any --hash", id="bad-hash"),
    pytest.param("alpha @ https://example.com/a.whl\n", [], 2, "URLs and paths are not supported", id="url"),
    pytest.param("--extra-index-url https://example.com\nalpha==1.0\n", [], 2, "would install from outside", id="index"),
    pytest.param("-r nowhere.txt\n", [], 2, "cannot read requirements file", id="missing-include"),
    pytest.param("beta==1.0\n", ["--python", "/nonexistent/python3"], 2, "no interpreter at /nonexistent/python3", id="no-python"),
    pytest.param("beta==1.0\n", ["--bogus"], 2, "unrecognized arguments: --bogus", id="bad-option"),
    pytest.param("gamma[fast]==1.0\n", [], 2, "gamma==1.0 needs delta==1.0", id="extra-closure"),
]


@pytest.mark.parametrize(("text", "args", "code", "message"), BAD_INPUTS)
def test_bad_input_leaves_the_old_venv_as_it_was(built: tuple[ToolRepo, Path, Path], text: str,
                                                args: list[str], code: int, message: str) -> None:
    repo, venv_dir, _ = built
    before = snapshot(venv_dir)
    bad = repo.requirements("r.txt", text)
    out = repo.run(*args, str(venv_dir), str(bad))
    assert out.returncode == code
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines and all(line.startswith("create_venv: error: ") for line in lines), out.stderr
    assert "Traceback" not in out.stderr and message in out.stderr
    assert snapshot(venv_dir) == before


def test_several_missing_wheels_are_one_summary_and_a_short_line_each(built: tuple[ToolRepo, Path, Path]) -> None:
    """One line with the one command that fixes them all; -v gives each pin's full message."""
    repo, venv_dir, _ = built
    before = snapshot(venv_dir)
    bad = repo.requirements("r.txt", "alpha==1.0\nbeta==1.0\n" + "".join(f"missing{i}==1.0\n" for i in range(40)))
    out = repo.run(str(venv_dir), str(bad))
    assert out.returncode == 2 and snapshot(venv_dir) == before
    summary, *pins = out.stderr.splitlines()
    assert summary.startswith(f"create_venv: error: {bad}:3: 40 pins have no wheel in {repo.wheels} for Python ")
    tool = summary.split("add them all: ")[1].split(" ")[0]  # relative to here, where it ran
    assert Path(tool).resolve() == (repo.root / "bin" / "vendor_wheels").resolve()
    assert summary.endswith(f"vendor_wheels {bad}; or, if not every dependency is pinned yet, pin the closure too: "
                            f"{tool} --lock {bad} -o {bad} (the pins below; -v: each one's tags and pip command)")
    assert pins == [f"create_venv: error: {bad}:{i + 3}: no wheel for missing{i}==1.0" for i in range(40)]
    verbose = repo.run("-v", str(venv_dir), str(bad))
    errors = [line for line in verbose.stderr.splitlines() if line.startswith("create_venv: error: ")]
    assert verbose.returncode == 2 and errors[0] == summary and len(errors) == 41
    assert all("; fix: pip " in line for line in errors[1:])
    assert snapshot(venv_dir) == before


def test_missing_requirements_file(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    out = wheelhouse.run(str(tmp_path / "v"), str(tmp_path / "nope.txt"))
    assert out.returncode == 2 and "nope.txt:0: cannot read requirements file" in out.stderr
    assert not (tmp_path / "v").exists()


def test_a_directory_create_venv_did_not_make_is_never_wiped(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    victim = tmp_path / "src"
    victim.mkdir()
    (victim / "main.py").write_text("precious")
    reqs = wheelhouse.requirements("r.txt", "beta==1.0\n")
    out = wheelhouse.run(str(victim), str(reqs))
    assert out.returncode == 2
    assert "was not made by create_venv" in out.stderr and (victim / "main.py").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    out = wheelhouse.run(str(tmp_path / "file"), str(reqs))
    assert out.returncode == 2 and "is not a directory" in out.stderr


def test_an_empty_directory_is_used(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    out = wheelhouse.run(str(tmp_path / "v"), str(wheelhouse.requirements("r.txt", "beta==1.0\n")))
    assert out.returncode == 0, out.stderr
    assert_complete(tmp_path / "v", {"beta": "1.0"})


def test_wiping_does_not_follow_symlinks_out_of_the_venv(built: tuple[ToolRepo, Path, Path], tmp_path: Path) -> None:
    repo, venv_dir, reqs = built
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    os.symlink(outside, venv_dir / "link-to-outside")
    os.symlink(outside / "keep.txt", venv_dir / "lib" / "file-link")
    reqs.write_text("beta==2.0\n")
    out = repo.run(str(venv_dir), str(reqs))
    assert out.returncode == 0, out.stderr
    assert (outside / "keep.txt").read_text() == "keep"
    assert not (venv_dir / "link-to-outside").exists()


def test_lock_timeout_names_the_lock_and_holder(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    reqs.write_text("beta==2.0\n")  # needs a build, so it needs the lock
    with open(str(venv_dir) + ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write("4242\n")
        f.flush()
        out = repo.run("--lock-timeout", "0.3", str(venv_dir), str(reqs))
    assert out.returncode == 3
    assert f"waiting for the lock {venv_dir}.lock held by pid 4242" in out.stderr
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


def test_compile_writes_bytecode(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    out = wheelhouse.run("--compile", str(tmp_path / "v"), str(wheelhouse.requirements("r.txt", "beta==1.0\n")))
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "v" / "lib").glob("python*/site-packages/__pycache__/beta.*.pyc"))


def test_help_documents_exit_codes_and_environment(tool_repo: ToolRepo) -> None:
    out = tool_repo.run("--help")
    assert out.returncode == 0
    for text in ("exit codes:", "130", "CROS_VENV_CACHE", "--python", "--lock-timeout", ".cros_venv.json"):
        assert text in out.stdout


def test_the_caller_environment_does_not_leak_in(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    hostile = tmp_path / "hostile"
    (hostile / "packaging").mkdir(parents=True)
    (hostile / "packaging" / "__init__.py").write_text("raise ImportError('wrong packaging on PYTHONPATH')\n")
    (hostile / "pip").mkdir()
    (hostile / "pip" / "pip.conf").write_text("[global]\nindex-url = http://127.0.0.1:9/simple\nno-index = false\n")
    (hostile / "virtualenv").mkdir()
    (hostile / "virtualenv" / "virtualenv.ini").write_text("[virtualenv]\nactivators = bogus\nseeder = nonsense\n")
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text("[global]\nindex-url = http://127.0.0.1:9/\n")
    env = wheelhouse.env(
        PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_FIND_LINKS="/nonexistent", PIP_NO_INDEX="0",
        PIP_CONFIG_FILE=str(hostile / "pip" / "pip.conf"), PIP_REQUIRE_VIRTUALENV="1", PIP_TARGET=str(tmp_path / "t"),
        PYTHONPATH=str(hostile), PYTHONWARNINGS="error", PYTHONUSERBASE=str(hostile), PYTHONNOUSERSITE="",
        PYTHONHOME="/nonexistent", VIRTUAL_ENV="/nonexistent", VIRTUALENV_ACTIVATORS="bogus",
        VIRTUALENV_PYTHON="/bin/false", VIRTUALENV_CONFIG_FILE=str(hostile / "virtualenv" / "virtualenv.ini"),
        XDG_CONFIG_DIRS=str(hostile), XDG_CONFIG_HOME=str(hostile), HOME=str(home),
    )
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    env_no_home = {k: v for k, v in env.items() if k != "PYTHONHOME"}  # a bad PYTHONHOME breaks Python itself
    for i, how in enumerate(("python create_venv", "./create_venv")):
        venv_dir = tmp_path / f"v{i}"
        if how == "./create_venv":
            env_no_home["PATH"] = f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}"
            out = subprocess.run([str(wheelhouse.root / "create_venv"), str(venv_dir), str(reqs)],
                                 env=env_no_home, capture_output=True, text=True)
        else:
            out = wheelhouse.run(str(venv_dir), str(reqs), env=env_no_home)
        assert out.returncode == 0, out.stderr
        assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})
        assert marker(venv_dir)["spec"]["interpreter"]["path"] == PYTHON
        assert "bogus" not in (venv_dir / "pyvenv.cfg").read_text()
        assert not (tmp_path / "t").exists()


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _unshare_works(), reason="unshare -n is not permitted here")
def test_builds_with_no_network_at_all(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    env = wheelhouse.env(CROS_VENV_CACHE=str(tmp_path / "cold-cache"))
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    out = wheelhouse.run(str(tmp_path / "v"), str(reqs), env=env, prefix=("unshare", "-n"))
    assert out.returncode == 0, out.stderr
    assert_complete(tmp_path / "v", {"alpha": "1.0", "beta": "1.0"})
    pip = subprocess.run(["unshare", "-n", str(tmp_path / "v/bin/python"), "-m", "pip", "install", "delta==1.0"],
                         capture_output=True, text=True, env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")})
    assert pip.returncode == 0, pip.stdout + pip.stderr


@pytest.mark.parametrize("python", OTHER_PYTHONS, ids=[p.split("/")[-3] for p in OTHER_PYTHONS])
def test_builds_for_other_interpreters(wheelhouse: ToolRepo, tmp_path: Path, python: str) -> None:
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    # --python from the test interpreter; then the other interpreter running the tool itself.
    for venv_dir, args, runner in ((tmp_path / "a", ["--python", python], PYTHON), (tmp_path / "b", [], python)):
        out = wheelhouse.run(*args, str(venv_dir), str(reqs), python=runner)
        assert out.returncode == 0, out.stderr
        assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})
        version = venv_python(venv_dir, "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
        assert python.split("/")[-3].startswith(version + ".")
    # The same directory built for another interpreter is rebuilt.
    out = wheelhouse.run("-v", str(tmp_path / "a"), str(reqs))
    assert out.returncode == 0
    assert ("building" in out.stderr) is (os.path.realpath(python) != PYTHON)
    assert marker(tmp_path / "a")["spec"]["interpreter"]["path"] == PYTHON


ALL_PYTHONS = [PYTHON, *OTHER_PYTHONS, *(["/usr/bin/python3"] if os.path.exists("/usr/bin/python3") else [])]


@pytest.mark.parametrize("python", ALL_PYTHONS, ids=[p.split("/")[-3] for p in ALL_PYTHONS])
def test_a_cold_build_on_each_interpreter(wheelhouse: ToolRepo, tmp_path: Path, python: str) -> None:
    """An empty cache: forked workers hash and unpack (METADATA first), virtualenv's
    template is made beside them (a fork of the tool's process), all on this interpreter.
    """
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    cache = tmp_path / "cold-cache"
    out = wheelhouse.run("-v", str(tmp_path / "v"), str(reqs), python=python, env=wheelhouse.env(CROS_VENV_CACHE=str(cache)))
    assert out.returncode == 0, out.stderr
    assert "made the venv skeleton from the virtualenv template" in out.stderr
    assert_complete(tmp_path / "v", {"alpha": "1.0", "beta": "1.0"})
    assert len(os.listdir(cache / "skeletons")) == 1
    entries = os.listdir(cache / "wheels")
    assert not [e for e in entries if e.startswith(".tmp-")]
    # alpha, beta, pip, packaging, installer and virtualenv's four wheels, each once
    assert len(entries) == 9
    # A second directory reuses all of it: the cached resolution, the entries, the template.
    again = wheelhouse.run("-v", str(tmp_path / "v2"), str(reqs), python=python,
                           env=wheelhouse.env(CROS_VENV_CACHE=str(cache)))
    assert again.returncode == 0 and "resolved" not in again.stderr
    assert sorted(os.listdir(cache / "wheels")) == sorted(entries)


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="no system python3")
def test_a_system_python_with_nothing_installed(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    out = wheelhouse.run(str(tmp_path / "v"), str(reqs), python="/usr/bin/python3")
    assert out.returncode == 0, out.stderr
    assert_complete(tmp_path / "v", {"alpha": "1.0", "beta": "1.0"})


def test_a_new_venv_from_known_requirements_reuses_the_cached_resolution(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    first = wheelhouse.run("-v", str(tmp_path / "v1"), str(reqs))
    assert first.returncode == 0 and "resolved 3 packages" in first.stderr
    shutil.rmtree(wheelhouse.cache / "plans")  # install plans are remade when missing
    second = wheelhouse.run("-v", str(tmp_path / "v2"), str(reqs))
    assert second.returncode == 0 and "resolved" not in second.stderr and "building" in second.stderr
    assert_complete(tmp_path / "v2", {"alpha": "1.0", "beta": "1.0"})
    wheelhouse.add_wheel(WheelSpec("beta", "1.0", tag="py311-none-any"))  # a better wheel appears
    third = wheelhouse.run("-v", str(tmp_path / "v3"), str(reqs))
    assert third.returncode == 0 and "resolved 3 packages" in third.stderr
    assert "beta-1.0-py311-none-any.whl" in [w["filename"] for w in marker(tmp_path / "v3")["spec"]["wheels"]]


def test_a_missing_interpreter_for_a_new_directory(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", "beta==1.0\n")
    out = wheelhouse.run("--python", str(tmp_path / "no-python"), str(tmp_path / "v"), str(reqs))
    assert out.returncode == 2
    assert out.stderr == f"create_venv: error: no interpreter at {tmp_path / 'no-python'}; " \
                         "pass --python PATH to an existing python\n"
    assert not (tmp_path / "v").exists()


def test_prune_cache_then_build_again(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    env = wheelhouse.env(CROS_VENV_CACHE=str(tmp_path / "cache"))
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    assert wheelhouse.run(str(tmp_path / "v1"), str(reqs), env=env).returncode == 0
    cache = tmp_path / "cache"
    subdirs = ["wheels", "plans", "resolutions", "skeletons", "stat", "interpreters"]
    (cache / "skeletons" / ".tmp-1-killed").mkdir()  # left by a killed template maker
    entries = sum(len(list((cache / d).iterdir())) for d in subdirs) - 1
    assert all(any((cache / d).iterdir()) for d in subdirs)
    kept = wheelhouse.run("--prune-cache", env=env)
    assert not (cache / "skeletons" / ".tmp-1-killed").exists()
    assert kept.returncode == 0 and kept.stderr == f"create_venv: removed 1 cache entries, kept {entries}\n"
    pruned = wheelhouse.run("--prune-cache", "--max-age", "0", env=env)
    assert pruned.returncode == 0 and pruned.stderr == f"create_venv: removed {entries} cache entries, kept 0\n"
    assert not any(any((cache / d).iterdir()) for d in subdirs)
    assert_complete(tmp_path / "v1", {"alpha": "1.0", "beta": "1.0"})  # venvs do not need the cache
    assert wheelhouse.run(str(tmp_path / "v2"), str(reqs), env=env).returncode == 0
    assert_complete(tmp_path / "v2", {"alpha": "1.0", "beta": "1.0"})


def test_compile_on_an_up_to_date_venv_compiles_it(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    pycache = list((venv_dir / "lib").glob("python*/site-packages/__pycache__/alpha.*.pyc"))
    assert not pycache
    out = repo.run("--compile", str(venv_dir), str(reqs))
    assert (out.returncode, out.stderr) == (0, "")
    assert list((venv_dir / "lib").glob("python*/site-packages/__pycache__/alpha.*.pyc"))
    assert marker(venv_dir)["spec"]["requirements"] == ["alpha==1.0", "beta==1.0", "pip==26.0.1"]


def corrupt_member(wheel: Path, member: str) -> None:
    """Flip a byte of `member`'s compressed data: the zip's directory still reads, its CRC fails."""
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(member)
    data = bytearray(wheel.read_bytes())
    data[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 2] ^= 0xFF
    wheel.write_bytes(bytes(data))


def test_a_venv_that_is_a_mount_point_is_built_and_rebuilt_in_place(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """An empty DIR that cannot be renamed (a mount point, a container volume) is built in
    place; a rebuild moves the old venv into DIR/.cros_venv-old, and puts it back when the
    build fails or is interrupted.
    """
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here")
    venv_dir = tmp_path / "mnt"
    venv_dir.mkdir()
    r1 = wheelhouse.requirements("r1.txt", "beta==1.0\n")
    r2 = wheelhouse.requirements("r2.txt", "beta==2.0\n")
    r3 = wheelhouse.requirements("r3.txt", "gamma==1.0\n")
    script = (  # build r1; r2 interrupted and failing (the r1 venv must come back); then r2
        'mount -t tmpfs tmpfs "$1" || exit 99; shift; py=$1; cv=$2; d=$3; r1=$4; r2=$5; r3=$6\n'
        'show() { "$d/bin/python" -c "import beta; print(beta.VERSION)" || echo broken; }\n'
        '"$py" "$cv" "$d" "$r1"; echo "rc=$?"; show\n'
        'CROS_VENV_TEST_KILL=installed:INT "$py" "$cv" "$d" "$r2"; echo "rc=$?"; show\n'
        '"$py" "$cv" "$d" "$r3"; echo "rc=$?"; show\n'
        '"$py" "$cv" "$d" "$r2"; echo "rc=$?"; show; ls -A "$d" | grep -c cros_venv-old\n'
        'CROS_VENV_TEST_KILL=wiped "$py" "$cv" "$d" "$r1"; echo "rc=$?"\n'  # killed: old venv aside, DIR ours
        '"$py" "$cv" "$d" "$r1"; echo "rc=$?"; show\n'
    )
    corrupt_member(wheelhouse.wheels / "gamma-1.0-py3-none-any.whl", "gamma.py")  # found only while unpacking
    out = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(venv_dir), PYTHON,
                          str(wheelhouse.root / "create_venv"), str(venv_dir), str(r1), str(r2), str(r3)],
                         env=wheelhouse.env(), capture_output=True, text=True, timeout=120)
    if out.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    assert out.stdout.split() == ["rc=0", "1.0", "rc=130", "1.0", "rc=1", "1.0", "rc=0", "2.0", "0",
                                  "rc=137", "rc=0", "1.0"], out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("as it was before") == 2, out.stderr


@pytest.mark.parametrize("signal_name", ["INT", "TERM"])
def test_an_interrupt_while_the_old_venv_is_deleted_says_the_venv_is_complete(built: tuple[ToolRepo, Path, Path],
                                                                             signal_name: str) -> None:
    repo, venv_dir, reqs = built
    reqs.write_text("beta==2.0\n")
    out = repo.run(str(venv_dir), str(reqs), env=repo.env(CROS_VENV_TEST_KILL=f"marked:{signal_name}"))
    assert out.returncode == {"INT": 130, "TERM": 143}[signal_name] and out.stderr.count("\n") == 1, out.stderr
    assert f"{venv_dir} is complete" in out.stderr
    assert_complete(venv_dir, {"beta": "2.0"})
    assert repo.run(str(venv_dir), str(reqs)).returncode == 0  # the no-op run removes what was left
    assert not list(venv_dir.parent.glob(".venv.cros_venv-trash*"))


def test_an_interrupted_build_puts_the_old_venv_back(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    before = snapshot(venv_dir)
    reqs.write_text("beta==2.0\n")
    for signal_name, code in (("INT", 130), ("TERM", 143)):
        out = repo.run(str(venv_dir), str(reqs), env=repo.env(CROS_VENV_TEST_KILL=f"installed:{signal_name}"))
        assert out.returncode == code and f"{venv_dir} is as it was before" in out.stderr, out.stderr
        assert snapshot(venv_dir) == before
        assert not list(venv_dir.parent.glob(".venv.cros_venv-trash*"))
    assert repo.run(str(venv_dir), str(reqs)).returncode == 0
    assert_complete(venv_dir, {"beta": "2.0"})


def test_using_the_venv_does_not_stale_its_no_op_key(built: tuple[ToolRepo, Path, Path]) -> None:
    """Python writing bytecode for a top-level module must not change what the key records."""
    repo, venv_dir, reqs = built
    marker_bytes = (venv_dir / ".cros_venv.json").read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}  # bytecode is written
    subprocess.run([str(venv_dir / "bin/python"), "-c", "import alpha, beta"], env=env, check=True)
    assert list((venv_dir / "lib").glob("python*/site-packages/__pycache__/alpha.*.pyc"))
    out = repo.run(str(venv_dir), str(reqs))
    assert (out.returncode, out.stderr) == (0, "")
    assert (venv_dir / ".cros_venv.json").read_bytes() == marker_bytes  # the no-op path answered


@pytest.mark.parametrize("damage", ["dirs-list-gone", "dirs-list-emptied", "pyvenv-cfg-edited", "data-file-gone",
                                    "header-file-gone"])
def test_damage_the_no_op_key_watches_is_rebuilt(wheelhouse: ToolRepo, tmp_path: Path, damage: str) -> None:
    """Each of these left a broken venv 'up to date' once: the no-op path must send it to the
    full path, and the full path must rebuild (never store a key that watches nothing).
    """
    wheelhouse.add_wheel(WheelSpec("datapkg", files={
        "datapkg.py": b"VERSION = '1.0'\n", "datapkg-1.0.data/data/share/datapkg/config.txt": b"x = 1\n",
        "datapkg-1.0.data/headers/datapkg.h": b"#define X 1\n"}))
    reqs = wheelhouse.requirements("r.txt", "datapkg==1.0\nbeta==1.0\n")
    venv_dir = tmp_path / "v"
    assert wheelhouse.run(str(venv_dir), str(reqs)).returncode == 0
    target = {"dirs-list-gone": venv_dir / ".cros_venv.dirs", "dirs-list-emptied": venv_dir / ".cros_venv.dirs",
              "pyvenv-cfg-edited": venv_dir / "pyvenv.cfg", "data-file-gone": venv_dir / "share/datapkg/config.txt",
              "header-file-gone": next(venv_dir.glob("include/site/python*/datapkg/datapkg.h"))}[damage]
    if damage == "dirs-list-emptied":
        target.write_bytes(b"")
    elif damage == "pyvenv-cfg-edited":
        target.write_text(target.read_text().replace("include-system-site-packages = false",
                                                     "include-system-site-packages = true"))
    else:
        target.unlink()
    for _ in range(2):  # the first run rebuilds; then a damage after it is still seen
        out = wheelhouse.run(str(venv_dir), str(reqs))
        assert (out.returncode, out.stderr) == (0, "")
        assert (venv_dir / "share/datapkg/config.txt").exists() and (venv_dir / ".cros_venv.dirs").read_bytes()
        assert "include-system-site-packages = false" in (venv_dir / "pyvenv.cfg").read_text()
        (venv_dir / "lib").joinpath(next((venv_dir / "lib").iterdir()).name, "site-packages", "beta.py").unlink()
        out = wheelhouse.run(str(venv_dir), str(reqs))
        assert out.returncode == 0 and venv_python(venv_dir, "import beta").returncode == 0
