"""cache: unpacked wheels keyed by sha256, atomic under races and kills; prune."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cros_venv import cache as cache_mod
from cros_venv.cache import Cache
from cros_venv.digest import file_sha256
from cros_venv.errors import BuildError
from cros_venv.extract import LEGACY_MANIFEST, MANIFEST
from tests.conftest import REPO, WheelSpec, build_wheel


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    c = Cache(str(tmp_path / "cache"))
    c.ensure_dirs()
    return c


def big_wheel(directory: Path, files: int = 3000) -> Path:
    contents = {f"big/mod{i}.py": (f"X = {i}\n" * 50).encode() for i in range(files)}
    return build_wheel(directory, WheelSpec("big", "1.0", files=contents))


def entry_files(entry: str) -> set[str]:
    """The wheel's members in an entry (its MANIFEST, which must be there, aside)."""
    found = {os.path.relpath(os.path.join(d, f), entry) for d, _, fs in os.walk(entry) for f in fs}
    assert MANIFEST in found and LEGACY_MANIFEST in found
    return found - {MANIFEST, LEGACY_MANIFEST}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad-crc"])
def test_a_wheel_that_fails_to_unpack_leaves_no_entry(cache: Cache, tmp_path: Path, damage: str) -> None:
    wheel = build_wheel(tmp_path, WheelSpec("alpha", files={"alpha.py": b"A = 1\n" * 1000}))
    data = wheel.read_bytes()
    if damage == "truncated":
        wheel.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        wheel.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    else:
        i = data.index(b"A = 1")
        wheel.write_bytes(data[:i] + b"Z" + data[i + 1:])  # stored deflated: breaks the stream or the CRC
    with pytest.raises(BuildError, match="is not a valid wheel|cannot unpack"):
        cache.unpack(str(wheel), "1" * 64)
    assert os.listdir(cache.wheels) == []


def test_eight_processes_populating_one_entry(cache: Cache, tmp_path: Path) -> None:
    wheel = big_wheel(tmp_path, 1500)
    sha = file_sha256(str(wheel))
    code = "import sys; sys.path.insert(0, sys.argv[1]); from cros_venv.cache import Cache; print(Cache(sys.argv[2]).unpack(sys.argv[3], sys.argv[4]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(REPO), cache.root, str(wheel), sha],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert {o.strip() for o, _ in outs} == {cache.entry(sha)}
    assert os.listdir(cache.wheels) == [sha]  # no temp dirs left behind
    assert len(entry_files(cache.entry(sha))) == 1503


def test_a_killed_extraction_leaves_nothing_trusted(cache: Cache, tmp_path: Path) -> None:
    wheel = big_wheel(tmp_path, 3000)
    sha = file_sha256(str(wheel))
    code = "import sys; sys.path.insert(0, sys.argv[1]); from cros_venv.cache import Cache; Cache(sys.argv[2]).unpack(sys.argv[3], sys.argv[4])"
    for delay in (0.05, 0.1, 0.2):
        proc = subprocess.Popen([sys.executable, "-c", code, str(REPO), cache.root, str(wheel), sha])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Either the whole entry is in place, or none of it is.
        assert not cache.has(sha) or len(entry_files(cache.entry(sha))) == 3003
        if cache.has(sha):
            break
    leftovers = [n for n in os.listdir(cache.wheels) if n.startswith(".tmp-")]
    entry = cache.unpack(str(wheel), sha)
    assert len(entry_files(entry)) == 3003
    removed, kept = cache.prune(max_age_days=30)
    assert removed == len(leftovers) and kept == 1
    assert os.listdir(cache.wheels) == [sha]


def test_prune_removes_only_old_entries_and_waits_for_builds(cache: Cache, tmp_path: Path) -> None:
    old = build_wheel(tmp_path, WheelSpec("old"))
    new = build_wheel(tmp_path, WheelSpec("new"))
    old_entry = cache.unpack(str(old), file_sha256(str(old)))
    cache.unpack(str(new), file_sha256(str(new)))
    os.utime(old_entry, (time.time() - 40 * 86400,) * 2)
    done = threading.Event()
    with cache.in_use():
        def prune() -> None:
            cache.prune(30)
            done.set()

        t = threading.Thread(target=prune)
        t.start()
        assert not done.wait(0.3)  # a build is using the cache: prune waits
    t.join(10)
    assert done.is_set()
    assert os.listdir(cache.wheels) == [file_sha256(str(new))]


def test_default_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CROS_VENV_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_mod.default_root() == str(tmp_path / "xdg" / "cros_venv")
    monkeypatch.setenv("CROS_VENV_CACHE", "rel")
    assert cache_mod.default_root() == os.path.abspath("rel")
    monkeypatch.delenv("CROS_VENV_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_mod.default_root() == str(tmp_path / ".cache" / "cros_venv")


def test_a_dry_run_prune_writes_nothing(tmp_path: Path) -> None:
    """`venv_gc --dry-run` on a cache it cannot write (read-only, another user's) still lists."""
    root = tmp_path / "cache"
    assert Cache(str(root)).prune(0, dry_run=True) == (0, 0)
    assert not root.exists()  # not made, not locked
