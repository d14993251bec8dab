"""pylock.toml (PEP 751) as input: what a lock selects, its hashes, its errors, the no-op.

tests/data/pylock.uv.toml has the shape uv writes (a universal lock: wheels named by URL,
several per package with different tags, markers on python_full_version, sys_platform
and dependency_groups); tests/data/pylock.pip.toml is what `pip lock pytest==8.4.2`
wrote (its URLs are that machine's index). The tests build tiny wheels with the names the
locks list and write their real hashes into a copy of the lock.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from cros_venv import pylock, requirements
from cros_venv.digest import file_sha256
from cros_venv.errors import InputError
from tests.conftest import (
    OTHER_PYTHONS,
    PYTHON,
    ToolRepo,
    WheelSpec,
    build_wheel,
    rewrite_keeping_size_and_mtime,
    snapshot,
    venv_python,
)
from tests.test_imports import NOOP_OURS, NOOP_STDLIB, _compare, _imported

DATA = Path(__file__).parent / "data"
LINUX = "manylinux_2_17_x86_64.manylinux2014_x86_64"
UV_WHEELS = [
    WheelSpec("alpha", "1.0", requires=["beta>=1.0", 'backport>=1 ; python_version < "3.11"']),
    WheelSpec("backport", "1.0"),
    WheelSpec("beta", "1.0"),
    *(WheelSpec("compiled", "2.0", tag=f"cp{v}-cp{v}-{LINUX}") for v in ("39", "310", "311", "312", "313")),
    WheelSpec("devtool", "0.3"),
    WheelSpec("docstool", "0.4"),
    WheelSpec("linuxonly", "1.0"),
]
PIP_WHEELS = [
    WheelSpec("iniconfig", "2.3.1"), WheelSpec("packaging", "26.4"), WheelSpec("pluggy", "1.7.0"),
    WheelSpec("pygments", "2.21.0"),
    WheelSpec("pytest", "8.4.2", requires=["iniconfig>=1", "packaging>=20", "pluggy<2,>=1.5", "pygments>=2.7.2"]),
]
PY39 = [p for p in OTHER_PYTHONS if "/3.9" in p]


def _filename(wheel: dict[str, str]) -> str:
    return wheel.get("name") or wheel["url"].rsplit("/", 1)[-1]


def place_lock(repo: ToolRepo, name: str, specs: list[WheelSpec], dest: str | None = None) -> Path:
    """A copy of tests/data/`name` in `repo`, with the wheels `specs` built into its
    pip_packages/ and their real sha256 written over the lock's.
    """
    text = (DATA / name).read_text()
    listed = {_filename(w): w["hashes"]["sha256"] for p in pylock.toml().loads(text)["packages"]
              for w in p.get("wheels", [])}
    for spec in specs:
        path = repo.add_wheel(spec)
        text = text.replace(listed[path.name], file_sha256(str(path)))
    out = repo.root / (dest or name)
    out.write_text(text)
    return out


def header_line(lock: Path, package: str) -> int:
    """The line of `package`'s [[packages]] header."""
    lines = lock.read_text().splitlines()
    at = lines.index(f'name = "{package}"')
    assert lines[at - 1] == "[[packages]]"
    return at


