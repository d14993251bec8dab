"""bin/python_venv: `python`, but in the shared venv of the script's spec.

    python_venv [-r REQUIREMENTS | --spec FILE] [--python PY] [--] [PYTHON_ARGS...]
    python_venv script.py ARGS...          (the spec found as specs.py says)

Finds the spec, finds or builds its shared venv (shared.py), takes a shared flock on the
venv's directory (GC never removes a venv someone holds), and execs the python of that
directory (by its real path, not through the venvs/NAME link) with PYTHON_ARGS: no
process is left in between, so the exit status, signals and the standard streams are the
program's own. Children see CROS_VENV_SPEC_PATH (the spec, for a
nested python_venv that has none of its own) and CROS_VENV_DEPTH (a guard against a loop
of re-execs).

The path to an up-to-date venv imports what the no-op check does (fastpath.py) and the
spec finder, not `os`: it runs before every wrapped script.
"""

from __future__ import annotations

import posix
import sys

from cros_venv import fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

PROG = "python_venv"
ENV_SPEC = "CROS_VENV_SPEC_PATH"
ENV_DEPTH = "CROS_VENV_DEPTH"
ENV_PYTHON = "CROS_VENV_PYTHON"  # the interpreter of the spec in CROS_VENV_SPEC_PATH, for nested runs
MAX_DEPTH = 8
USAGE = (f"usage: {PROG} [-r REQUIREMENTS | --spec FILE] [--python PYTHON] [-v] [--] [PYTHON_ARGS ...]\n"
         f"       {PROG} SCRIPT [ARGS ...]   (the spec: SCRIPT.vpython3, a [VPYTHON:BEGIN] or PEP 723 block, "
         ".vpython3 above it, or $CROS_VENV_SPEC_PATH)\n"
         "  -v, --verbose  say each step of a build on stderr (before PYTHON_ARGS: after them, -v is python's)\n")
_PYTHON_OPTIONS_WITH_VALUE = frozenset("cmWXQ")  # python -c CODE, -m MODULE, -W arg, -X opt


class UsageError(Exception):
    pass


class Args:
    __slots__ = ("python", "python_args", "requirements", "spec", "verbose")

    def __init__(self) -> None:
        self.requirements: str | None = None
        self.spec: str | None = None
        self.python: str | None = None
        self.verbose = False
        self.python_args: list[str] = []


def parse(argv: Sequence[str]) -> Args:
    """Our options, up to `--` or the first argument that is not ours."""
    args = Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        name, eq, value = arg.partition("=")
        if name in ("-r", "--requirements", "--spec", "--python") and not (name == "-r" and eq):
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{arg} needs a value")
                i += 1
                value = argv[i]
            if name == "--spec":
                args.spec = value
            elif name == "--python":
                args.python = value
            else:
                args.requirements = value
        elif arg.startswith("-r") and len(arg) > 2:
            args.requirements = arg[2:]
        elif arg in ("-v", "--verbose"):
            args.verbose = True
        else:
            break
        i += 1
    if args.requirements is not None and args.spec is not None:
        raise UsageError("give -r REQUIREMENTS or --spec FILE, not both")
    args.python_args = list(argv[i:])
    return args


def script_of(python_args: Sequence[str]) -> str | None:
    """The script python would run with these arguments (None for -c, -m, - or none)."""
    i = 0
    while i < len(python_args):
        arg = python_args[i]
        if arg == "-" or arg == "--":
            return None if arg == "-" else (python_args[i + 1] if i + 1 < len(python_args) else None)
        if not arg.startswith("-"):
            return arg
        letters = arg[1:]
        if arg.startswith("--"):  # --help, --version, --check-hash-based-pycs MODE
            if arg == "--check-hash-based-pycs":
                i += 1
            i += 1
            continue
        for j, letter in enumerate(letters):
            if letter in _PYTHON_OPTIONS_WITH_VALUE:
                if letter in "cm":
                    return None
                if j == len(letters) - 1:
                    i += 1  # its value is the next argument
                break
        i += 1
    return None


