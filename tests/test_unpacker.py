"""unpacker: wheels unpacked into the cache by forked worker processes."""

from __future__ import annotations

import os
import signal
import threading
import zipfile
from pathlib import Path

import pytest

from cros_venv import toolchain
from cros_venv.cache import Cache
from cros_venv.digest import file_sha256
from cros_venv.errors import BuildError
from cros_venv.extract import LEGACY_MANIFEST, MANIFEST
from cros_venv.unpacker import Unpacked, Unpacker
from tests.conftest import WheelSpec, build_wheel


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    c = Cache(str(tmp_path / "cache"))
    c.ensure_dirs()
    return c


def wheels(directory: Path, count: int, files: int = 20) -> list[str]:
    out = []
    for n in range(count):
        contents = {f"pkg{n}/mod{i}.py": f"N = {n}\nI = {i}\n".encode() * 20 for i in range(files)}
        out.append(str(build_wheel(directory, WheelSpec(f"pkg{n}", "1.0", files=contents))))
    return out


def members(wheel: str) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def tree(entry: str) -> dict[str, bytes]:
    """The wheel's members in an entry, with their bytes (its MANIFEST aside)."""
    out = {}
    for d, _, fs in os.walk(entry):
        for f in fs:
            path = os.path.join(d, f)
            out[os.path.relpath(path, entry)] = Path(path).read_bytes()
    assert out.pop(MANIFEST) and out.pop(LEGACY_MANIFEST)
    return out


def leftovers(cache: Cache) -> list[str]:
    return [n for n in os.listdir(cache.wheels) if n.startswith(".tmp-")]


@pytest.mark.parametrize("workers", [2, 0], ids=["processes", "inline"])
def test_unpacks_every_wheel_exactly_and_hashes_it(cache: Cache, tmp_path: Path, workers: int) -> None:
    paths = wheels(tmp_path, 6)
    with Unpacker(cache, workers=workers) as unpacker:
        for p in paths:
            unpacker.submit(p)  # no hash given: the worker computes it
        results = {p: unpacker.result(p) for p in reversed(paths)}  # any order
        assert bool(unpacker.workers) == bool(workers)
    for p, (sha256, entry) in results.items():
        assert sha256 == file_sha256(p)
        assert entry == cache.entry(sha256)
        assert tree(entry) == members(p)
    assert leftovers(cache) == []


def test_workers_are_processes_that_exit_when_closed(cache: Cache, tmp_path: Path) -> None:
    (path,) = wheels(tmp_path, 1)
    unpacker = Unpacker(cache, workers=2)
    unpacker.submit(path)
    assert unpacker.workers is not None and len(unpacker.workers) == 2
    pids = [w.pid for w in unpacker.workers]
    assert os.getpid() not in pids
    unpacker.result(path)
    unpacker.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):  # reaped: nothing left running
            os.waitpid(pid, os.WNOHANG)


def test_a_bad_wheel_fails_alone_with_a_one_line_error(cache: Cache, tmp_path: Path) -> None:
    good = wheels(tmp_path, 2)
    bad = tmp_path / "bad-1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip at all")
    with Unpacker(cache, workers=2) as unpacker:
        for p in [good[0], str(bad), good[1]]:
            unpacker.submit(p)
        with pytest.raises(BuildError, match=r"bad-1.0-py3-none-any.whl is not a valid wheel") as err:
            unpacker.result(str(bad))
        assert "\n" not in str(err.value)
        for p in good:
            assert tree(unpacker.result(p).entry) == members(p)
    assert leftovers(cache) == []


