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
    from typing import Callable, Iterable, Sequence

KEY_FORMAT = "cv1"
MARKER_NAME = ".cros_venv.json"
KEY_FIELD = b'"noop": "'


def sha256_hex(data: bytes) -> str:
    """sha256 of `data` without importing hashlib (which initialises OpenSSL: ~5 ms)."""
    factory: Callable[[bytes], object]
    try:
        from _sha2 import sha256 as factory  # type: ignore[import-not-found,no-redef,unused-ignore]  # 3.12+
    except ImportError:
        try:
            from _sha256 import sha256 as factory  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # pragma: no cover - interpreters built without the module
            from hashlib import sha256 as factory
    return factory(data).hexdigest()  # type: ignore[attr-defined,no-any-return]


def resolve_python(arg: str | None) -> str:
    """Real path of the target interpreter: `--python ARG` (a path or a name on PATH) or ours."""
    if arg is None:
        return os.path.realpath(sys.executable)
    if os.sep in arg:
        return os.path.realpath(arg)
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(entry or ".", arg)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    return os.path.realpath(arg)


def _hex(path: str) -> str:
    return os.fsencode(path).hex()


def _stat_token(kind: str, path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{kind}={_hex(path)}:missing"
    return f"{kind}={_hex(path)}:{st.st_size}:{st.st_mtime_ns}"


def _dir_token(path: str) -> str:
    try:
        return f"dir={_hex(path)}:{os.stat(path).st_mtime_ns}"
    except OSError:
        return f"dir={_hex(path)}:missing"


def make_key(
    tool_version: str,
    python: str,
    arguments: Sequence[str],
    files: Iterable[tuple[str, bytes]],
    wheel_dirs: Iterable[str],
    wheels: Iterable[str],
) -> str:
    """The no-op key for a build.

    python: the target interpreter's real path; arguments: the requirement files named on
    the command line (absolute); files: every requirements file read, with the bytes read;
    wheel_dirs: the wheelhouses searched (their mtime changes when a wheel is added, which
    may change the selection); wheels: the absolute paths of the installed wheels.
    """
    tokens = [KEY_FORMAT, f"tool={tool_version}", _stat_token("py", python)]
    tokens += [f"arg={_hex(a)}" for a in arguments]
    tokens += [f"req={_hex(p)}:{sha256_hex(data)}" for p, data in files]
    tokens += [_dir_token(d) for d in wheel_dirs]
    tokens += [_stat_token("whl", w) for w in wheels]
    return " ".join(tokens)


def read_key(venv_dir: str) -> str | None:
    """The no-op key stored in DIR's marker, or None if there is no readable marker."""
    try:
        with open(os.path.join(venv_dir, MARKER_NAME), "rb") as f:
            data = f.read()
    except OSError:
        return None
    start = data.find(KEY_FIELD)
    if start < 0:
        return None
    start += len(KEY_FIELD)
    end = data.find(b'"', start)
    if end < 0:
        return None
    return data[start:end].decode("ascii", "replace")


def key_matches(key: str, tool_version: str, python: str, arguments: Sequence[str]) -> bool:
    """Does the stored `key` still describe the world as it is now?"""
    tokens = key.split(" ")
    if tokens[0] != KEY_FORMAT or tokens[1] != f"tool={tool_version}":
        return False
    if tokens[2] != _stat_token("py", python):
        return False
    recorded_args = [t[4:] for t in tokens if t.startswith("arg=")]
    if recorded_args != [_hex(a) for a in arguments]:
        return False
    for token in tokens[3:]:
        kind, _, rest = token.partition("=")
        if kind == "req":
            hex_path, _, digest = rest.partition(":")
            try:
                with open(bytes.fromhex(hex_path), "rb") as f:
                    if sha256_hex(f.read()) != digest:
                        return False
            except (OSError, ValueError):
                return False
        elif kind in ("whl", "dir"):
            hex_path = rest.partition(":")[0]
            try:
                path = os.fsdecode(bytes.fromhex(hex_path))
            except ValueError:
                return False
            now = _stat_token("whl", path) if kind == "whl" else _dir_token(path)
            if now != token:
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
    arguments = [os.path.abspath(r) for r in requirements]
    return key_matches(key, tool_version, resolve_python(python_arg), arguments)
