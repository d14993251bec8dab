"""digest: every sha256 of the tool, and the stat index that remembers wheels' hashes."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cros_venv import digest, store
from cros_venv.digest import Hashed, StatIndex
from tests.conftest import REPO, WheelSpec, build_wheel


@pytest.mark.parametrize("size", [0, 1, 1000, digest.BULK - 1, digest.BULK, 3 * digest.BULK + 7])
def test_both_implementations_give_hashlibs_sha256(size: int) -> None:
    data = os.urandom(size)
    expected = hashlib.sha256(data).hexdigest()
    assert digest.sha256(data).hexdigest() == expected
    assert digest.sha256_bulk(data).hexdigest() == expected
    assert digest.sha256_hex(data) == expected
    assert digest.hexdigest("sha256", data) == expected


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_other_algorithms_for_hash_pins(algorithm: str) -> None:
    assert digest.hexdigest(algorithm, b"wheel bytes") == hashlib.new(algorithm, b"wheel bytes").hexdigest()


@pytest.mark.parametrize("data", [b"", b"#!/venv/bin/python\nimport sys\n", os.urandom(4096)], ids=["empty", "launcher", "random"])
def test_record_hash_is_records_form(data: bytes) -> None:
    assert digest.record_hash(data) == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    assert digest.record_hash(b"") == "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


def test_hash_file_gives_the_hash_and_the_stamp_of_what_it_read(tmp_path: Path) -> None:
    path = tmp_path / "f.whl"
    path.write_bytes(b"x" * (3 << 20))
    hashed = digest.hash_file(str(path))
    assert hashed == Hashed(hashlib.sha256(path.read_bytes()).hexdigest(), digest.stamp(path.stat()))
    assert digest.file_sha256(str(path)) == hashed.sha256
    assert hashed.row() == [*digest.stamp(path.stat()), hashed.sha256]


def test_importing_it_costs_nothing_but_fs() -> None:
    """fastpath (the no-op path, before every wrapped script) may use it: no os, typing, json or hashlib."""
    code = ("import sys; before = set(sys.modules); sys.path.insert(0, sys.argv[1]); import cros_venv.digest; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(REPO)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["__future__", "cros_venv", "cros_venv.digest", "cros_venv.fs"]


@pytest.fixture
def index(tmp_path: Path) -> StatIndex:
    (tmp_path / "stat").mkdir()
    return StatIndex(str(tmp_path / "stat"))


def test_hashes_come_from_the_stat_index_until_a_wheel_changes(index: StatIndex, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    a = build_wheel(tmp_path, WheelSpec("alpha"))
    b = build_wheel(tmp_path, WheelSpec("beta"))
    calls: list[str] = []
    real = digest.hash_file

    def counting(p: str) -> Hashed:
        calls.append(p)
        return real(p)

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    monkeypatch.setattr(digest, "hash_file", counting)
    first = index.hashes([str(a), str(b)])
    assert first == {str(a): sha(a), str(b): sha(b)} and len(calls) == 2
    assert index.hashes([str(a), str(b)]) == first and len(calls) == 2
    build_wheel(tmp_path, WheelSpec("beta", files={"beta.py": b"changed = True\n"}))
    second = index.hashes([str(a), str(b)])
    assert calls[2:] == [str(b)] and second[str(b)] == sha(b) != first[str(b)]


def test_recorded_hashes_are_known_while_the_stamp_matches(index: StatIndex, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, WheelSpec("alpha"))
    index.record({str(wheel): Hashed("f" * 64, digest.stamp(wheel.stat()))})
    assert index.known([str(wheel)]) == {str(wheel): "f" * 64}
    assert store.loads(Path(index.path(str(tmp_path))).read_bytes()) == {
        wheel.name: [*digest.stamp(wheel.stat()), "f" * 64]}
    os.utime(wheel, ns=(0, 0))
    assert index.known([str(wheel)]) == {}


def test_one_index_file_per_wheel_directory_by_its_real_path(index: StatIndex, tmp_path: Path) -> None:
    (tmp_path / "house").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "house")
    assert index.path(str(tmp_path / "link")) == index.path(str(tmp_path / "house")) != index.path(str(tmp_path))
    assert os.path.dirname(index.path(str(tmp_path))) == index.directory
