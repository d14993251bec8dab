"""The no-op check: is DIR already built from these requirements by this interpreter?

This runs before every wrapped script, so it must cost next to nothing: it imports only
`os` and `sys` (already loaded) and a builtin sha256, never `json`, `re`, `argparse` or
anything vendored (`json` alone pulls in `re` and `enum`: ~10 ms, as much as starting
Python). It compares a *stat fingerprint* ("no-op key") stored in the marker with the
current state of the requirements files, the selected wheels and the interpreter. A
mismatch proves nothing is wrong; it only sends the caller down the full path, which
recomputes the spec and rebuilds only if the spec differs (refreshing the key if not).

The key is a string of space-separated tokens made of hex digits, digits and `:=`, so it
sits in the JSON marker without escaping and can be found there without a JSON parser.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~10 ms here
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Sequence

KEY_FORMAT = "cv2"
MARKER_NAME = ".cros_venv.json"
KEY_FIELD = b'"noop": "'
TRASH_SUFFIX = ".cros_venv-trash"  # `.NAME` + this, beside the venv: old venvs being deleted
INSIDE_TRASH = ".cros_venv-old"  # in a DIR that cannot be moved (a mount point): its old venv
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
WHEEL_DIR = os.path.join(os.path.dirname(_PACKAGE), "pip_packages")  # the wheels of this checkout
_REGULAR = 0o100000  # stat.S_IFREG, without importing stat


def sha256(data: bytes) -> Any:
    """A sha256 object of `data` without importing hashlib (which initialises OpenSSL: ~5 ms)."""
    factory: Callable[[bytes], object]
    try:
        from _sha2 import sha256 as factory  # type: ignore[import-not-found,no-redef,unused-ignore]  # 3.12+
    except ImportError:
        try:
            from _sha256 import sha256 as factory  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # pragma: no cover - interpreters built without the module
            from hashlib import sha256 as factory
    return factory(data)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data` (see `sha256`)."""
    return sha256(data).hexdigest()  # type: ignore[no-any-return]


def running_python() -> str:
    """Real path of the interpreter running this: the kernel's answer where there is one.
    sys.executable comes from PYTHONEXECUTABLE if that is set, even under -I.
    """
    try:
        return os.path.realpath(os.readlink("/proc/self/exe"))
    except OSError:
        return os.path.realpath(sys.executable)


def resolve_python(arg: str | None) -> str:
    """Real path of the target interpreter: `--python ARG` (a path or a name on PATH) or ours.

    A script in front of an interpreter (pyenv's shims, a wrapper) is asked which binary it
    runs: what it runs may change with the environment (PYENV_VERSION), while its own file,
    whose stamp the caches would key on, does not.
    """
    if arg is None:
        return running_python()
    found = os.path.realpath(arg)
    if os.sep not in arg:
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
            candidate = os.path.join(entry or ".", arg)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                found = os.path.realpath(candidate)
                break
    return _behind_script(found) or found


_ASK = ("import os, sys; e = '/proc/self/exe'; "
        "print(os.path.realpath(e) if os.path.exists(e) else os.path.realpath(sys.executable))")


def _behind_script(path: str) -> str | None:
    """The interpreter binary a `#!` script runs, or None (not a script, or it did not say)."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"#!":
                return None
    except OSError:
        return None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(write, 1)
            os.dup2(null, 2)
            os.execv(path, [path, "-I", "-S", "-c", _ASK])
        finally:
            os._exit(127)
    os.close(write)
    import select
    import time

    # One line is the answer: read until it is there, the pipe closes, or 30 s pass (a
    # process the wrapper left behind may hold the pipe open for ever).
    out = b""
    deadline = time.monotonic() + 30
    while b"\n" not in out and time.monotonic() < deadline:
        if not select.select([read], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        data = os.read(read, 4096)
        if not data:
            break
        out += data
    os.close(read)
    for _ in range(300):  # it has answered (or failed): it should be gone at once
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return None
    answer = os.fsdecode(out.partition(b"\n")[0].strip())
    if status != 0 or not answer.startswith("/") or not os.path.isfile(answer):
        return None
    return os.path.realpath(answer)


MAX_REQUIREMENTS_SIZE = 16 << 20  # this repo's own requirements file is 1 KiB; /dev/zero is endless


def read_requirements(path: str) -> bytes:
    """A requirements file's bytes; one larger than MAX_REQUIREMENTS_SIZE (`-r /dev/zero`) is an
    OSError, not a MemoryError some minutes later.
    """
    with open(path, "rb") as f:
        data = f.read(MAX_REQUIREMENTS_SIZE + 1)
    if len(data) > MAX_REQUIREMENTS_SIZE:
        import errno

        raise OSError(errno.EFBIG, f"larger than {MAX_REQUIREMENTS_SIZE >> 20} MiB; is it a requirements file?")
    return data


def read_regular(path: str) -> bytes | None:
    """The bytes of a regular file, or None: a pipe or FIFO is never opened here (its
    bytes can be read only once, and a FIFO with no writer would block).
    """
    try:
        if os.stat(path).st_mode & 0o170000 != _REGULAR:
            return None
        return read_requirements(path)
    except OSError:
        return None


class Sources:
    """Requirements files, each read once per run (a pipe such as /dev/stdin, or a FIFO,
    can be read only once); the bytes are shared by the no-op key, the prefetch guess and
    the parser.
    """

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def read(self, path: str) -> bytes:
        """The file's bytes; raises OSError as open() does."""
        key = os.path.abspath(path)
        if key not in self.data:
            self.data[key] = read_requirements(path)
        return self.data[key]

    def get(self, path: str) -> bytes | None:
        try:
            return self.read(path)
        except OSError:
            return None


