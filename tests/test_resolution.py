"""resolution: requirements -> wheels -> spec, and the cache of that outcome, which is used
only while everything it depends on is unchanged (DESIGN.md, "What each memory depends on").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from cros_venv import fastpath, resolution, store, toolchain
from cros_venv.cache import Cache
from cros_venv.resolution import Install, Resolution
from cros_venv.sources import Sources
from cros_venv.spec import Spec
from tests.conftest import (
    PYTHON,
    WheelSpec,
    build_wheel,
    chmod_round_trip,
    link_or_copy,
    replace_by_rename,
    rewrite_keeping_size_and_mtime,
    wheel_source,
)


class Checkout:
    """A checkout of the tool with its own pip_packages/ (the tool's wheels and alpha 1.0,
    which needs beta, and beta 1.0) and its own cache.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.wheels = root / "pip_packages"
        self.cache = Cache(str(root / "cache"))
        self.cache.ensure_dirs()
        self.reports: list[str] = []

    def requirements(self, text: str, name: str = "r.txt") -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def resolve(self, *reqs: Path) -> Resolution:
        return resolution.resolve(self.cache, PYTHON, [str(r) for r in reqs], Sources(), self.reports.append)

    def cached(self, *reqs: Path, python: str = PYTHON) -> Resolution | None:
        return resolution.cached(self.cache, python, [str(r) for r in reqs], Sources())

    def files(self) -> list[Path]:
        return sorted(Path(self.cache.root, "resolutions").iterdir())


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Checkout:
    co = Checkout(tmp_path / "checkout")
    co.wheels.mkdir(parents=True)
    for name in (*toolchain.LIBRARIES, toolchain.PIP):  # never changed by a test: linked
        link_or_copy(wheel_source() / name, co.wheels / name)
    build_wheel(co.wheels, WheelSpec("alpha", requires=["beta>=1"]))
    build_wheel(co.wheels, WheelSpec("beta"))
    monkeypatch.setattr(toolchain, "PIP_PACKAGES", str(co.wheels))
    monkeypatch.setattr(fastpath, "WHEEL_DIR", str(co.wheels))
    return co


def test_resolving_gives_each_wheel_with_its_hash_and_remembers_it(checkout: Checkout) -> None:
    reqs = checkout.requirements("alpha==1.0\nbeta==1.0\n")
    found = checkout.resolve(reqs)
    sha = {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in checkout.wheels.iterdir()}
    assert [(os.path.basename(i.wheel), i.sha256) for i in found.installs] == [
        (n, sha[n]) for n in ("alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", toolchain.PIP)]
    assert (found.python, found.hash_checked) == (PYTHON, False)
    assert found.spec.to_json()["requirements"] == ["alpha==1.0", "beta==1.0", "pip==" + toolchain.PIP.split("-")[1]]
    assert checkout.cached(reqs) == found
    assert checkout.cached(reqs) == found  # using it changed nothing


def test_each_checkout_interpreter_and_argument_list_has_its_own_file(checkout: Checkout) -> None:
    """Two lists of files with the same bytes are two resolutions: neither replaces the other."""
    one = checkout.requirements("alpha==1.0\nbeta==1.0\n", "one.txt")
    two = checkout.requirements("alpha==1.0\nbeta==1.0\n", "two.txt")
    first = checkout.resolve(one)
    second = checkout.resolve(two)
    both = checkout.resolve(one, two)
    assert len(checkout.files()) == 3
    assert (checkout.cached(one), checkout.cached(two), checkout.cached(one, two)) == (first, second, both)
    assert checkout.cached(two, one) is None  # the order of the files is part of the key


def rewrite_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = store.loads(path.read_bytes())
    assert isinstance(data, dict)
    change(data)
    path.write_bytes(store.dumps(data))