def main(argv: Sequence[str]) -> int:
    fs.open_standard_fds()  # else our lock's descriptor could become the program's stdin
    try:
        args = parse(argv)
    except UsageError as e:
        return _error(f"{e}; see {PROG} --help", 2)
    if args.python_args[:1] in (["-h"], ["--help"]) and args.requirements is None and args.spec is None:
        sys.stdout.write(USAGE)
        return 0
    depth = fs.getenv(ENV_DEPTH) or "0"
    if not depth.isdigit():
        return _error(f"{ENV_DEPTH}={depth!r} is not a count of nested runs; unset it", 2)
    if int(depth) >= MAX_DEPTH:
        return _error(f"{MAX_DEPTH} nested python_venv runs ({ENV_DEPTH}={depth}): a script or venv that runs "
                      "python_venv again, in a loop? unset CROS_VENV_DEPTH if this nesting is intended", 2)
    try:
        requirements, python = _requirements(args)
        venv = _venv(requirements, python, args.verbose)
        held = _hold(venv)
        if held is None:  # removed by GC since we found it: build it again
            venv = _venv(requirements, python, args.verbose, fast=False)
            held = _hold(venv)
            if held is None:
                return _error(f"{venv} was removed as soon as it was built (bin/venv_gc in a loop?); run again", 1)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except Exception as e:
        from cros_venv.errors import CrosVenvError

        if isinstance(e, CrosVenvError):
            from cros_venv import converted

            for problem in e.problems:
                _error(converted.origin(problem), e.exit_code)
            return e.exit_code
        if isinstance(e, OSError):
            return _error(fs.os_error_message(e), 1)
        if args.verbose:
            raise
        return _error(f"internal error {type(e).__name__}: {e}; rerun with -v and report it", 1)
    return _exec(venv, held, requirements, python, args.python_args, int(depth))


def _error(message: str, code: int) -> int:
    try:
        sys.stderr.write(f"{PROG}: error: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    return code


def _requirements(args: Args) -> tuple[str, str | None]:
    """The requirements file to build from (a spec of another kind is written as one into
    the cache first), and --python (or the interpreter the spec asks for)."""
    if args.requirements is not None:
        path = fs.file_path(args.requirements)
        if fs.isfile(path) or not fs.exists(path):  # (missing: the build says so)
            return path, args.python
        from cros_venv import converted, specs  # a pipe (`-r <(...)`, /dev/stdin): read once, built from a copy

        return converted.as_requirements(specs.read_file(path, "-r", kind="requirements"), args.python)
    from cros_venv import specs

    script = script_of(args.python_args)
    found = specs.find(fs.file_path(script) if script else None, args.spec)
    python = args.python
    if python is None and found.origin == specs.ENV_ORIGIN:  # the outer run's spec: its interpreter too
        python = fs.getenv(ENV_PYTHON) or None
    if found.kind == "requirements" and found.regular:
        return found.path, python
    from cros_venv import converted

    return converted.as_requirements(found, python)


def _venv(requirements: str, python: str | None, verbose: bool, fast: bool = True) -> str:
    """The shared venv's path (venvs/NAME): the fast path, else the build (shared.create)."""
    from cros_venv import __version__, fastpath

    try:
        found = fastpath.shared_venv([requirements], python, __version__) if fast else None
    except (OSError, ValueError):
        found = None
    if found is not None:
        return found
    import os

    saved = dict(os.environ)  # the build shuts the caller's settings out; the program gets them back
    try:
        from cros_venv import build, cli, shared

        build.clean_environment(os.environ)
        timeout = cli.lock_timeout(None, saved)
        with cli.Reporter(verbose, prog=PROG) as reporter:
            return shared.create(build.Request("", (requirements,), python, timeout), reporter)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _hold(venv: str) -> tuple[int, str] | None:
    """A descriptor holding a shared flock on the directory `venv` leads to, and that
    directory's real path (None: it is gone; GC removed it). Checked after locking: GC may
    have removed it meanwhile."""
    import fcntl

    for _ in range(20):
        real = fs.realpath(venv)
        try:
            fd = posix.open(real, posix.O_RDONLY | posix.O_DIRECTORY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            if fs.realpath(venv) == real and fs.stat(real).st_ino == posix.fstat(fd).st_ino:
                return fd, real  # held, and still the venv the name leads to
        except OSError:
            pass
        posix.close(fd)
        import time

        time.sleep(0.05)  # GC holds it while it removes it
    return None


def _exec(venv: str, held: tuple[int, str], spec: str, target: str | None, python_args: list[str],
          depth: int) -> int:
    """Become the python of the venv directory we hold, still holding it (the flock's
    descriptor is inherited): by its real path, not through `venv` (venvs/NAME), which a
    rebuild may have turned to a new directory since, one we do not hold."""
    from cros_venv.fastpath import touch

    fd, real = held
    touch(venv)
    posix.set_inheritable(fd, True)
    env = dict(posix.environ)
    env[ENV_SPEC.encode()] = fs.fsencode(spec)
    env[ENV_DEPTH.encode()] = str(depth + 1).encode()
    from cros_venv.locate import resolve_python

    env[ENV_PYTHON.encode()] = fs.fsencode(resolve_python(target))
    python = fs.join(real, "bin", "python")
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        posix.execve(python, [python, *python_args], env)
    except OSError as e:
        return _error(f"cannot run {python}: {e.strerror}", 1)
    return 1  # not reached
