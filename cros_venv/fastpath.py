"""The no-op check: is DIR already built from these requirements by this interpreter?

This runs before every wrapped script, so it must cost next to nothing: it imports only
`sys` and the builtin `posix` (already loaded; not even `os`, see fs.py) and the
stdlib-free modules fs, names, marker and locate -- never `os`, `json`, `re`, `typing`,
`argparse`, a sha256 module (importing one costs ~0.3 ms: the key holds a small
requirements file's bytes instead of their digest) or anything vendored. Nor does it
import `__future__` (~0.1-0.3 ms): annotations are quoted. tests/test_imports.py holds
the list. It compares a *stat fingerprint* ("no-op
key") stored in the marker with the current state of the requirements files, the
selected wheels, the interpreter and the venv's own directories. A mismatch proves
nothing is wrong; it only sends the caller down the full path, which recomputes the spec
and rebuilds only if the spec differs (refreshing the key if not).

The key is a string of space-separated tokens made of hex digits, digits and `.:=-`, so
marker.py can keep it on the marker's first line, found without a JSON parser.
"""

from cros_venv import fs, marker
from cros_venv.locate import resolve_python
from cros_venv.names import (
    DIRS_FILE,
    INSIDE_TRASH,
    MAX_REQUIREMENTS_SIZE,
    SHARED_DIR,
    SHARED_REAL,
    SHARED_REQUESTS,
    TRASH_SUFFIX,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~3 ms here
if TYPE_CHECKING:
    from typing import Callable, Iterable, Sequence

KEY_FORMAT = "cv4"  # cv3: directories' ctime too; cv4: small files' bytes, the trees' stamps whole
_PACKAGE = fs.dirname(fs.realpath(__file__))  # this checkout's code, by its real path (bin/ may be a link)
WHEEL_DIR = fs.join(fs.dirname(_PACKAGE), "pip_packages")  # the wheels of this checkout


SMALL_FILE = 32 << 10  # requirements files up to this size are kept whole in the key (as hex)


def _hex(path: str) -> str:
    return fs.fsencode(path).hex()


def read_regular(path: str) -> "bytes | None":
    """A requirements file's bytes, or None: not a regular file (a pipe or FIFO is never
    opened here: its bytes can be read only once, and a FIFO with no writer would block),
    unreadable, or larger than MAX_REQUIREMENTS_SIZE.
    """
    try:  # stat first: even a non-blocking open of a FIFO would let its writer go ahead
        return fs.read_regular(path, limit=MAX_REQUIREMENTS_SIZE) if fs.isfile(path) else None
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None


def _content_token(path: str, data: bytes) -> str:
    """What a requirements file held: its bytes themselves when small (`reqhex`, compared
    byte for byte), else their sha256 (`req`; only then is a sha256 module imported)."""
    if len(data) <= SMALL_FILE:
        return f"reqhex={_hex(path)}:{data.hex()}"
    from cros_venv.digest import sha256_hex

    return f"req={_hex(path)}:{sha256_hex(data)}"


def _stamp(st: "fs.stat_result") -> str:
    """git's index fields: inode, size, mtime, ctime (a user can restore mtime, not ctime)."""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _stat_token(kind: str, path: str) -> str:
    try:
        return f"{kind}={_hex(path)}:{_stamp(fs.stat(path))}"
    except OSError:
        return f"{kind}={_hex(path)}:missing"


def _dir_token(kind: str, path: str) -> str:
    """A directory's inode, mtime and ctime: an entry added, removed or renamed in it changes
    them (mtime can be set back with `touch -r`, as `rsync -a` and `tar` do; ctime cannot)."""
    try:
        st = fs.stat(path)
        return f"{kind}={_hex(path)}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    except OSError:
        return f"{kind}={_hex(path)}:missing"


def _tool_token(tool_version: str) -> str:
    """The tool's version and its code directory (a checkout, a pull or an edit that
    replaces files changes the directory's mtime).
    """
    try:
        code = fs.stat(_PACKAGE).st_mtime_ns
    except OSError:
        code = 0
    return f"tool={tool_version}:{code}"


def _venv_token(root: str) -> str:
    """The venv's path and identity: a venv moved, copied or replaced is another venv."""
    try:
        st = fs.stat(root)
        return f"venv={_hex(root)}:{st.st_dev}:{st.st_ino}"
    except OSError:
        return f"venv={_hex(root)}:missing"


def make_key(
    tool_version: str,
    python: str,
    arguments: "Sequence[str]",
    files: "Iterable[tuple[str, bytes]]",
    wheel_dirs: "Iterable[str]",
    wheels: "Iterable[str]",
) -> str:
    """The no-op key for a resolution (`venv_key` adds the venv's own part).

    python: the target interpreter's real path; arguments: the requirement files named on
    the command line (absolute); files: every requirements file read, with the bytes read;
    wheel_dirs: the wheelhouses searched (their mtime changes when a wheel is added, which
    may change the selection); wheels: the absolute paths of the installed wheels.
    """
    tokens = [KEY_FORMAT, _tool_token(tool_version), f"home={_hex(WHEEL_DIR)}", _stat_token("py", python)]
    tokens += [f"arg={_hex(a)}" for a in arguments]
    tokens += [_content_token(p, data) for p, data in files]
    tokens += [_dir_token("dir", d) for d in wheel_dirs]
    tokens += [_stat_token("whl", w) for w in wheels]
    return " ".join(tokens)


def _trees_token(root: str) -> str:
    """The inode, mtime and ctime of every directory DIRS_FILE lists (bin/ and everything
    under lib/ but __pycache__), after DIRS_FILE's own stamp (which an edit of the list
    changes): `pip uninstall`, a deleted package, module or `bin/python` changes one of
    them. (Each package directory has its __pycache__ made with the venv, so Python writing
    bytecode changes none of them.) Kept whole, not hashed: ~50 bytes a directory.
    """
    try:  # names relative to the venv's descriptor: shorter lookups (~0.3 ms of ~1 ms)
        fd = fs.open(root, fs.O_RDONLY | fs.O_DIRECTORY | fs.O_CLOEXEC)
    except OSError:
        return "trees=missing"
    stamps: list[str] = []
    try:
        listing = fs.read_regular(DIRS_FILE, dir_fd=fd)  # a FIFO planted there: no hang
        if listing is None:
            return "trees=missing"
        stat, add = fs.stat, stamps.append
        add(_stamp(stat(DIRS_FILE, dir_fd=fd)))
        for rel in listing.split(b"\n"):
            try:
                st = stat(rel, dir_fd=fd)
                add(f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}")
            except OSError:
                add("missing")
    except OSError:
        return "trees=missing"
    finally:
        fs.close(fd)
    return "trees=" + ".".join(stamps)


def venv_key(key: str, root: str, files: "Iterable[str]") -> str:
    """The marker's no-op key: the resolution's `key`, the venv's path and identity, the
    stamps of `files` (pyvenv.cfg, pip.conf) and of its directories (`_trees_token`).
    """
    return " ".join([key, _venv_token(root), *(_stat_token("file", f) for f in files), _trees_token(root)])


def key_matches(key: str, tool_version: str, python: str, arguments: "Sequence[str]",
                read: "Callable[[str], bytes | None]" = read_regular, venv_root: "str | None" = None) -> bool:
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
        if kind in ("req", "reqhex"):
            try:
                path = fs.fsdecode(bytes.fromhex(rest.partition(":")[0]))
            except ValueError:
                return False
            data = read(path)
            if data is None or _content_token(path, data) != token:
                return False
        elif kind in ("whl", "file", "dir"):
            hex_path = rest.partition(":")[0]
            try:
                path = fs.fsdecode(bytes.fromhex(hex_path))
            except ValueError:
                return False
            now = _dir_token(kind, path) if kind == "dir" else _stat_token(kind, path)
            if now != token:
                return False
        elif kind == "trees" and (venv_root is None or _trees_token(venv_root) != token):
            return False
    return True


def up_to_date(venv_dir: str, requirements: "Sequence[str]", python_arg: "str | None", tool_version: str) -> bool:
    """True if DIR is a complete venv, built from these requirements for this interpreter,
    and nothing it was built from or made of has changed since (as far as stat can tell).
    """
    key = marker.read_key(venv_dir)
    if key is None or not fs.exists(fs.join(venv_dir, "bin", "python")):
        return False
    root = fs.realpath(venv_dir)
    parent, name = fs.split(root)
    if fs.lexists(fs.join(parent, f".{name}{TRASH_SUFFIX}")) or fs.lexists(
            fs.join(root, INSIDE_TRASH)):
        return False  # an old venv is left to delete: the full path does that
    arguments = [fs.file_path(r) for r in requirements]
    return key_matches(key, tool_version, resolve_python(python_arg), arguments, venv_root=root)


# -- shared venvs (shared.py) ---------------------------------------------------------------

def cache_root() -> "str | None":
    """cache.default_root() without `os` (None: no HOME, so leave it to the full path)."""
    explicit = fs.getenv("CROS_VENV_CACHE")
    if explicit:
        return fs.abspath(explicit)
    xdg = fs.getenv("XDG_CACHE_HOME")
    if xdg and fs.isabs(xdg):
        return fs.join(xdg, "cros_venv")
    home = fs.getenv("HOME")
    return fs.join(home, ".cache", "cros_venv") if home and fs.isabs(home) else None


def request_file(cache: str, python: str, arguments: "Sequence[str]") -> str:
    """Where the shared venv for this request is remembered: by interpreter, checkout and
    requirement paths (what the file holds, its no-op key, says whether it still holds)."""
    ident = "\0".join([KEY_FORMAT, python, WHEEL_DIR, *arguments])
    from cros_venv.digest import sha256_hex  # (~0.3 ms; a shared venv's check pays it, DIR's does not)

    return fs.join(cache, SHARED_DIR, SHARED_REQUESTS, sha256_hex(fs.fsencode(ident))[:32])


def venv_tokens_match(key: str, root: str) -> bool:
    """Do the venv's own tokens of a marker's `key` (its path and identity, pyvenv.cfg and
    pip.conf, its directories) still hold for `root`?"""
    tokens = key.split(" ")
    if [t for t in tokens if t.startswith("venv=")] != [_venv_token(root)]:
        return False
    for token in tokens:
        kind, _, rest = token.partition("=")
        if kind == "file":
            try:
                path = fs.fsdecode(bytes.fromhex(rest.partition(":")[0]))
            except ValueError:
                return False
            if _stat_token(kind, path) != token:
                return False
        elif kind == "trees" and _trees_token(root) != token:
            return False
    return "trees=" in key


def shared_venv(requirements: "Sequence[str]", python_arg: "str | None", tool_version: str) -> "str | None":
    """The path of the shared venv built from these requirements for this interpreter, if
    it is known, complete and unchanged (else None: the full path finds or builds it)."""
    cache = cache_root()
    if cache is None:
        return None
    python = resolve_python(python_arg)
    arguments = [fs.file_path(r) for r in requirements]
    try:
        data = fs.read_regular(request_file(cache, python, arguments), limit=1 << 20)
    except (OSError, ValueError):
        return None
    if data is None:
        return None
    name, _, key = data.decode("utf-8", "replace").partition("\n")
    if not name or "/" in name or name.startswith(".") or not key_matches(key.rstrip("\n"), tool_version, python,
                                                                             arguments):
        return None
    link = fs.join(cache, SHARED_DIR, name)
    real = fs.realpath(link)
    if fs.dirname(real) != fs.join(fs.realpath(fs.join(cache, SHARED_DIR)), SHARED_REAL) or not fs.basename(
            real).startswith(name + "-"):
        return None  # the link was changed to lead elsewhere: another venv, not this spec's
    found = marker.read_key(real)
    if found is None or not fs.exists(fs.join(real, "bin", "python")) or not venv_tokens_match(found, real):
        return None
    return link


TOUCH_EVERY = 3600.0  # seconds: a use refreshes the link's mtime (GC's "last used") at most this often


def touch(link: str) -> None:
    """Record a use of the shared venv at `link` (its mtime is what GC ages), at most once
    every TOUCH_EVERY seconds: a use writes nothing most of the time."""
    import time

    try:
        if fs.lstat(link).st_mtime < time.time() - TOUCH_EVERY:
            fs.utime(link, follow_symlinks=False)
    except OSError:
        pass
