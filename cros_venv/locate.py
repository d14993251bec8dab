"""Which interpreter: the real path of `--python ARG`, or of the one running this.

Standard library only: the no-op check asks this on every call.
"""

import sys

from cros_venv import fs


def running_python() -> str:
    """Real path of the interpreter running this: the kernel's answer where there is one.
    sys.executable comes from PYTHONEXECUTABLE if that is set, even under -I.
    """
    try:
        return fs.realpath(fs.readlink("/proc/self/exe"))
    except OSError:
        return fs.realpath(sys.executable)


def resolve_python(arg: "str | None") -> str:
    """Real path of the target interpreter: `--python ARG` (a path or a name on PATH) or ours.

    A script in front of an interpreter (pyenv's shims, a wrapper) is asked which binary it
    runs: what it runs may change with the environment (PYENV_VERSION), while its own file,
    whose stamp the caches would key on, does not.

    A name (no `/`) is looked up on PATH only, as a shell does: if it is not there, the name
    itself is returned (no real path: `not_found` says so), never a file of that name in the
    current directory.
    """
    if arg is None:
        return running_python()
    if "/" in arg:
        found = fs.realpath(arg)
    else:
        search = fs.getenv("PATH")
        for entry in (fs.DEFPATH if search is None else search).split(":"):
            candidate = fs.join(entry or ".", arg)
            if fs.isfile(candidate) and fs.access(candidate, fs.X_OK):
                found = fs.realpath(candidate)
                break
        else:
            return arg
    return _behind_script(found) or found


def not_found(resolved: str) -> bool:
    """`resolve_python` found no file for a name on PATH."""
    return "/" not in resolved


_ASK = ("import os, sys; e = '/proc/self/exe'; "
        "print(os.path.realpath(e) if os.path.exists(e) else os.path.realpath(sys.executable))")


def is_script(path: str) -> bool:
    """Does the file start with `#!` (a shim or wrapper in front of an interpreter)?"""
    try:  # not open(): a FIFO given as --python would block it
        fd = fs.open(path, fs.O_RDONLY | fs.O_NONBLOCK | fs.O_CLOEXEC)
    except (OSError, ValueError):
        return False
    try:
        return fs.is_regular(fs.fstat(fd)) and fs.read(fd, 2) == b"#!"
    except OSError:
        return False
    finally:
        fs.close(fd)


_ASKED: "dict[str, str | None]" = {}  # each script is asked once per run (the no-op check, then the build)


def _script_timeout() -> float:
    """How long a `#!` script gets to say which binary it runs: $CROS_VENV_PYTHON_TIMEOUT
    seconds (a positive number), else 10.
    """
    try:
        value = float(fs.getenv("CROS_VENV_PYTHON_TIMEOUT") or 10.0)
    except ValueError:
        return 10.0
    return value if 0 < value < 1e6 else 10.0


def _behind_script(path: str) -> "str | None":
    """The interpreter binary a `#!` script runs, or None (not a script, or it did not say
    within $CROS_VENV_PYTHON_TIMEOUT, 10 seconds by default: pyenv's shims answer in ~0.1 s).
    """
    if not is_script(path):
        return None
    if path not in _ASKED:
        from cros_venv.procs import first_line

        answer = first_line([path, "-I", "-S", "-c", _ASK], timeout=_script_timeout())
        ok = answer and answer.startswith("/") and fs.isfile(answer)
        _ASKED[path] = fs.realpath(answer) if ok and answer else None
    return _ASKED[path]
