"""interpreter: what a target interpreter is (asked once, in this process if it is ours, else
by running it), the one error for anything that is not a Python, and the cache of the answer,
keyed on the interpreter's file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

import pytest
from packaging import tags

from cros_venv import interpreter, store, toolchain
from cros_venv.cache import Cache
from cros_venv.errors import InputError
from tests.conftest import OTHER_PYTHONS, PYTHON, chmod_round_trip, replace_by_rename

OURS = ".".join(map(str, sys.version_info[:3]))


@pytest.fixture(scope="module")
def roots(shared_cache: Path) -> list[str]:
    """Where an interpreter asked in a child imports `packaging` from (the tool's own wheel)."""
    cache = Cache(str(shared_cache))
    cache.ensure_dirs()
    return toolchain.unpack(cache, toolchain.LIBRARIES)


def test_the_running_interpreter_describes_itself() -> None:
    probe = interpreter.probe_running()
    target = interpreter.Target.from_probe(probe)
    abi = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert target.identity() == {"path": PYTHON, "version": OURS, "implementation": "cpython", "abi": abi}
    assert target.python_version == ".".join(map(str, sys.version_info[:2]))
    assert list(target.tags) == list(tags.sys_tags())  # best first
    assert target.environment["python_full_version"] == OURS and target.python_full_version == OURS
    assert json.loads(json.dumps(probe)) == probe  # it is what the cache stores


@pytest.mark.parametrize("python", [PYTHON, *OTHER_PYTHONS], ids=["ours", *(p.split("/")[-3] for p in OTHER_PYTHONS)])
def test_each_interpreter_is_found_for_what_it_is(tmp_path: Path, roots: list[str], python: str) -> None:
    """Ours is described in this process; the others run the probe themselves."""
    target = interpreter.find(os.path.realpath(python), str(tmp_path), roots)
    version = OURS if python == PYTHON else python.split("/")[-3]
    major, minor = version.split(".")[:2]
    assert (target.path, target.version, target.abi) == (os.path.realpath(python), version, f"cp{major}{minor}")
    assert target.tags[0].interpreter == f"cp{major}{minor}" and target.environment["python_full_version"] == version


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


NOT_PYTHON: list[object] = [
    pytest.param(lambda d: Path("/bin/true"), "it gave no description of itself", id="bin-true"),
    pytest.param(lambda d: script(d / "python3", "echo 'Python 3.11.7'\n"), "it gave no description of itself",
                 id="prints-junk"),
    pytest.param(lambda d: script(d / "python3", 'echo \'{"format": 1, "path": "/x"}\'\n'),
                 "it gave no description of itself", id="prints-json-of-another-shape"),
    pytest.param(lambda d: script(d / "python3", "echo 'python3: error: oops' >&2\nexit 3\n"),
                 "it failed to describe itself: python3: error: oops", id="fails"),
    pytest.param(lambda d: script(d / "python3", "exit 1\n"), "it failed to describe itself: no output",
                 id="fails-silently"),
    pytest.param(lambda d: script(d / "python3", "echo hi\n", mode=0o644), "cannot run it: Permission denied",
                 id="not-executable"),
    pytest.param(lambda d: d, "it is not a file", id="a-directory"),
]


@pytest.mark.parametrize(("make", "why"), NOT_PYTHON)
def test_what_is_not_a_python_is_one_line_naming_it(tmp_path: Path, roots: list[str], make: Callable[[Path], Path],
                                                    why: str) -> None:
    path = make(tmp_path)
    cache_dir = tmp_path / "interpreters"
    cache_dir.mkdir()
    with pytest.raises(InputError) as info:
        interpreter.find(str(path), str(cache_dir), roots)
    assert info.value.exit_code == 2
    assert info.value.problems == (f"{path} is not a usable Python interpreter ({why}); "
                                   "pass --python PATH to CPython 3.9 or newer",)
    assert os.listdir(cache_dir) == []  # nothing remembered of it


def test_a_missing_interpreter_says_so(tmp_path: Path, roots: list[str]) -> None:
    with pytest.raises(InputError) as info:
        interpreter.find(str(tmp_path / "python9"), str(tmp_path), roots)
    assert info.value.problems == (f"no interpreter at {tmp_path / 'python9'}; pass --python PATH to an existing "
                                   "python",)


# -- the probe cache ------------------------------------------------------------------------


class Counted:
    """An interpreter that counts how often it is asked: a script in front of ours (its own
    file is what the cache keys on, as for any --python PATH resolved to a file).
    """

    def __init__(self, directory: Path) -> None:
        self.log = directory / "runs"
        self.path = script(directory / "python3", f'echo run >> "{self.log}"\nexec "{PYTHON}" "$@"\n')
        self.cache_dir = directory / "interpreters"
        self.cache_dir.mkdir()

    @property
    def runs(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def find(self, roots: list[str]) -> interpreter.Target:
        return interpreter.find(str(self.path), str(self.cache_dir), roots)


def rewrite_cached(counted: Counted, change: Callable[[dict[str, object]], object]) -> None:
    (cached,) = counted.cache_dir.iterdir()
    data = store.loads(cached.read_bytes())
    assert isinstance(data, dict)
    change(data)
    cached.write_bytes(store.dumps(data))


PROBE_CHANGES: dict[str, Callable[[Counted], object]] = {
    "touched": lambda c: os.utime(c.path, ns=(1, 1)),
    "replaced-by-rename": lambda c: replace_by_rename(c.path),
    "ctime-only": lambda c: chmod_round_trip(c.path),
    "cache-file-corrupt": lambda c: next(c.cache_dir.iterdir()).write_text('{"key": '),
    "cache-file-of-another-shape": lambda c: rewrite_cached(c, lambda d: d.update(probe={"tags": 3})),
    "cache-file-of-another-packaging": lambda c: rewrite_cached(
        c, lambda d: d.update(key=str(d["key"]).replace(":", ":0.1-", 1))),
    "cache-file-field-of-another-type": lambda c: rewrite_cached(  # a version that is not a string
        c, lambda d: d["probe"].__setitem__("version", 3)),  # type: ignore[index]
}


@pytest.mark.parametrize("change", sorted(PROBE_CHANGES))
def test_an_interpreter_is_asked_again_once_its_file_or_the_cache_changed(tmp_path: Path, roots: list[str],
                                                                          change: str) -> None:
    counted = Counted(tmp_path)
    first = counted.find(roots)
    assert first.version == OURS and first.path == PYTHON
    assert counted.find(roots) == first and counted.runs == 1  # remembered
    PROBE_CHANGES[change](counted)
    assert counted.find(roots) == first and counted.runs == 2
    assert counted.find(roots) == first and counted.runs == 2  # and remembered again