CHANGES: dict[str, Callable[[Checkout, Path, Path], object]] = {
    "requirements-bytes": lambda co, reqs, cached: reqs.write_text("alpha==1.0  # same meaning\nbeta==1.0\n"),
    "requirements-gone": lambda co, reqs, cached: reqs.unlink(),
    "wheel-bytes-same-size-and-mtime": lambda co, reqs, cached: rewrite_keeping_size_and_mtime(
        co.wheels / "beta-1.0-py3-none-any.whl"),
    "wheel-replaced-by-rename": lambda co, reqs, cached: replace_by_rename(co.wheels / "beta-1.0-py3-none-any.whl"),
    "wheel-ctime-only": lambda co, reqs, cached: chmod_round_trip(co.wheels / "alpha-1.0-py3-none-any.whl"),
    "wheel-added-beside": lambda co, reqs, cached: build_wheel(co.wheels, WheelSpec("beta", tag="py311-none-any")),
    "corrupt-file": lambda co, reqs, cached: cached.write_bytes(cached.read_bytes()[:40]),
    "file-of-another-shape": lambda co, reqs, cached: rewrite_json(cached, lambda d: d.update(installs=[["a", "b"]])),
    "file-says-hash-checked": lambda co, reqs, cached: rewrite_json(cached, lambda d: d.update(hash_checked=True)),
    "file-of-another-format": lambda co, reqs, cached: rewrite_json(cached, lambda d: d.update(format=1)),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_input_of_the_resolution_cache(checkout: Checkout, change: str) -> None:
    reqs = checkout.requirements("alpha==1.0\nbeta==1.0\n")
    checkout.resolve(reqs)
    (cached,) = checkout.files()
    CHANGES[change](checkout, reqs, cached)
    assert checkout.cached(reqs) is None


def test_other_checkouts_and_interpreters_do_not_share_a_resolution(checkout: Checkout, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checkouts may share one cache: B must never install A's wheels."""
    reqs = checkout.requirements("alpha==1.0\nbeta==1.0\n")
    checkout.resolve(reqs)
    assert checkout.cached(reqs, python="/bin/sh") is None
    other = tmp_path / "b" / "pip_packages"
    shutil.copytree(checkout.wheels, other)
    monkeypatch.setattr(fastpath, "WHEEL_DIR", str(other))
    assert checkout.cached(reqs) is None


def test_a_resolution_checked_against_hashes_is_never_reused(checkout: Checkout) -> None:
    """--hash is checked against the wheels' bytes each time, not against a memory."""
    lines = [f"{n}==1.0 --hash=sha256:{hashlib.sha256((checkout.wheels / f'{n}-1.0-py3-none-any.whl').read_bytes()).hexdigest()}"
             for n in ("alpha", "beta")]
    reqs = checkout.requirements("\n".join(lines) + "\n")
    found = checkout.resolve(reqs)
    assert found.hash_checked
    assert checkout.cached(reqs) is None
    assert checkout.resolve(reqs) == found


# -- the cache file's shape -----------------------------------------------------------------

SPEC = Spec.build({"path": "/usr/bin/python3.11", "version": "3.11.7", "implementation": "cpython", "abi": "cp311"},
                  ["alpha==1.0"], {"alpha-1.0-py3-none-any.whl": "a" * 64})
GOOD = Resolution("/usr/bin/python3.11", "3.11", SPEC, "cv2 tool=1", (Install("/w/alpha-1.0-py3-none-any.whl", "a" * 64,
                                                                             True),))


def test_a_resolution_round_trips_through_json() -> None:
    assert Resolution.from_json(json.loads(json.dumps(GOOD.to_json()))) == GOOD
    assert Resolution.from_json(GOOD._replace(hash_checked=True, installs=()).to_json()) == GOOD._replace(
        hash_checked=True, installs=())


def edited(**fields: Any) -> dict[str, Any]:
    return {**GOOD.to_json(), **fields}


MALFORMED = [
    pytest.param(None, id="null"),
    pytest.param("a string", id="string"),
    pytest.param([1, 2], id="list"),
    pytest.param({}, id="empty-object"),
    pytest.param({k: v for k, v in GOOD.to_json().items() if k != "key"}, id="no-key"),
    pytest.param(edited(format=1), id="old-format"),
    pytest.param(edited(format="2"), id="format-string"),
    pytest.param(edited(spec={"format": 99}), id="spec-of-another-format"),
    pytest.param(edited(spec=None), id="spec-null"),
    pytest.param(edited(python=3), id="python-number"),
    pytest.param(edited(python_version=None), id="python-version-null"),
    pytest.param(edited(key=["cv2"]), id="key-list"),
    pytest.param(edited(hash_checked="false"), id="hash-checked-string"),
    pytest.param(edited(hash_checked=0), id="hash-checked-number"),
    pytest.param(edited(installs=None), id="installs-null"),
    pytest.param(edited(installs=[["/w/a.whl", "a" * 64]]), id="install-of-two"),
    pytest.param(edited(installs=[["/w/a.whl", "a" * 64, True, "x"]]), id="install-of-four"),
    pytest.param(edited(installs=[[None, "a" * 64, True]]), id="install-wheel-null"),
    pytest.param(edited(installs=[["/w/a.whl", 7, True]]), id="install-hash-number"),
    pytest.param(edited(installs=[["/w/a.whl", "a" * 64, "no"]]), id="install-requested-string"),
]


@pytest.mark.parametrize("data", MALFORMED)
def test_a_cache_file_not_of_the_expected_shape_is_no_resolution(data: Any) -> None:
    assert Resolution.from_json(data) is None
