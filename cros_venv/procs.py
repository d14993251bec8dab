"""Child processes: every child cros_venv makes is made here (as pypa/build's `run_subprocess`),
so how a child is started, fed and reaped is decided in one place, and a test can replace it.

- `can_fork`, `fork`, `close_all_but`: a fork running a function of this process
  (unpacker: the unpacking workers).
- `Forked`: such a fork whose output is collected as a Popen's is (skeleton: the template
  maker, when the target is the interpreter running this).
- `spawn`: a program started, its output collected when it is done (skeleton: virtualenv).
- `run`, `run_text`: a program run to its end, its output captured (interpreter: asking another Python
  about itself; presubmit: git and the hooks; vendor: pip).
- `first_line`: the first line a program prints, with a deadline (for fastpath: which
  binary a `#!` script such as a pyenv shim runs).

fastpath.py and build.py (`--compile`) still start their children themselves, for now.

Only `os` and `sys` are imported here: fastpath runs before every wrapped script and may
use `first_line`, and a warm build starts no child, so subprocess (~3 ms), signal (enum),
threading and select are imported where they are used.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~10 ms (see fastpath.py)
if TYPE_CHECKING:
    import subprocess
    from typing import Any, Callable, Mapping, Sequence


def can_fork() -> bool:
    """fork() is safe only while this process runs a single thread."""
    import threading

    return hasattr(os, "fork") and threading.active_count() == 1


def _flush() -> None:
    """Flush what this process buffered (before a fork, and in a child before os._exit);
    stdout or stderr may be closed (None) or their reader gone."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def fork(child: Callable[[], int]) -> int:
    """Fork; the child runs `child` and exits with its status (it never returns from here,
    nor runs this process's atexit handlers or flushes its buffers twice). Returns the pid.
    """
    import signal

    _flush()
    # No signal may land while fork runs its at-fork callbacks (an exception raised there is
    # printed and swallowed). The child ignores Ctrl-C: the parent handles it, and stops its
    # children itself (SIGTERM); a child that died of the same Ctrl-C would look like a
    # failed build to a parent that had not yet seen its own interrupt.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            status = child()
        finally:
            os._exit(status)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid


def close_all_but(*keep: int) -> None:
    """In a forked child: close every inherited descriptor above 2 but `keep` (the other
    workers' pipes, the venv's lock): it must not keep them open after its parent has let
    them go.
    """
    import contextlib

    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc (not Linux): every descriptor number up to a sane bound
        fds = list(range(3, min(os.sysconf("SC_OPEN_MAX"), 4096)))
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


class Forked:
    """`child` run in a fork of this process with its stdout and stderr into one pipe and
    no other descriptor, with what a caller needs of a Popen: `communicate`, `returncode`.
    """

    def __init__(self, child: Callable[[], int]) -> None:
        read, write = os.pipe()

        def run() -> int:
            os.dup2(write, 1)
            os.dup2(write, 2)
            close_all_but()
            try:
                return child()
            finally:  # fork() leaves with os._exit, which flushes nothing
                _flush()

        try:
            self.pid = fork(run)
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        self.output = read
        self.returncode: int | None = None

    def communicate(self) -> tuple[bytes, None]:
        """Everything the child wrote, once it has exited (then `returncode` is set)."""
        chunks = []
        while True:
            data = os.read(self.output, 1 << 16)
            if not data:
                break
            chunks.append(data)
        os.close(self.output)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        return b"".join(chunks), None


def spawn(argv: Sequence[str], env: Mapping[str, str] | None = None, pass_fds: Sequence[int] = (),
          ) -> subprocess.Popen[bytes]:
    """Start `argv` with stdin from /dev/null and its stdout and stderr into one pipe
    (`communicate()` returns them); `pass_fds` are inherited (the venv's lock).
    """
    import subprocess

    return subprocess.Popen(list(argv), env=None if env is None else dict(env), pass_fds=tuple(pass_fds),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


class Timeout(Exception):
    """`run`'s child did not finish in time (it was killed)."""


def run(argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None, pass_fds: Sequence[int] = (), stdin_null: bool = False,
        ) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` to its end, its stdout and stderr captured as bytes.

    The exit status is the caller's to judge (no exception for a non-zero one); a program
    that cannot be started raises OSError, one still running after `timeout` seconds is
    killed and raises Timeout. stdin is inherited unless `stdin_null`; so are `pass_fds`
    (the venv's lock).
    """
    return _run(argv, False, cwd, env, timeout, pass_fds, stdin_null)


def run_text(argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
             timeout: float | None = None, pass_fds: Sequence[int] = (), stdin_null: bool = False,
             ) -> subprocess.CompletedProcess[str]:
    """`run`, with stdout and stderr decoded as text (the locale's encoding)."""
    return _run(argv, True, cwd, env, timeout, pass_fds, stdin_null)


def _run(argv: Sequence[str], text: bool, cwd: str | None, env: Mapping[str, str] | None, timeout: float | None,
         pass_fds: Sequence[int], stdin_null: bool) -> subprocess.CompletedProcess[Any]:
    import subprocess

    try:
        return subprocess.run(list(argv), cwd=cwd, env=None if env is None else dict(env), timeout=timeout,
                              pass_fds=tuple(pass_fds), stdin=subprocess.DEVNULL if stdin_null else None,
                              capture_output=True, text=text, check=False)
    except subprocess.TimeoutExpired:
        raise Timeout(f"{argv[0]} did not finish in {timeout:g} s") from None


def first_line(argv: Sequence[str], timeout: float = 30.0, grace: float = 3.0) -> str | None:
    """The first line `argv` prints (stripped), if it prints one within `timeout` seconds and
    then exits with status 0 within `grace` seconds; else None (a child still running is
    killed). stdin and stderr are /dev/null.

    A plain fork and exec, without subprocess (~3 ms to import on the no-op path). Reading
    stops at the first newline: a process the program left behind may hold the pipe open
    for ever.
    """
    import select
    import time

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(write, 1)
            os.dup2(null, 2)
            os.execv(argv[0], list(argv))
        finally:
            os._exit(127)
    os.close(write)
    out = b""
    try:
        deadline = time.monotonic() + timeout
        while b"\n" not in out and time.monotonic() < deadline:
            if not select.select([read], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            data = os.read(read, 4096)
            if not data:
                break
            out += data
        # It has answered (or failed): it should be gone at once. The pipe stays open until
        # then, so that a line printed after the answer does not kill it with SIGPIPE. One
        # that said nothing in time gets no grace: it is killed now.
        timed_out = b"\n" not in out and time.monotonic() >= deadline
        for _ in range(0 if timed_out else max(1, round(grace * 100))):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                break
            time.sleep(0.01)
    finally:
        os.close(read)
        if pid:  # still running (or this was interrupted): never left behind
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    if pid or status != 0 or not out:
        return None
    return os.fsdecode(out.partition(b"\n")[0].strip())
