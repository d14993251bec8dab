"""What the no-op check needs of `os` and `os.path`, on the builtin `posix` module alone.

`python -I -S` has not imported `os` yet, and importing it (os, stat, posixpath,
genericpath, _collections_abc) costs ~0.9 ms on CPython 3.11, ~1.7 ms on 3.13 and ~2.4 ms
on 3.9 here: a quarter of the no-op check's own time. `posix` is built in and already
loaded. Each function here behaves as the `os.path` function of the same name on POSIX
(`tests/test_fs.py` compares them); the build proper imports `os` as usual.
"""

import _io
import posix
import sys
from posix import (  # re-exported: the no-op modules call fs.stat, fs.open, ...
    O_CLOEXEC,
    O_DIRECTORY,
    O_NONBLOCK,
    O_RDONLY,
    X_OK,
    access,
    close,
    fstat,
    lstat,
    open,
    read,
    readlink,
    stat,
    stat_result,
    utime,
)

__all__ = [
    "DEFPATH",
    "O_CLOEXEC",
    "O_DIRECTORY",
    "O_NONBLOCK",
    "O_RDONLY",
    "X_OK",
    "abspath",
    "access",
    "basename",
    "close",
    "dirname",
    "exists",
    "file_path",
    "fsdecode",
    "fsencode",
    "fstat",
    "getenv",
    "getsize",
    "is_regular",
    "isabs",
    "isdir",
    "isfile",
    "join",
    "lexists",
    "lstat",
    "normpath",
    "open",
    "open_standard_fds",
    "os_error_message",
    "read",
    "read_regular",
    "readlink",
    "realpath",
    "split",
    "stat",
    "stat_result",
    "utime",
]

_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFDIR = 0o040000
_S_IFLNK = 0o120000
_ENCODING = sys.getfilesystemencoding()
_ERRORS = sys.getfilesystemencodeerrors()
DEFPATH = "/bin:/usr/bin"  # os.defpath on POSIX


def fsencode(name: str) -> bytes:
    return name.encode(_ENCODING, _ERRORS)


def fsdecode(name: bytes) -> str:
    return name.decode(_ENCODING, _ERRORS)


def getenv(name: str) -> "str | None":
    """os.environ.get(name): the process's environment as it was at start."""
    value = posix.environ.get(fsencode(name))
    return None if value is None else fsdecode(value)


def isabs(path: str) -> bool:
    return path.startswith("/")


def join(path: str, *parts: str) -> str:
    for part in parts:
        if part.startswith("/"):
            path = part
        elif not path or path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def split(path: str) -> tuple[str, str]:
    i = path.rfind("/") + 1
    head, tail = path[:i], path[i:]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head, tail


def dirname(path: str) -> str:
    return split(path)[0]


def basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def _normpath(path: str) -> str:
    """posixpath.normpath as written in Python before 3.11 moved it to C."""
    if not path:
        return "."
    initial = 2 if path.startswith("//") and not path.startswith("///") else int(path.startswith("/"))
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * initial + "/".join(parts) or "."


_C_NORMPATH = getattr(posix, "_path_normpath", None)  # 3.11+: the C function os.path uses


def normpath(path: str) -> str:
    return (_C_NORMPATH(path) or ".") if _C_NORMPATH else _normpath(path)


def abspath(path: str) -> str:
    if not path.startswith("/"):
        path = join(posix.getcwd(), path)
    return normpath(path)


def realpath(path: str) -> str:
    """os.path.realpath(path) (not strict): symlinks resolved, a loop or a missing part left as is."""
    resolved, _ = _join_real("", path, {})
    return abspath(resolved)


def _join_real(path: str, rest: str, seen: "dict[str, str | None]") -> "tuple[str, bool]":
    """posixpath._joinrealpath: `rest` resolved onto the already resolved `path`."""
    if rest.startswith("/"):
        rest = rest[1:]
        path = "/"
    while rest:
        name, _, rest = rest.partition("/")
        if not name or name == ".":
            continue
        if name == "..":
            if path:
                path, name = split(path)
                if name == "..":
                    path = join(path, "..", "..")
            else:
                path = ".."
            continue
        candidate = join(path, name)
        try:
            is_link = lstat(candidate).st_mode & _S_IFMT == _S_IFLNK
        except OSError:
            is_link = False
        if not is_link:
            path = candidate
            continue
        if candidate in seen:  # met before: resolved, or a loop
            known = seen[candidate]
            if known is not None:
                path = known
                continue
            return join(candidate, rest), False
        seen[candidate] = None
        path, ok = _join_real(path, readlink(candidate), seen)
        if not ok:
            return join(path, rest), False
        seen[candidate] = path
    return path, True


def file_path(path: str) -> str:
    """An absolute path to the file `path` names, as the kernel finds it: its directory
    resolved (so `link/../r.txt` is what `open` reads, where abspath would say `r.txt`), the
    file's own name kept (`/dev/stdin` stays /dev/stdin).
    """
    head, name = split(path)
    return join(realpath(head or "."), name)


def _stat_or_none(path: str, follow: bool = True) -> "stat_result | None":
    try:
        return stat(path) if follow else lstat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None


def exists(path: str) -> bool:
    return _stat_or_none(path) is not None


def lexists(path: str) -> bool:
    return _stat_or_none(path, follow=False) is not None


def isdir(path: str) -> bool:
    st = _stat_or_none(path)
    return st is not None and st.st_mode & _S_IFMT == _S_IFDIR


def isfile(path: str) -> bool:
    st = _stat_or_none(path)
    return st is not None and is_regular(st)


def is_regular(st: stat_result) -> bool:
    return st.st_mode & _S_IFMT == _S_IFREG


def read_regular(path: str, dir_fd: "int | None" = None, limit: int = -1) -> "bytes | None":
    """The bytes of a regular file, or None if it is something else (a FIFO planted where a
    file of ours should be would block `open` for ever; /dev/zero never ends) or larger than
    `limit` bytes. Raises OSError as open() does.
    """
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC, dir_fd=dir_fd)
    with _io.open(fd, "rb") as f:  # closes fd
        if not is_regular(fstat(fd)):
            return None
        data = f.read() if limit < 0 else f.read(limit + 1)
        return None if 0 <= limit < len(data) else data


def getsize(path: str) -> int:
    return stat(path).st_size


def open_standard_fds() -> None:
    """Put /dev/null on stdin, stdout and stderr where they are closed (`<&- >&- 2>&-`, some
    daemons): else the first files opened take fds 0-2, and a forked worker, which keeps
    0-2 open, would hold the write end of its own job pipe and never see its end (a hang).
    """
    for fd in (0, 1, 2):
        try:
            posix.fstat(fd)
        except OSError:
            null = posix.open("/dev/null", posix.O_RDWR)  # the lowest free descriptor: this one
            if null != fd:
                posix.dup2(null, fd)
                posix.close(null)


def os_error_message(e: OSError) -> str:
    """An OSError as one line naming what it is about: the file, or the current directory
    when that was deleted (`[Errno 2] No such file or directory` alone says neither)."""
    if e.filename is not None:
        also = f" -> {e.filename2}" if getattr(e, "filename2", None) is not None else ""
        return f"{e.filename}{also}: {e.strerror or e}"
    try:
        posix.getcwd()
    except OSError:
        pwd = getenv("PWD")
        return (f"the current directory{f' ({pwd})' if pwd else ''} no longer exists ({e.strerror or e}); "
                "cd to a directory that exists")
    return str(e)
