"""cache: unpacked wheels keyed by sha256, atomic under races and kills; the stat index."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from cros_venv import cache as cache_mod
from cros_venv.cache import MANIFEST, Cache, file_sha256
from cros_venv.errors import BuildError
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
    assert MANIFEST in found
    return found - {MANIFEST}


def test_unpacks_members_and_executable_bits(cache: Cache, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, WheelSpec("alpha", files={"alpha/__init__.py": b"", "alpha-1.0.data/scripts/run": b"#!python\n"}))
    entry = cache.unpack(str(wheel), file_sha256(str(wheel)))
    assert entry_files(entry) == {"alpha/__init__.py", "alpha-1.0.data/scripts/run", "alpha-1.0.dist-info/METADATA",
                                  "alpha-1.0.dist-info/WHEEL", "alpha-1.0.dist-info/RECORD"}
    assert os.stat(os.path.join(entry, "alpha-1.0.data/scripts/run")).st_mode & 0o111


@pytest.mark.parametrize("member", ["/etc/evil", "../evil", "pkg/../../evil", "pkg\\evil"], ids=["absolute", "dotdot", "nested-dotdot", "backslash"])
def test_refuses_unsafe_members(cache: Cache, tmp_path: Path, member: str) -> None:
    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, b"x")
    with pytest.raises(BuildError, match="unsafe member"):
        cache.unpack(str(wheel), "0" * 64)
    assert os.listdir(cache.wheels) == []


def test_refuses_symlink_members(cache: Cache, tmp_path: Path) -> None:
    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(BuildError, match="symlink member"):
        cache.unpack(str(wheel), "0" * 64)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad-crc"])
def test_corrupt_wheels_fail_and_leave_no_entry(cache: Cache, tmp_path: Path, damage: str) -> None:
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


@pytest.mark.parametrize("how", ["small-deflated", "stored", "streamed-member", "streamed-wheel"])
def test_every_way_of_reading_a_member_gives_its_bytes(cache: Cache, tmp_path: Path, how: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Small members come from the wheel's bytes in one zlib call; big members, and
    members of big wheels, are streamed by zipfile. Each way yields the exact bytes.
    """
    if how == "streamed-member":
        monkeypatch.setattr(cache_mod, "WHOLE_MEMBER", 100)
    if how == "streamed-wheel":
        monkeypatch.setattr(cache_mod, "WHOLE", 100)
    payload = {f"pkg/m{i}.py": os.urandom(500) + b"x" * 5000 for i in range(5)}
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    method = zipfile.ZIP_STORED if how == "stored" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(wheel, "w", method) as zf:
        for name, data in payload.items():
            zf.writestr(name, data)
        zf.writestr("pkg-1.0.dist-info/METADATA", "Name: pkg\nVersion: 1.0\n")
    entry = cache.unpack(str(wheel), file_sha256(str(wheel)))
    for name, data in payload.items():
        assert Path(entry, name).read_bytes() == data


def test_a_member_whose_crc_does_not_match_is_refused(cache: Cache, tmp_path: Path) -> None:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("pkg/data.txt", b"0123456789" * 10)
    data = bytearray(wheel.read_bytes())
    data[data.index(b"0123456789") + 3] ^= 1  # stored: the bytes still read, the CRC no longer matches
    wheel.write_bytes(bytes(data))
    with pytest.raises(BuildError, match="is not a valid wheel.*CRC"):
        cache.unpack(str(wheel), "2" * 64)
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


def test_hashes_come_from_the_stat_index_until_a_wheel_changes(cache: Cache, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    a = build_wheel(tmp_path, WheelSpec("alpha"))
    b = build_wheel(tmp_path, WheelSpec("beta"))
    calls: list[str] = []
    real = cache_mod.file_sha256
    def counting(p: str) -> str:
        calls.append(p)
        return real(p)

    monkeypatch.setattr(cache_mod, "file_sha256", counting)
    first = cache.hashes([str(a), str(b)])
    assert first == {str(a): real(str(a)), str(b): real(str(b))} and len(calls) == 2
    assert cache.hashes([str(a), str(b)]) == first and len(calls) == 2
    build_wheel(tmp_path, WheelSpec("beta", files={"beta.py": b"changed = True\n"}))
    second = cache.hashes([str(a), str(b)])
    assert calls[2:] == [str(b)] and second[str(b)] == real(str(b)) != first[str(b)]


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
