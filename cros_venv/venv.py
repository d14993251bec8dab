"""A venv directory: its paths, ownership, skeleton, wipe and marker.

Ownership protocol: create_venv writes SIGN first into a directory it creates (and keeps
it), and MARKER last when the venv is complete. A directory with either file, or an empty
one, may be wiped; anything else is not ours and is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass

from cros_venv import fastpath
from cros_venv.cache import atomic_write
from cros_venv.errors import BuildError, InputError

MARKER = fastpath.MARKER_NAME  # written last: the venv is complete
SIGN = ".cros_venv.owner"  # written first, kept: create_venv made this directory
TRASH_INFIX = ".cros_venv-trash-"


@dataclass(frozen=True)
class Layout:
    """The paths of a POSIX CPython venv, computed once."""

    root: str  # absolute, symlinks resolved
    python_version: str  # "3.11"

    @property
    def bin(self) -> str:
        return os.path.join(self.root, "bin")

    @property
    def python(self) -> str:
        """The interpreter users run; console scripts point at it."""
        return os.path.join(self.bin, "python")

    @property
    def site_packages(self) -> str:
        return os.path.join(self.root, "lib", f"python{self.python_version}", "site-packages")

    @property
    def include(self) -> str:
        """Where a wheel's .data/headers go (as pip does in a venv)."""
        return os.path.join(self.root, "include", "site", f"python{self.python_version}")

    @property
    def marker(self) -> str:
        return os.path.join(self.root, MARKER)

    @property
    def sign(self) -> str:
        return os.path.join(self.root, SIGN)


def resolve_dir(venv_dir: str) -> str:
    return os.path.realpath(venv_dir)


def is_ours(path: str) -> bool:
    """May `path` be wiped? Only if create_venv made it, or it is empty."""
    if os.path.lexists(os.path.join(path, MARKER)) or os.path.lexists(os.path.join(path, SIGN)):
        return True
    try:
        return not os.listdir(path)
    except OSError:
        return False


def check_replaceable(path: str) -> None:
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise InputError(f"{path} exists and is not a directory; remove it or choose another venv directory")
    if not is_ours(path):
        raise InputError(
            f"{path} exists, is not empty and was not made by create_venv (no {MARKER}); "
            "move it away or choose another venv directory"
        )


def wipe(path: str) -> str | None:
    """Move the venv at `path` aside (atomic: a rename in the same parent) for later deletion.

    Returns the trash path, or None if there was nothing to move. Raises if it is not ours.
    """
    check_replaceable(path)
    if not os.path.lexists(path):
        return None
    parent, name = os.path.split(path)
    trash = os.path.join(parent, f".{name}{TRASH_INFIX}{os.urandom(6).hex()}")
    try:
        os.rename(path, trash)
    except OSError as e:
        raise BuildError(f"cannot move the old venv {path} aside: {e.strerror}") from None
    return trash


def empty_trash(path: str) -> None:
    """Delete moved-aside venvs of `path` (ours and any left by a killed build).

    rmtree never follows symlinks, so links out of a venv are removed, not their targets.
    """
    parent, name = os.path.split(path)
    prefix = f".{name}{TRASH_INFIX}"
    with contextlib.suppress(OSError):
        for entry in os.listdir(parent):
            if entry.startswith(prefix):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def start(layout: Layout) -> None:
    """Create the venv directory and sign it as ours before anything else goes in."""
    try:
        os.makedirs(layout.root, exist_ok=True)
        with open(layout.sign, "wb") as f:
            f.write(b"Made by create_venv, which may wipe and rebuild it; complete when .cros_venv.json exists.\n")
    except OSError as e:
        raise BuildError(f"cannot create {layout.root}: {e.strerror}") from None


def configure(layout: Layout, wheel_dirs: list[str], provenance: str) -> None:
    """pip.conf (offline, find-links to the wheelhouse) and provenance in pyvenv.cfg."""
    lines = ["[global]", "no-index = true", "disable-pip-version-check = true"]
    lines += ["find-links ="] + [f"    {d}" for d in wheel_dirs]
    with open(os.path.join(layout.root, "pip.conf"), "w", encoding="utf-8") as f:
        f.write("# Written by create_venv: pip in this venv installs offline from these wheels.\n")
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(layout.root, "pyvenv.cfg"), "a", encoding="utf-8") as f:
        f.write(provenance)


def read_marker(layout: Layout) -> bytes | None:
    try:
        with open(layout.marker, "rb") as f:
            return f.read()
    except OSError:
        return None


def write_marker(layout: Layout, data: bytes) -> None:
    """Written last, atomically: from now on the venv is complete."""
    atomic_write(layout.marker, data)
