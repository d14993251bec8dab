"""Replacing the venv in DIR: whether it may be replaced (ownership), moving the old venv
aside (wipe) and back if the build fails (restore), and the trash it waits in until the new
one is complete.

Ownership protocol: create_venv writes SIGN first into a directory it creates (and keeps
it), and MARKER last when the venv is complete. A directory with either file, or an empty
one, may be wiped; anything else is not ours and is never touched.
"""

from __future__ import annotations

import errno
import os

from cros_venv.cache import rmtree
from cros_venv.errors import BuildError, InputError
from cros_venv.lite import NamedTuple, suppress
from cros_venv.names import INSIDE_TRASH, LEGACY_TRASH_INFIX, MARKER, SIGN, TRASH_SUFFIX

# A directory that cannot be renamed is cleared in place: a mount point (EBUSY), a parent
# this user cannot write (EACCES, EPERM), a container volume (EXDEV, EINVAL).
CANNOT_RENAME = (errno.EBUSY, errno.EACCES, errno.EPERM, errno.EXDEV, errno.EINVAL)


def is_ours(path: str) -> bool:
    """May `path` be wiped? Only if create_venv made it, or it is empty."""
    if any(os.path.lexists(os.path.join(path, n)) for n in (MARKER, SIGN, INSIDE_TRASH)):
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


def trash_dir(path: str) -> str:
    """Where old venvs of `path` wait to be deleted: `.NAME.cros_venv-trash/` beside it, one
    name, so that the no-op check sees leftovers with one lstat.
    """
    parent, name = os.path.split(path)
    return os.path.join(parent, f".{name}{TRASH_SUFFIX}")


class Wiped(NamedTuple):
    """What `wipe` did to the directory, so that a failed build can be undone."""

    root: str
    in_place: bool  # the build goes into the directory that was there
    aside: str | None  # where the old venv was moved (None: nothing to put back)

    def restore(self) -> bool:
        """Put things back as they were before the build (best effort). True if the old
        venv, or the empty or absent directory, is back.
        """
        try:
            if os.path.lexists(self.root):
                if self.in_place:
                    _clear(self.root, keep=(INSIDE_TRASH, SIGN))
                else:
                    rmtree(self.root)
            if self.aside is not None and self.in_place:  # moved into DIR/.cros_venv-old: out again
                names = sorted(os.listdir(self.aside), key=lambda n: n == MARKER)  # the marker last
                for name in names:
                    os.rename(os.path.join(self.aside, name), os.path.join(self.root, name))
                os.rmdir(self.aside)
            elif self.aside is not None:
                os.rename(self.aside, self.root)
                with suppress(OSError):
                    os.rmdir(os.path.dirname(self.aside))  # the trash, if nothing else is in it
            return True
        except OSError:
            return False


def wipe(path: str) -> Wiped:
    """Move the venv at `path` aside (atomic: a rename into the trash beside it), so that it
    can be put back if the build fails, and deleted once the new venv is complete.

    An empty directory is built in place. One that cannot be renamed (a mount point, a
    parent this user cannot write) has its contents moved into DIR/.cros_venv-old/ instead.
    Raises if not ours.
    """
    check_replaceable(path)
    if not os.path.lexists(path):
        return Wiped(path, in_place=False, aside=None)
    if not os.listdir(path):
        return Wiped(path, in_place=True, aside=None)
    trash = trash_dir(path)
    aside = os.path.join(trash, os.urandom(6).hex())
    try:
        _make_trash(trash)
        os.rename(path, aside)
    except OSError as e:
        if e.errno not in CANNOT_RENAME:
            raise BuildError(f"cannot move the old venv {path} aside: {e.strerror}") from None
        with suppress(OSError):
            os.rmdir(trash)
        return Wiped(path, in_place=True, aside=_set_aside_inside(path))
    return Wiped(path, in_place=False, aside=aside)


def _set_aside_inside(path: str) -> str:
    """For a DIR that cannot be moved (a mount point): move what is in it into
    DIR/.cros_venv-old/ (the same filesystem: renames), the marker first, so that the old
    venv can still be put back; deleted with the trash once the new one is complete. The
    owner file stays: a build killed now leaves a DIR that is still ours.
    """
    aside = os.path.join(path, INSIDE_TRASH)
    moved: list[str] = []
    try:
        if os.path.lexists(aside):  # left by a killed build: the venv it held was replaced since
            _remove(aside)
        os.mkdir(aside, 0o700)
        for name in sorted((n for n in os.listdir(path) if n not in (INSIDE_TRASH, SIGN)), key=lambda n: n != MARKER):
            os.rename(os.path.join(path, name), os.path.join(aside, name))
            moved.append(name)
    except OSError as e:
        for name in reversed(moved):
            with suppress(OSError):
                os.rename(os.path.join(aside, name), os.path.join(path, name))
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # bad input, not a failed build: exit 2
            raise InputError(f"cannot rebuild {path}: {e.strerror} (it, or what is in it, is not writable by this "
                             "user); ask its owner to run create_venv, or choose another venv directory") from None
        raise BuildError(f"cannot move the old venv in {path} aside: {e.strerror}") from None
    return aside


def _remove(target: str) -> None:
    if os.path.isdir(target) and not os.path.islink(target):
        rmtree(target)
    else:
        os.unlink(target)


def _make_trash(trash: str) -> None:
    """The trash directory, as a real directory (a planted symlink is removed, not followed)."""
    if os.path.islink(trash) or (os.path.lexists(trash) and not os.path.isdir(trash)):
        os.unlink(trash)
    with suppress(FileExistsError):
        os.mkdir(trash, 0o700)


def _clear(path: str, keep: tuple[str, ...]) -> None:
    """Delete what is in `path` (marker first: from then on it is incomplete), but `keep`."""
    with suppress(FileNotFoundError):
        os.unlink(os.path.join(path, MARKER))
    for name in os.listdir(path):
        if name not in keep:
            _remove(os.path.join(path, name))


def has_trash(path: str) -> bool:
    parent, name = os.path.split(path)
    return os.path.lexists(trash_dir(path)) or os.path.lexists(os.path.join(path, INSIDE_TRASH)) or any(
        e.startswith(f".{name}{LEGACY_TRASH_INFIX}") for e in _listdir(parent))


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def empty_trash(path: str) -> None:
    """Delete moved-aside venvs of `path` (ours and any left by a killed build).

    rmtree never follows symlinks, so links out of a venv are removed, not their targets
    (and a trash name planted as a symlink is unlinked, not followed).
    """
    parent, name = os.path.split(path)
    legacy = [e for e in _listdir(parent) if e.startswith(f".{name}{LEGACY_TRASH_INFIX}")]
    for target in [trash_dir(path), os.path.join(path, INSIDE_TRASH), *(os.path.join(parent, e) for e in legacy)]:
        if os.path.islink(target):
            with suppress(OSError):
                os.unlink(target)
        elif os.path.lexists(target):  # (rmtree imports shutil: ~2 ms, for nothing when there is none)
            rmtree(target, ignore_errors=True)
