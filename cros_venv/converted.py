"""A spec python_venv cannot hand the build as it is, as a requirements file in the cache.

A PEP 723 block or a vpython spec is converted (specs.convert), and a requirements file
that is not a regular file (`--spec <(...)`, `-r /dev/stdin`: a pipe can be read once) is
copied, to `CACHE/specs/<sha256 of kind, interpreter, path and text>.txt`. The build reads that
copy, and python_venv's children find it in CROS_VENV_SPEC_PATH (a pipe's path is dead by
then). A problem the build finds in the copy is told at the line of the spec's own file.
"""

from __future__ import annotations

from cros_venv import fs, specs
from cros_venv.specs import Converted, Found

SPECS_DIR = "specs"  # cache/specs/<hash>.txt

_CONVERTED: dict[str, Found] = {}  # a converted spec's path -> the specs.Found it was made from, for messages


def origin(problem: str) -> str:
    """A problem found in a converted spec (cache/specs/ID.txt:LINE: ...) named by the spec it
    came from, at the line of that spec's file: the script's PEP 723 block, a .vpython3 file, ..."""
    for path, found in _CONVERTED.items():
        if problem.startswith(path + ":"):
            line, _, rest = problem[len(path) + 1:].partition(": ")
            if line.isdigit():
                try:
                    return _in_source(found, int(line) - 1, rest.replace(path, found.path))
                except Exception:  # a message, not a traceback, whatever went wrong here
                    return problem
    return problem


def _in_source(found: Found, number: int, rest: str) -> str:
    """`rest`, a problem with requirement `number` (1-based) of converted spec `found`, as
    `FILE:LINE: rest` of the spec's own file."""
    try:
        lines = specs.convert(found).lines
    except Exception:  # it converted before: this is only for the message
        lines = ()
    line = lines[number - 1] if 1 <= number <= len(lines) else found.line
    if found.kind != "requirements" and " --lock " in rest:  # the lock step writes pip's format, not this spec's
        import re

        rest = re.sub(r"keep every pin and add the closure with its wheels: .*? -o \S+",
                      f"pin each dependency below in {found.path} too", rest)
        rest = re.sub(r", or let the lock step pin it and its closure: .*$", "", rest)
    return f"{found.path}:{line}: {rest}"


def as_requirements(found: Found, python_arg: str | None) -> tuple[str, str | None]:
    """`found`, a spec that is not a requirements file (or not a regular one: a pipe, read
    once), as one in the cache, and the interpreter to build for. Made once per spec text
    and interpreter (the python it asks for, and requires-python, are checked then); each
    use after marks it used (GC removes specs unused for N days)."""
    from cros_venv import fastpath
    from cros_venv.digest import sha256_hex
    from cros_venv.locate import resolve_python

    cache = fastpath.cache_root()
    if cache is None:
        from cros_venv.cache import default_root

        cache = default_root()
    converted = None
    python = python_arg
    if python is None and found.kind == "vpython":  # its python_version picks the interpreter
        converted = specs.convert(found)
        if converted.python_version:
            python = f"python{converted.python_version}"
    target = resolve_python(python)
    ident = "\0".join([found.kind, target, found.path, found.text])  # its header names its own script
    path = fs.join(cache, SPECS_DIR, sha256_hex(ident.encode("utf-8", "surrogateescape"))[:32] + ".txt")
    _CONVERTED[path] = found
    if fs.isfile(path):
        fastpath.touch(path)  # a use (GC removes specs unused for N days), at most hourly
        return path, python
    converted = converted or specs.convert(found)
    _check_python(found, converted, python, target)
    from cros_venv.cache import atomic_write

    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in f"{found.path} ({found.origin})")
    header = f"# python_venv: the spec of {shown}, as requirements\n"  # one line, whatever the path holds
    import os

    try:
        os.makedirs(fs.dirname(path), exist_ok=True)
        atomic_write(path, (header + converted.requirements).encode("utf-8"))
    except OSError as e:
        from cros_venv.errors import InputError

        raise InputError(f"cannot write {path} ({e.strerror}): the cache {cache} is not writable by this user; "
                         "set CROS_VENV_CACHE to a directory you can write") from None
    return path, python


def _check_python(found: Found, converted: Converted, python: str | None, target: str) -> None:
    from cros_venv.errors import InputError
    from cros_venv.locate import not_found

    if not_found(target):
        raise InputError(f"{found.path} ({found.origin}) asks for Python {converted.python_version}, but there is "
                         f"no {python} on PATH; install it, or pass --python")
    version = _version_of(target)
    if converted.python_version and not (version + ".").startswith(converted.python_version + "."):
        raise InputError(f"{found.path} ({found.origin}) asks for Python {converted.python_version}, but {target} "
                         f"is {version}; pass --python with a {converted.python_version} interpreter")
    if converted.requires_python:
        from cros_venv import toolchain
        from cros_venv.cache import Cache, default_root

        cache = Cache(default_root())
        cache.ensure_dirs()
        with cache.in_use():
            toolchain.activate(cache)
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            wanted = SpecifierSet(converted.requires_python)
        except InvalidSpecifier:
            raise InputError(f"{found.path}: requires-python {converted.requires_python!r} is not a version "
                             "specifier (e.g. \">=3.9\")") from None
        if not wanted.contains(version, prereleases=True):
            raise InputError(f"{found.path} requires Python {converted.requires_python}, but {target} is {version}; "
                             "pass --python with an interpreter that fits")


def _version_of(python: str) -> str:
    import subprocess

    from cros_venv.errors import InputError

    try:
        out = subprocess.run([python, "-I", "-S", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InputError(f"cannot run {python}: {e}") from None
    if out.returncode != 0 or not out.stdout.strip():
        said = [line.strip() for line in out.stderr.splitlines() if line.strip()]
        raise InputError(f"{python} did not run ({said[0][:200] if said else f'exit {out.returncode}'}); "
                         "pass --python with a working interpreter")
    return out.stdout.strip()