def _hex(path: str) -> str:
    return os.fsencode(path).hex()


def _stamp(st: os.stat_result) -> str:
    """git's index fields: inode, size, mtime, ctime (a user can restore mtime, not ctime)."""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _stat_token(kind: str, path: str) -> str:
    try:
        return f"{kind}={_hex(path)}:{_stamp(os.stat(path))}"
    except OSError:
        return f"{kind}={_hex(path)}:missing"


def _dir_token(kind: str, path: str) -> str:
    """A directory's inode and mtime: an entry added, removed or renamed in it changes them."""
    try:
        st = os.stat(path)
        return f"{kind}={_hex(path)}:{st.st_ino}:{st.st_mtime_ns}"
    except OSError:
        return f"{kind}={_hex(path)}:missing"


def _tool_token(tool_version: str) -> str:
    """The tool's version and its code directory (a checkout, a pull or an edit that
    replaces files changes the directory's mtime).
    """
    try:
        code = os.stat(_PACKAGE).st_mtime_ns
    except OSError:
        code = 0
    return f"tool={tool_version}:{code}"


def _venv_token(root: str) -> str:
    """The venv's path and identity: a venv moved, copied or replaced is another venv."""
    try:
        st = os.stat(root)
        return f"venv={_hex(root)}:{st.st_dev}:{st.st_ino}"
    except OSError:
        return f"venv={_hex(root)}:missing"


def make_key(
    tool_version: str,
    python: str,
    arguments: Sequence[str],
    files: Iterable[tuple[str, bytes]],
    wheel_dirs: Iterable[str],
    wheels: Iterable[str],
) -> str:
    """The no-op key for a resolution (`venv_key` adds the venv's own part).

    python: the target interpreter's real path; arguments: the requirement files named on
    the command line (absolute); files: every requirements file read, with the bytes read;
    wheel_dirs: the wheelhouses searched (their mtime changes when a wheel is added, which
    may change the selection); wheels: the absolute paths of the installed wheels.
    """
    tokens = [KEY_FORMAT, _tool_token(tool_version), f"home={_hex(WHEEL_DIR)}", _stat_token("py", python)]
    tokens += [f"arg={_hex(a)}" for a in arguments]
    tokens += [f"req={_hex(p)}:{sha256_hex(data)}" for p, data in files]
    tokens += [_dir_token("dir", d) for d in wheel_dirs]
    tokens += [_stat_token("whl", w) for w in wheels]
    return " ".join(tokens)


DIRS_FILE = ".cros_venv.dirs"  # in a venv: its directories (relative, one a line), for the no-op key


def _trees_token(root: str) -> str:
    """The inode and mtime of every directory DIRS_FILE lists (bin/ and everything under
    lib/ but __pycache__), as one digest: `pip uninstall`, a deleted package, module or
    `bin/python` changes one of them. (Each package directory has its __pycache__ made with
    the venv, so Python writing bytecode changes none of them.)
    """
    try:
        with open(os.path.join(root, DIRS_FILE), "rb") as f:
            listing = f.read()
    except OSError:
        return "trees=missing"
    base = os.fsencode(root)
    stamps = []
    for rel in listing.split(b"\n"):
        try:
            st = os.stat(os.path.join(base, rel))
            stamps.append(f"{st.st_ino}:{st.st_mtime_ns}")
        except OSError:
            stamps.append("missing")
    return "trees=" + sha256_hex(listing + " ".join(stamps).encode())


