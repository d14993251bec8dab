"""commands: what check_requirements and vendor_wheels share: the cache lock, error output."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ToolRepo

pytestmark = pytest.mark.e2e


def open_writer(fifo: Path, proc: subprocess.Popen[str]) -> int:
    """Open `fifo` for writing once `proc` has opened it for reading (it is then mid-run)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO or proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{proc.args!r} never read {fifo}: {proc.communicate()}") from None
            time.sleep(0.01)


def exclusive_lock_is_free(cache: Path) -> bool:
    fd = os.open(cache / "use.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.parametrize("command", ["check_requirements", "vendor_wheels"])
def test_the_cache_is_held_in_use_for_the_whole_run(tool_repo: ToolRepo, tmp_path: Path, command: str) -> None:
    """So `create_venv --prune-cache` waits instead of removing the libraries it runs on."""
    cache = tmp_path / "private-cache"
    env = tool_repo.env(CROS_VENV_CACHE=str(cache))
    fifo = tmp_path / "requirements.txt"
    os.mkfifo(fifo)
    proc = subprocess.Popen([PYTHON, str(tool_repo.root / "bin" / command), str(fifo)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fd = open_writer(fifo, proc)  # the command is now reading its requirements
    try:
        assert not exclusive_lock_is_free(cache)
        prune = subprocess.Popen([PYTHON, str(tool_repo.root / "create_venv"), "--prune-cache", "--max-age", "0"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        assert prune.poll() is None  # waiting for the command to finish
    finally:
        os.write(fd, b"")
        os.close(fd)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, out + err
    assert prune.wait(timeout=120) == 0
    assert exclusive_lock_is_free(cache)


# Where the locale is e.g. en_US.UTF-8, Python's stdout is strict UTF-8 (this machine has no
# such locale, and C/C.UTF-8 give surrogateescape): the same, set up by hand.
STRICT = ("import io, runpy, sys; "
          "sys.stdout, sys.stderr = (io.TextIOWrapper(s.buffer, 'utf-8', 'strict') for s in (sys.stdout, sys.stderr)); "
          "sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.mark.parametrize("command", ["check_requirements", "vendor_wheels"])
def test_a_path_that_is_not_utf8_is_printed_without_a_traceback(tool_repo: ToolRepo, command: str) -> None:
    reqs = os.fsencode(tool_repo.root) + b"/r\xff.txt"
    with open(reqs, "wb") as f:
        f.write(b"beta>=1\n")
    out = subprocess.run([PYTHON, "-I", "-S", "-c", STRICT, os.fsencode(tool_repo.root / "bin" / command), reqs],
                         env=tool_repo.env(), capture_output=True, timeout=120)
    assert b"Traceback" not in out.stderr, out.stderr.decode(errors="replace")
    printed = out.stdout if command == "check_requirements" else out.stderr
    assert out.returncode == (1 if command == "check_requirements" else 2)
    assert b"r\\udcff.txt:1: beta is not pinned (>=1); pin one exact version" in printed, printed