def installed(venv_dir: Path) -> list[str]:
    out = venv_python(venv_dir, "import importlib.metadata as m; print(sorted(d.metadata['Name'] for d in "
                                "m.distributions()))")
    assert out.returncode == 0, out.stderr
    return eval(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.e2e
@pytest.mark.parametrize("python", [PYTHON, pytest.param(PY39[0] if PY39 else "", id="3.9", marks=pytest.mark.skipif(
    not PY39, reason="no CPython 3.9 under /root/.pyenv/versions"))], ids=["running", "3.9"])
def test_a_universal_lock_installs_exactly_the_packages_whose_markers_hold(tool_repo: ToolRepo, python: str) -> None:
    lock = place_lock(tool_repo, "pylock.uv.toml", UV_WHEELS)
    venv_dir = tool_repo.root.parent / "venv"
    result = tool_repo.run(str(venv_dir), str(lock), python=python)  # on 3.9 the tool reads TOML with tomli
    assert result.returncode == 0, result.stderr
    old = venv_python(venv_dir, "import sys; print(sys.version_info < (3, 11))").stdout.strip() == "True"
    expected = ["alpha", *(["backport"] if old else []), "beta", "compiled", "devtool", "linuxonly", "pip"]
    assert installed(venv_dir) == expected  # not docstool (group not default), not winonly (sys_platform)
    tag = venv_python(venv_dir, "import importlib.metadata as m, sys; w = m.distribution('compiled').read_text("
                                "'WHEEL'); print(w.split('Tag: ')[1].split('-')[0], 'cp%d%d' % sys.version_info[:2])")
    wheel_tag, ours = tag.stdout.split()
    assert wheel_tag == ours


@pytest.mark.e2e
def test_a_lock_written_by_pip_builds(tool_repo: ToolRepo) -> None:
    lock = place_lock(tool_repo, "pylock.pip.toml", PIP_WHEELS)
    venv_dir = tool_repo.root.parent / "venv"
    result = tool_repo.run(str(venv_dir), str(lock))
    assert result.returncode == 0, result.stderr
    assert installed(venv_dir) == ["iniconfig", "packaging", "pip", "pluggy", "pygments", "pytest"]


@pytest.fixture
def built_lock(tool_repo: ToolRepo) -> tuple[ToolRepo, Path, Path]:
    lock = place_lock(tool_repo, "pylock.uv.toml", UV_WHEELS, dest="pylock.toml")
    venv_dir = tool_repo.root.parent / "venv"
    result = tool_repo.run(str(venv_dir), str(lock))
    assert result.returncode == 0, result.stderr
    return tool_repo, venv_dir, lock


@pytest.mark.e2e
def test_a_tampered_hash_in_the_lock_is_refused_naming_the_package(built_lock: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, lock = built_lock
    before = snapshot(venv_dir)
    wheel = repo.wheels / "beta-1.0-py3-none-any.whl"
    sha = file_sha256(str(wheel))
    lock.write_text(lock.read_text().replace(sha, "0" * 64))
    result = repo.run(str(venv_dir), str(lock))
    assert result.returncode == 2
    assert result.stderr == (f"create_venv: error: {lock}:{header_line(lock, 'beta')}: beta-1.0-py3-none-any.whl does "
                             f"not match the hash the lock gives it for beta==1.0 (its sha256 is {sha}); restore the "
                             "wheel (bin/vendor_wheels with the lock), or lock again\n")
    assert snapshot(venv_dir) == before


@pytest.mark.e2e
def test_a_wheel_changed_in_place_is_refused_never_a_remembered_hash(built_lock: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, lock = built_lock
    wheel = repo.wheels / "beta-1.0-py3-none-any.whl"
    other = build_wheel(repo.root.parent, WheelSpec("beta", "1.0", files={"beta.py": b"NAME = 'beta'\nVERSION = '6.6'\n"}))
    rewrite_keeping_size_and_mtime(wheel, other.read_bytes())  # a valid wheel of the same size, other bytes
    result = repo.run(str(venv_dir), str(lock))
    assert result.returncode == 2
    assert f"{lock}:{header_line(lock, 'beta')}: beta-1.0-py3-none-any.whl does not match the hash" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.e2e
def test_a_missing_wheel_names_the_package_and_the_fix(built_lock: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, lock = built_lock
    (repo.wheels / "linuxonly-1.0-py3-none-any.whl").unlink()
    result = repo.run(str(venv_dir), str(lock))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"create_venv: error: {lock}:{header_line(lock, 'linuxonly')}: no wheel the lock names for "
                           f"linuxonly==1.0 (linuxonly-1.0-py3-none-any.whl) is in {repo.wheels} and fits Python ")
    tool = os.path.relpath(repo.root / "bin" / "vendor_wheels")  # as missing.vendor_command shows it
    tool = tool if not tool.startswith("../../") else str(repo.root / "bin" / "vendor_wheels")
    assert line.endswith(f"; fix: {tool} {lock}")


@pytest.mark.e2e
def test_an_sdist_only_entry_is_refused_and_the_venv_kept(built_lock: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, lock = built_lock
    before = snapshot(venv_dir)
    lock.write_text(lock.read_text() + '\n[[packages]]\nname = "late"\nversion = "3.0"\n'
                    'sdist = { url = "https://x/late-3.0.tar.gz", hashes = { sha256 = "' + "a" * 64 + '" } }\n')
    result = repo.run(str(venv_dir), str(lock))
    assert result.returncode == 2
    assert result.stderr == (f"create_venv: error: {lock}:{header_line(lock, 'late')}: late==3.0 has only an sdist "
                             "source and no wheel; create_venv installs wheels from pip_packages/ only: build its wheel "
                             "(pip wheel --no-deps -w pip_packages late==3.0) and lock again\n")
    assert snapshot(venv_dir) == before


@pytest.mark.e2e
def test_the_no_op_reads_no_toml_and_changes_nothing(built_lock: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, lock = built_lock
    before = snapshot(venv_dir)
    startup = set(_imported(["-I", "-S", "-c", "pass"]))
    found = _imported(["-I", "-S", str(repo.root / "create_venv"), str(venv_dir), str(lock)], env=repo.env())
    assert "tomllib" not in found and "tomli" not in found and "cros_venv.pylock" not in found
    _compare(found, NOOP_OURS, NOOP_STDLIB, startup, "no-op")
    assert snapshot(venv_dir) == before


@pytest.mark.e2e
def test_editing_the_lock_rebuilds(built_lock: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, lock = built_lock
    lock.write_text(lock.read_text().replace("marker = \"sys_platform == 'linux'\"", "marker = \"sys_platform == 'win32'\""))
    result = repo.run("-v", str(venv_dir), str(lock))
    assert result.returncode == 0, result.stderr
    assert "building" in result.stderr
    assert "linuxonly" not in installed(venv_dir)


@pytest.mark.e2e
def test_requires_python_is_checked_against_the_target(built_lock: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, lock = built_lock
    lock.write_text(lock.read_text().replace('requires-python = ">=3.9"', 'requires-python = ">=3.99"'))
    result = repo.run(str(venv_dir), str(lock))
    assert result.returncode == 2
    version = ".".join(map(str, sys.version_info[:3]))
    line = lock.read_text().splitlines().index('requires-python = ">=3.99"') + 1  # its own line, not lock-version's
    assert line != 1
    assert result.stderr == (f"create_venv: error: {lock}:{line}: the lock requires Python >=3.99, but the target is Python "
                             f"{version}; lock for this Python, or build for another\n")


# -- the lock's own problems, as requirements.load reports them (no venv) -----------------

HEAD = 'lock-version = "1.0"\ncreated-by = "test"\n'
GOOD = '[[packages]]\nname = "six"\nversion = "1.17.0"\nwheels = [{ name = "six-1.17.0-py2.py3-none-any.whl", ' \
       'url = "https://x/six-1.17.0-py2.py3-none-any.whl", hashes = { sha256 = "' + "ab" * 32 + '" } }]\n'
RELOCK = "lock again with a tool that writes PEP 751 locks (pip lock, uv export --format pylock.toml)"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param('lock-version = "1.0\n', "pylock.toml:1: not valid TOML (Illegal character '\\n' (at line 1, column 20)); "
                 f"fix it, or {RELOCK}", id="bad-toml"),
    pytest.param('lock-version = "2.0"\ncreated-by = "x"\n', 'pylock.toml:1: lock-version is \'2.0\', not "1.0": '
                 f"create_venv reads PEP 751 locks of version 1.0; {RELOCK}", id="lock-version-2"),
    pytest.param('created-by = "x"\n', 'pylock.toml:0: no lock-version, not "1.0": create_venv reads PEP 751 locks '
                 f"of version 1.0; {RELOCK}", id="no-lock-version"),
    pytest.param(HEAD + GOOD.replace('version = "1.17.0"\n', ""), f"pylock.toml:3: six has no version; create_venv "
                 f"installs pinned wheels only: {RELOCK}", id="no-version"),
    pytest.param(HEAD + '[[packages]]\nname = "six"\nversion = "1.0"\nsdist = { url = "https://x/six-1.0.tar.gz", '
                 'hashes = { sha256 = "00" } }\n', "pylock.toml:3: six==1.0 has only an sdist source and no wheel; "
                 "create_venv installs wheels from pip_packages/ only: build its wheel (pip wheel --no-deps -w "
                 "pip_packages six==1.0) and lock again", id="sdist-only"),
    pytest.param(HEAD + '[[packages]]\nname = "six"\nversion = "1.0"\nvcs = { type = "git", url = "https://x/six", '
                 'commit-id = "abc" }\n', "pylock.toml:3: six==1.0 has only a vcs source and no wheel; create_venv "
                 "installs wheels from pip_packages/ only: build its wheel (pip wheel --no-deps -w pip_packages "
                 "six==1.0) and lock again", id="vcs"),
    pytest.param(HEAD + '[[packages]]\nname = "six"\nversion = "1.0"\ndirectory = { path = "../six" }\n',
                 "pylock.toml:3: six==1.0 has only a directory source and no wheel; create_venv installs wheels from "
                 "pip_packages/ only: build its wheel (pip wheel --no-deps -w pip_packages six==1.0) and lock again",
                 id="directory"),
    pytest.param(HEAD + '[[packages]]\nname = "six"\nversion = "1.0"\narchive = { url = "https://x/six.zip", '
                 'hashes = { sha256 = "00" } }\n', "pylock.toml:3: six==1.0 has only an archive source and no wheel; "
                 "create_venv installs wheels from pip_packages/ only: build its wheel (pip wheel --no-deps -w "
                 "pip_packages six==1.0) and lock again", id="archive"),
    pytest.param(HEAD + GOOD + GOOD.replace("six-1.17.0-py2", "seven-1.17.0-py2"),
                 "pylock.toml:7: six: not a valid PEP 751 lock (Name in 'seven-1.17.0-py2.py3-none-any.whl' is not "
                 f"consistent with package name 'six' in 'packages[1].wheels[0]'); {RELOCK}", id="wrong-wheel-name"),
    pytest.param(HEAD + GOOD.replace("sha256 =", "md5 ="), "pylock.toml:3: six==1.17.0: the lock gives "
                 f"six-1.17.0-py2.py3-none-any.whl no sha256, sha384 or sha512 hash (only md5); {RELOCK}",
                 id="md5-only"),
])
def test_bad_locks_are_one_line_each(text: str, expected: str) -> None:
    with pytest.raises(InputError) as e:
        requirements.load(["pylock.toml"], read=lambda _: text.encode())
    assert list(e.value.problems) == [expected]


@pytest.mark.parametrize("name", ["PYLOCK.toml", "pylock.a.b.toml", "pylock-dev.toml"])
def test_a_toml_file_not_named_as_a_lock_is_one_line_not_forty(name: str) -> None:
    text = (DATA / "pylock.uv.toml").read_bytes()
    with pytest.raises(InputError) as e:
        requirements.load([name], read=lambda _: text)
    assert list(e.value.problems) == [
        f"{name}:0: not a requirements file, and not named as a lock is (pylock.toml or pylock.NAME.toml, PEP 751, "
        "NAME without dots); rename it, or give a requirements file"]


def test_a_lock_is_chosen_by_its_file_name() -> None:
    assert [pylock.is_lock_path(p) for p in ("pylock.toml", "a/pylock.dev.toml", "pylock.a.b.toml", "pylock.txt",
                                             "my-pylock.toml", "requirements.txt")] == [
        True, True, False, False, False, False]


def test_a_good_lock_is_pins_with_their_wheels_and_hashes() -> None:
    reqs = requirements.load([os.path.join("d", "pylock.toml")], read=lambda _: (HEAD + GOOD).encode())
    (pin,) = reqs.pins
    assert (str(pin), pin.origin, sorted(pin.hashes), reqs.require_hashes) == (
        "six==1.17.0", "d/pylock.toml:3", ["sha256:" + "ab" * 32], True)
    assert pin.locked is not None and sorted(pin.locked.filenames) == ["six-1.17.0-py2.py3-none-any.whl"]


def test_markers_are_evaluated_in_the_lock_file_context() -> None:
    text = HEAD + 'default-groups = ["dev"]\n' + GOOD.replace('version = "1.17.0"\n', (
        "version = \"1.17.0\"\nmarker = \"'dev' in dependency_groups and python_version >= '3.9'\"\n"))
    reqs = requirements.load(["pylock.toml"], read=lambda _: text.encode())
    env = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux"}
    wanted, _ = requirements.applicable(reqs, env)
    assert list(wanted) == ["six"]
    assert re.sub("dev", "docs", text) != text
    docs = requirements.load(["pylock.toml"], read=lambda _: text.replace('["dev"]', '["docs"]').encode())
    assert requirements.applicable(docs, env) == ({}, {})