def venv_key(key: str, root: str, files: Iterable[str]) -> str:
    """The marker's no-op key: the resolution's `key`, the venv's path and identity, the
    stamps of `files` (pyvenv.cfg, pip.conf) and of its directories (`_trees_token`).
    """
    return " ".join([key, _venv_token(root), *(_stat_token("file", f) for f in files), _trees_token(root)])


def read_key(venv_dir: str) -> str | None:
    """The no-op key stored in DIR's marker, or None if there is no readable marker."""
    try:
        with open(os.path.join(venv_dir, MARKER_NAME), "rb") as f:
            data = f.read()
    except OSError:
        return None
    start = data.find(KEY_FIELD)
    if start < 0 or not data.endswith(b"}\n"):  # a marker cut short is no marker
        return None
    start += len(KEY_FIELD)
    end = data.find(b'"', start)
    if end < 0:
        return None
    return data[start:end].decode("ascii", "replace")


def key_matches(key: str, tool_version: str, python: str, arguments: Sequence[str],
                read: Callable[[str], bytes | None] = read_regular, venv_root: str | None = None) -> bool:
    """Does the stored `key` still describe the world as it is now?

    `read` gives a requirements file's bytes (None: unreadable, or not to be read here).
    With `venv_root`, the key must be a marker's key for that venv.
    """
    tokens = key.split(" ")
    if tokens[:4] != [KEY_FORMAT, _tool_token(tool_version), f"home={_hex(WHEEL_DIR)}", _stat_token("py", python)]:
        return False
    recorded_args = [t[4:] for t in tokens if t.startswith("arg=")]
    if recorded_args != [_hex(a) for a in arguments]:
        return False
    venv_tokens = [t for t in tokens if t.startswith("venv=")]
    if venv_root is not None and venv_tokens != [_venv_token(venv_root)]:
        return False
    for token in tokens[4:]:
        kind, _, rest = token.partition("=")
        if kind == "req":
            hex_path, _, digest = rest.partition(":")
            try:
                data = read(os.fsdecode(bytes.fromhex(hex_path)))
            except ValueError:
                return False
            if data is None or sha256_hex(data) != digest:
                return False
        elif kind in ("whl", "file", "dir"):
            hex_path = rest.partition(":")[0]
            try:
                path = os.fsdecode(bytes.fromhex(hex_path))
            except ValueError:
                return False
            now = _dir_token(kind, path) if kind == "dir" else _stat_token(kind, path)
            if now != token:
                return False
        elif kind == "trees" and (venv_root is None or _trees_token(venv_root) != token):
            return False
    return True


def parse_simple_args(argv: Sequence[str]) -> tuple[str, list[str], str | None] | None:
    """(DIR, REQUIREMENTS, --python) from a plain command line, or None for anything else.

    Anything beyond positionals and `--python` (help, -v, other options) takes the full
    path, where argparse handles it properly.
    """
    positionals: list[str] = []
    python = None
    args = iter(argv)
    for arg in args:
        if arg == "--python":
            python = next(args, None)
            if python is None:
                return None
        elif arg.startswith("--python="):
            python = arg[len("--python="):]
        elif arg.startswith("-"):
            return None
        else:
            positionals.append(arg)
    if len(positionals) < 2:
        return None
    return positionals[0], positionals[1:], python


def up_to_date(argv: Sequence[str], tool_version: str) -> bool:
    """True if the command line asks for a venv that is already built and current."""
    parsed = parse_simple_args(argv)
    if parsed is None:
        return False
    venv_dir, requirements, python_arg = parsed
    key = read_key(venv_dir)
    if key is None or not os.path.exists(os.path.join(venv_dir, "bin", "python")):
        return False
    root = os.path.realpath(venv_dir)
    parent, name = os.path.split(root)
    if os.path.lexists(os.path.join(parent, f".{name}{TRASH_SUFFIX}")) or os.path.lexists(
            os.path.join(root, INSIDE_TRASH)):
        return False  # an old venv is left to delete: the full path does that
    arguments = [os.path.abspath(r) for r in requirements]
    return key_matches(key, tool_version, resolve_python(python_arg), arguments, venv_root=root)
