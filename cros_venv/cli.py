"""Command line: arguments, messages, exit codes. The work is in `build`."""

from __future__ import annotations

import os
import sys
import time

from cros_venv import __version__, fs
from cros_venv.errors import CrosVenvError, InputError, raise_interrupted
from cros_venv.lite import signal

TYPE_CHECKING = False  # typing and argparse cost ~10 ms: a plain command line needs neither
if TYPE_CHECKING:
    import argparse
    from typing import Mapping, NoReturn, Sequence, TextIO

PROG = "create_venv"
EPILOG = """\
exit codes:
  0    the venv is complete and matches the requirements (built, or already up to date)
  1    the build failed (disk full, corrupt wheel, interpreter failure, ...)
  2    bad input: requirements, a missing wheel, an unclosed dependency set, arguments,
       or DIR is not a venv create_venv made; an existing venv is left as it was
  3    timed out waiting for another create_venv building the same DIR
  130  interrupted (SIGINT; 143: SIGTERM); an old venv is put back as it was

Requirements files use pip's format; every requirement is pinned with ==, every wheel
comes from pip_packages/. The venv is complete when DIR/.cros_venv.json exists: it is
written last. A venv without it, or built from other requirements or another
interpreter, is wiped and rebuilt; an up-to-date one is left alone.

Environment: CROS_VENV_CACHE (cache directory, default $XDG_CACHE_HOME/cros_venv or
~/.cache/cros_venv), CROS_VENV_LOCK_TIMEOUT (seconds, default 600). PIP_*,
VIRTUALENV_* and PYTHON* variables and pip/virtualenv config files are ignored.
"""


class Reporter:
    """-v: every step on stderr. On a TTY: a progress line, updated at each step, once a
    build passes a second. Otherwise (wrappers capturing output): errors only.

    No timer thread: the build forks its unpacking workers, which is safe only while this
    process has a single thread.
    """

    def __init__(self, verbose: bool, stream: TextIO | None = None, delay: float = 1.0, prog: str = PROG) -> None:
        self.verbose = verbose
        self.prog = prog  # the command the messages are from
        self.delay = delay
        self.stream = stream or sys.stderr  # None when stderr is closed (`2>&-`): then silent
        try:
            self.tty = self.stream is not None and self.stream.isatty()
        except (OSError, ValueError):
            self.tty = False
        self.last = "starting"
        self.shown = False
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        self.last = message
        if self.verbose:
            self._write(f"{self.prog}: [{time.monotonic() - self.start:6.3f}s] {message}\n")
        elif self.tty and (self.shown or time.monotonic() - self.start >= self.delay):
            self._progress()

    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe (`2>&1 | head -1`), a full disk: the build goes on
            _mute(self.stream)
            self.stream = None

    def _progress(self) -> None:
        self.shown = True
        self._write(f"\r\x1b[K{self.prog}: {self.last} ({time.monotonic() - self.start:.1f}s)")

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            self._write("\r\x1b[K")


def _seconds(text: str) -> float:
    """A timeout: a number of seconds, 0 or more (inf: wait for ever). ValueError if not."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also nan
        raise ValueError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def lock_timeout(arg: float | None, environ: Mapping[str, str]) -> float:
    """--lock-timeout, else $CROS_VENV_LOCK_TIMEOUT, else 600 (checked only when used)."""
    if arg is not None:
        return arg
    text = environ.get("CROS_VENV_LOCK_TIMEOUT") or "600"
    try:
        return _seconds(text)
    except ValueError as e:
        raise InputError(f"CROS_VENV_LOCK_TIMEOUT={e}; set it to a number of seconds or unset it") from None


def write_error(line: str, stream: TextIO | None = None) -> None:
    """One line on stderr, whatever bytes a path in it holds (a surrogate-escaped non-UTF-8
    file name is written back as its bytes, never a UnicodeEncodeError).
    """
    out = stream or sys.stderr
    if out is None:  # stderr closed (`2>&-`): the exit status is all there is
        return
    data = (line + "\n").encode("utf-8", "surrogateescape")
    buffer = getattr(out, "buffer", None)
    try:
        out.flush()
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            out.write(data.decode("utf-8", "replace"))
    except (OSError, ValueError):  # nobody is reading any more
        _mute(out)


def _mute(stream: TextIO) -> None:
    """Point a stream that can no longer be written (a reader gone) at /dev/null, so that
    Python's final flush does not turn a finished build into exit 120 (as the Python docs
    advise for SIGPIPE)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


