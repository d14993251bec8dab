"""The venv's lock: a kernel flock on a file beside the venv.

Beside, not inside: a lock file inside a directory that gets wiped can be replaced under a
waiting process, giving two holders. flock dies with its last holder, so a killed builder
leaves no stale lock; the descriptor is inheritable, so a child still writing into the
venv (an orphan after the builder was killed) keeps the lock until it exits too.
The file is never deleted, for the same reason.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from cros_venv.errors import InputError, LockTimeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def lock_path(venv_dir: str) -> str:
    """The lock for a venv: `DIR.lock` beside it."""
    return venv_dir.rstrip(os.sep) + ".lock"


def holder(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


def open_lock(path: str) -> int:
    """Open (or create) the lock file, never following a symlink planted in its place and
    never blocking on a FIFO. Raises InputError for anything but a regular file, and
    OSError (EACCES, EROFS) where this user cannot write.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{path} is a symlink, not create_venv's lock file; remove it") from None
        if e.errno in (errno.ENXIO, errno.EISDIR):
            raise InputError(f"{path} is not a regular file; remove it (create_venv's lock file goes there)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path} is not a regular file; remove it (create_venv's lock file goes there)")
    return fd


def acquire(path: str, timeout: float, on_wait: Callable[[str], None] | None = None) -> int:
    """Take the lock at `path`; returns the (inheritable) descriptor that holds it.

    Polls with back-off so that a timeout can name the holder; raises LockTimeout.
    """
    fd = open_lock(path)
    deadline = time.monotonic() + timeout
    delay = 0.002
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waited and on_wait is not None:
                on_wait(holder(path))
            waited = True
            if time.monotonic() >= deadline:
                pid = holder(path)
                os.close(fd)
                raise LockTimeout(
                    f"timed out after {timeout:g}s waiting for the lock {path} held by pid {pid}; "
                    "wait for that build, or raise --lock-timeout"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    if os.fstat(fd).st_uid == os.geteuid():  # the holder's pid, for messages; never in another's file
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    os.set_inheritable(fd, True)
    return fd


def release(fd: int) -> None:
    os.close(fd)
