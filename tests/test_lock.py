"""lock: flock beside the venv; timeouts name the holder; an inherited lock outlives its builder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cros_venv import lock
from cros_venv.errors import InputError, LockTimeout
from tests.conftest import REPO


def test_lock_path_is_beside_the_venv() -> None:
    assert lock.lock_path("/x/y/.venv/") == "/x/y/.venv.lock"


def test_timeout_names_the_lock_file_and_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "v.lock")
    fd = lock.acquire(path, 1)
    try:
        code = ("import sys; sys.path.insert(0, sys.argv[1]); from cros_venv import lock; "
                "lock.acquire(sys.argv[2], 0.2)")
        out = subprocess.run([sys.executable, "-c", code, str(REPO), path], capture_output=True, text=True)
        assert out.returncode != 0
        assert f"waiting for the lock {path} held by pid {os.getpid()}" in out.stderr
        with pytest.raises(LockTimeout):
            lock.acquire(path, 0.05)  # a second open file description: flock excludes it too
    finally:
        lock.release(fd)
    lock.release(lock.acquire(path, 0.05))


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "v.lock")
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from cros_venv import lock; "
            "lock.acquire(sys.argv[2], 5); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(REPO), path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock.release(lock.acquire(path, 2))


def test_an_orphan_child_that_inherited_the_lock_keeps_it(tmp_path: Path) -> None:
    """A builder killed while its child still writes: the next build waits for the child."""
    path = str(tmp_path / "v.lock")
    code = ("import sys, subprocess; sys.path.insert(0, sys.argv[1]); from cros_venv import lock; "
            "fd = lock.acquire(sys.argv[2], 5); "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1.5)'], pass_fds=(fd,)); "
            "print(child.pid, flush=True); import time; time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(REPO), path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip().isdigit()  # its child is running, holding the lock
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    start = time.monotonic()
    with pytest.raises(LockTimeout):
        lock.acquire(path, 0.3)  # the orphan still holds it
    fd = lock.acquire(path, 10)  # ... until it exits
    assert time.monotonic() - start > 0.3
    lock.release(fd)


@pytest.mark.parametrize("planted", ["symlink", "fifo", "directory"])
def test_anything_but_a_regular_lock_file_is_refused_untouched(tmp_path: Path, planted: str) -> None:
    """A lock planted as a symlink to someone else's file is never followed (nor written)."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "venv.lock"
    if planted == "symlink":
        path.symlink_to(victim)
    elif planted == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(InputError, match=r"venv\.lock is (a symlink|not a regular file)"):
        lock.acquire(str(path), 1)
    assert victim.read_text() == "precious\n"


def test_another_users_lock_file_is_locked_but_never_truncated(tmp_path: Path) -> None:
    path = tmp_path / "venv.lock"
    path.write_text("their content\n")
    os.chown(path, 65534, 65534)
    fd = lock.acquire(str(path), 1)
    try:
        assert path.read_text() == "their content\n"
    finally:
        lock.release(fd)
    mine = tmp_path / "mine.lock"
    fd = lock.acquire(str(mine), 1)
    lock.release(fd)
    assert mine.read_text() == f"{os.getpid()}\n"