def parser() -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            """One line, no usage dump: wrappers show stderr to people."""
            write_error(f"{PROG}: error: {message}; see {PROG} --help")
            self.exit(2)

    def seconds(text: str) -> float:
        try:
            return _seconds(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    p = Parser(
        prog=PROG,
        usage=(f"{PROG} [options] DIR REQUIREMENTS [REQUIREMENTS ...]\n       {PROG} [options] REQUIREMENTS   "
               "(a shared venv in the cache; prints its path)\n"
               f"       {PROG} --prune-cache [--max-age DAYS]"),
        description="Build a Python virtual environment in DIR from the wheels in pip_packages/, offline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", nargs="?", metavar="DIR", help="the venv directory (created if missing)")
    p.add_argument("requirements", nargs="*", metavar="REQUIREMENTS", help="requirements files (pip format)")
    p.add_argument("--python", metavar="PATH", help="interpreter to build for (default: the one running this)")
    p.add_argument("--lock-timeout", type=seconds, metavar="SECONDS", default=None,
                   help="how long to wait for another build of DIR (default: $CROS_VENV_LOCK_TIMEOUT or 600)")
    p.add_argument("--compile", action="store_true", help="byte-compile the venv now (default: on first import)")
    p.add_argument("-v", "--verbose", action="store_true", help="show each step on stderr")
    p.add_argument("--prune-cache", action="store_true",
                   help="remove cache entries unused for --max-age days "
                        "(waits for running builds, up to --lock-timeout)")
    p.add_argument("--max-age", type=float, default=30.0, metavar="DAYS", help="for --prune-cache (default: 30)")
    p.add_argument("--version", action="version", version=f"cros_venv {__version__}")
    return p


class Options:
    """The parsed command line (what argparse gives, or the plain command line's parts)."""

    def __init__(self, dir: str | None, requirements: Sequence[str], python: str | None = None) -> None:
        self.dir = dir
        self.requirements = list(requirements)
        self.python = python
        self.lock_timeout: float | None = None
        self.compile = False
        self.verbose = False
        self.prune_cache = False
        self.max_age = 30.0


def main(argv: Sequence[str], simple: tuple[str | None, list[str], str | None] | None = None) -> int:
    """Run create_venv. `simple`: the command line is just DIR REQUIREMENTS... [--python P],
    already taken apart (argparse is then not needed).
    """
    from cros_venv import build

    # SIGTERM unwinds like Ctrl-C: a build in progress puts the old venv back.
    signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        lock_timeout(None, os.environ)  # a bad $CROS_VENV_LOCK_TIMEOUT is an error even with --help
    except InputError as e:
        write_error(f"{PROG}: error: {e.problems[0]}")
        return e.exit_code
    args: Options | argparse.Namespace = Options(*simple) if simple is not None else parser().parse_args(argv)
    build.clean_environment(os.environ)
    reporter = Reporter(args.verbose)
    try:
        if args.prune_cache:
            from cros_venv.cache import Cache, default_root

            removed, kept = Cache(default_root()).prune(
                args.max_age, lock_timeout(args.lock_timeout, os.environ),
                lambda: write_error(f"{PROG}: waiting for the builds using the cache to finish"))
            write_error(f"{PROG}: removed {removed} cache entries, kept {kept}")
            return 0
        if args.dir is not None and not args.requirements:  # REQUIREMENTS alone: a shared venv
            args.dir, args.requirements = None, [args.dir]
        if not args.requirements:
            parser().error("REQUIREMENTS (and DIR, for a venv of your own) are required")
        timeout = lock_timeout(args.lock_timeout, os.environ)
        if args.dir is None:
            return _shared(args, timeout, reporter)
        if not args.dir:
            parser().error("DIR is an empty string")
        request = build.Request(args.dir, tuple(args.requirements), args.python, timeout, args.compile)
        with reporter:
            build.create(request, reporter)
        return 0
    except CrosVenvError as e:
        for problem in e.detail if args.verbose else e.problems:
            write_error(f"{PROG}: error: {problem}")
        return e.exit_code
    except KeyboardInterrupt as e:
        return interrupted(e)
    except OSError as e:
        write_error(f"{PROG}: error: {fs.os_error_message(e)}")
        return 1
    except ImportError as e:  # the tool's libraries went from the cache under us
        write_error(f"{PROG}: error: cannot import {e.name} from the cache (removed while this ran?); "
                    "run create_venv again")
        return 1
    except Exception as e:  # a bug: still one line, unless -v asks for the traceback
        if args.verbose:
            raise
        write_error(f"{PROG}: error: internal error {type(e).__name__}: {e}; rerun with -v and report it")
        return 1


def _shared(args: Options | argparse.Namespace, timeout: float, reporter: Reporter) -> int:
    """create_venv REQUIREMENTS: find or build the shared venv; its path on stdout, alone."""
    from cros_venv import build, shared

    if args.compile:
        raise InputError("--compile is for a venv directory of your own (DIR REQUIREMENTS); a shared venv is "
                         "compiled on first import")
    request = build.Request("", tuple(args.requirements), args.python, timeout)
    with reporter:
        path = shared.create(request, reporter)
    sys.stdout.write(path + "\n")
    sys.stdout.flush()
    return 0


def interrupted(e: KeyboardInterrupt) -> int:
    """Say what an interrupt left behind; exit 130 (SIGINT) or 143 (SIGTERM)."""
    state = getattr(e, "state", "") or "nothing was changed"
    name = "terminated" if getattr(e, "signum", signal.SIGINT) == signal.SIGTERM else "interrupted"
    write_error(f"{PROG}: {name}; {state}")
    return int(getattr(e, "exit_code", 130))
