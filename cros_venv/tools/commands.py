"""Entry points of the bin/ commands other than create_venv: errors and exit codes in one place."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TextIO

from cros_venv.errors import CrosVenvError, raise_interrupted

if TYPE_CHECKING:
    from cros_venv.cache import Cache


def run(prog: str, argv: Sequence[str]) -> int:
    """Run bin/`prog` with `argv`; every user error is one `prog: error: ...` line."""
    for stream in (sys.stdout, sys.stderr):
        _escape_unencodable(stream)
    signal.signal(signal.SIGTERM, raise_interrupted)  # unwinds like Ctrl-C: staged files and temporary directories go
    try:
        if prog == "presubmit":
            from cros_venv.tools import presubmit

            return presubmit.main(argv)
        return _run_with_cache(prog, argv)
    except CrosVenvError as e:
        for problem in e.problems:
            print(f"{prog}: error: {problem}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        name = "terminated" if signum == signal.SIGTERM else "interrupted"
        print(f"{prog}: {name}; nothing was changed", file=sys.stderr)
        return 128 + int(signum)
    except OSError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


def _run_with_cache(prog: str, argv: Sequence[str]) -> int:
    """check_requirements or vendor_wheels, holding the cache in use (shared) for the whole
    run, as create_venv's builds do: `create_venv --prune-cache` waits instead of removing
    the tool's own libraries (imported from the cache) or the wheels being read.
    """
    from cros_venv import build, toolchain
    from cros_venv.cache import Cache, default_root

    vendoring = prog == "vendor_wheels"
    if not vendoring:  # the online step keeps the caller's pip configuration
        build.clean_environment(os.environ)
    cache = Cache(default_root())
    cache.ensure_dirs()
    with cache.in_use(), (_vendoring_alone() if vendoring else contextlib.nullcontext()):
        toolchain.activate(cache)
        main: Callable[[Sequence[str], Cache], int]
        if vendoring:
            from cros_venv.tools.vendor import main
        else:
            from cros_venv.tools.check import main
        return main(argv, cache)


@contextlib.contextmanager
def _vendoring_alone() -> Iterator[None]:
    """One vendor_wheels at a time on a pip_packages/: each reads what is there, then adds what
    is missing; two at once would each stage the other's wheels, or judge a half-filled
    directory. The lock is on pip_packages/ itself (flock on the directory): every user and
    every cache of the checkout sees it, and nothing is written for it.
    """
    import fcntl

    from cros_venv import toolchain

    fd = os.open(toolchain.PIP_PACKAGES, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"vendor_wheels: waiting for another vendor_wheels on {toolchain.PIP_PACKAGES}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _escape_unencodable(stream: TextIO) -> None:
    """Paths may hold bytes that are not UTF-8 (kept as surrogate escapes): print them as
    `\\udcff` rather than raise UnicodeEncodeError, whatever the locale's encoding.
    """
    if isinstance(stream, io.TextIOWrapper):
        with contextlib.suppress(ValueError):  # closed
            stream.reconfigure(errors="backslashreplace")