@pytest.mark.parametrize("meta", [False, True], ids=["unpack", "meta-first"])
def test_a_wrong_hash_never_names_an_entry(cache: Cache, tmp_path: Path, meta: bool) -> None:
    """An entry is only made under the hash of the bytes unpacked: a caller's stale hash (a
    wheel changed since the stat index saw it) is refused, or replaced by the real one.
    """
    (path,) = wheels(tmp_path, 1)
    with Unpacker(cache, workers=1) as unpacker:
        unpacker.submit(path, "a" * 64, meta=meta)
        if meta:
            assert unpacker.result(path) == Unpacked(file_sha256(path), cache.entry(file_sha256(path)))
        else:
            with pytest.raises(BuildError, match="changed during the build"):
                unpacker.result(path)
    assert not os.path.exists(cache.entry("a" * 64))


def test_a_killed_worker_is_an_error_not_a_hang(cache: Cache, tmp_path: Path) -> None:
    paths = wheels(tmp_path, 3, files=300)
    with Unpacker(cache, workers=1) as unpacker:
        unpacker.submit(paths[0])
        assert unpacker.workers
        os.kill(unpacker.workers[0].pid, signal.SIGKILL)
        for p in paths[1:]:
            unpacker.submit(p)
        outcomes: list[bool | None] = []
        for p in paths:
            try:
                outcomes.append(tree(unpacker.result(p).entry) == members(p))
            except BuildError as e:
                assert "died; run create_venv again" in str(e)
                outcomes.append(None)
        assert None in outcomes  # at least the jobs after the kill failed
    # Whatever the kill interrupted is a temp dir, never an entry; every entry is whole.
    for name in os.listdir(cache.wheels):
        if not name.startswith(".tmp-"):
            assert any(tree(os.path.join(cache.wheels, name)) == members(p) for p in paths)


def test_a_job_for_a_worker_already_dead_is_an_error_not_a_broken_pipe(cache: Cache, tmp_path: Path) -> None:
    """Writing the job to a dead worker's pipe raised BrokenPipeError (a traceback)."""
    paths = wheels(tmp_path, 2, files=3)
    with Unpacker(cache, workers=1) as unpacker:
        unpacker.submit(paths[0])
        assert unpacker.workers
        pid = unpacker.workers[0].pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # gone for sure: its end of the job pipe is closed
        unpacker.submit(paths[1])
        for p in paths[1:]:
            with pytest.raises(BuildError, match="died; run create_venv again"):
                unpacker.result(p)


def test_abort_stops_workers_and_removes_their_temp_dirs(cache: Cache, tmp_path: Path) -> None:
    paths = wheels(tmp_path, 4, files=400)
    unpacker = Unpacker(cache, workers=2)
    for p in paths:
        unpacker.submit(p)
    unpacker.close(abort=True)
    assert leftovers(cache) == []
    for name in os.listdir(cache.wheels):  # finished before the abort: whole
        assert any(tree(os.path.join(cache.wheels, name)) == members(p) for p in paths)


def test_with_another_thread_running_it_unpacks_here(cache: Cache, tmp_path: Path) -> None:
    """fork() is only safe in a single-threaded process."""
    (path,) = wheels(tmp_path, 1)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with Unpacker(cache, workers=2) as unpacker:
            unpacker.submit(path)
            assert unpacker.workers == []
            sha256, entry = unpacker.result(path)
    finally:
        stop.set()
        thread.join()
    assert sha256 == file_sha256(path) and tree(entry) == members(path)


def test_tool_wheels_hashed_by_workers_go_into_the_stat_index(cache: Cache) -> None:
    with Unpacker(cache, workers=2) as unpacker:
        roots = toolchain.unpack(cache, toolchain.LIBRARIES, unpacker)
    paths = [toolchain.wheel_path(f) for f in toolchain.LIBRARIES]
    known = cache.stat_index.known(paths)
    assert known == {p: file_sha256(p) for p in paths}
    assert roots == [cache.entry(known[p]) for p in paths]
    # Next time nothing is submitted: the index and the entries answer.
    with Unpacker(cache, workers=2) as unpacker:
        assert toolchain.unpack(cache, toolchain.LIBRARIES, unpacker) == roots
        assert unpacker.jobs == {}


