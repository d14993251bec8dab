"""The tool's own dependencies: wheels in pip_packages/, unpacked into the cache, put on sys.path.

This is how ensurepip runs pip from a wheel, minus the zipimport (importing virtualenv
from its zip costs ~0.25 s a run; from an unpacked copy, a third of that). Standard
library only until `activate` has run.
"""

from __future__ import annotations

import os
import sys

from cros_venv import __version__
from cros_venv.cache import Cache, default_root
from cros_venv.errors import BuildError
from cros_venv.unpacker import Unpacker

TYPE_CHECKING = False  # not typing's: the build does not import typing for this
if TYPE_CHECKING:
    from types import ModuleType

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # as fastpath.WHEEL_DIR
PIP_PACKAGES = os.path.join(REPO_ROOT, "pip_packages")

# Imported by the tool itself.
LIBRARIES = (
    "packaging-26.3-py3-none-any.whl",
    "installer-0.7.0-py3-none-any.whl",
)
# Reads TOML (pylock.toml, PEP 723 blocks) on Python < 3.11, which has no tomllib.
TOMLI = "tomli-2.5.0-py3-none-any.whl"
# Imported by the child that makes the venv skeleton.
VIRTUALENV = (
    "virtualenv-20.35.4-py3-none-any.whl",
    "distlib-0.4.4-py2.py3-none-any.whl",
    "filelock-3.19.1-py3-none-any.whl",
    "platformdirs-4.4.0-py3-none-any.whl",
)
# Installed into every venv whose requirements do not pin pip themselves.
PIP = "pip-26.0.1-py3-none-any.whl"


def wheel_path(filename: str) -> str:
    path = os.path.join(PIP_PACKAGES, filename)
    if not os.path.isfile(path):
        raise BuildError(
            f"the tool's own wheel {filename} is missing from {PIP_PACKAGES}; "
            "restore it with `git checkout -- pip_packages`"
        )
    return path


def unpack(cache: Cache, filenames: tuple[str, ...], unpacker: Unpacker | None = None) -> list[str]:
    """Cache entries (import roots) for the tool's wheels `filenames`, unpacking as needed
    (on `unpacker`'s workers if given, else here).
    """
    paths = [wheel_path(f) for f in filenames]
    if unpacker is None:
        unpacker = Unpacker(cache, workers=0)
    known, todo = unpacker.submit_missing(paths)
    results = {p: unpacker.result(p) for p in todo}
    hashed = {p: unpacker.hashed[p] for p in todo if p in unpacker.hashed}
    if hashed:
        cache.stat_index.record(hashed)
    return [results[p].entry if p in todo else _checked(cache, p, known[p]) for p in paths]


def _checked(cache: Cache, wheel: str, sha256: str) -> str:
    """The cache entry of one of the tool's own wheels, as extracted: a venv's files are hard
    links into the same entries, and an edit through one (`>>` on a module) must not reach the
    code this tool imports. A changed entry is set aside and unpacked again."""
    entry = cache.entry(sha256)
    if not cache.intact(entry):
        cache.set_aside(entry)
        return cache.unpack(wheel, sha256)
    return cache.touch(entry)


def virtualenv_id(cache: Cache) -> str:
    """What a skeleton template depends on besides the interpreter: virtualenv's wheels
    (by their bytes' sha256, from the stat index) and this tool's version (its driver).
    """
    if cache.root not in _VIRTUALENV_IDS:
        paths = [wheel_path(f) for f in VIRTUALENV]
        hashes = cache.stat_index.hashes(paths)
        _VIRTUALENV_IDS[cache.root] = ",".join([__version__, *(hashes[p] for p in paths)])
    return _VIRTUALENV_IDS[cache.root]


_VIRTUALENV_IDS: dict[str, str] = {}  # per run: the wheels do not change under a build


def prefetch(cache: Cache, filenames: tuple[str, ...], unpacker: Unpacker) -> None:
    """Start unpacking the tool's wheels `filenames` that the cache lacks."""
    unpacker.submit_missing([wheel_path(f) for f in filenames])


def activate(cache: Cache, unpacker: Unpacker | None = None) -> list[str]:
    """Make the tool's libraries importable in this process; returns their import roots."""
    roots = unpack(cache, LIBRARIES, unpacker)
    for entry in reversed(roots):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    return roots


def import_tomli(cache: Cache | None = None) -> ModuleType:
    """`tomli` from pip_packages/, for Python < 3.11 (3.11+ has it as tomllib): unpacked into
    the cache (default: the user's) and put on sys.path. Only a lock or a PEP 723 block needs it.
    """
    import importlib

    if cache is None:
        cache = Cache(default_root())
        cache.ensure_dirs()
    root = unpack(cache, (TOMLI,))[0]
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("tomli")
