"""A venv directory: its paths, ownership, wipe and trash, and what makes it whole.

Ownership protocol: create_venv writes SIGN first into a directory it creates (and keeps
it), and MARKER last when the venv is complete. A directory with either file, or an empty
one, may be wiped; anything else is not ours and is never touched.
"""

from __future__ import annotations

import errno
import os

from cros_venv import fs
from cros_venv.cache import rmtree
from cros_venv.digest import sha256_hex
from cros_venv.errors import BuildError, InputError
from cros_venv.lite import NamedTuple, suppress
from cros_venv.names import DIRS_FILE, INSIDE_TRASH, LEGACY_TRASH_INFIX, MARKER, SIGN, TRASH_SUFFIX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

# A directory that cannot be renamed is cleared in place: a mount point (EBUSY), a parent
# this user cannot write (EACCES, EPERM), a container volume (EXDEV, EINVAL).
CANNOT_RENAME = (errno.EBUSY, errno.EACCES, errno.EPERM, errno.EXDEV, errno.EINVAL)


class Layout(NamedTuple):
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

    @property
    def files(self) -> tuple[str, str]:
        """The files of its own whose stamps the no-op key records (fastpath.venv_key)."""
        return os.path.join(self.root, "pyvenv.cfg"), os.path.join(self.root, "pip.conf")


def resolve_dir(venv_dir: str) -> str:
    return os.path.realpath(venv_dir)


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


def intact(layout: Layout, dist_infos: list[str], wheel_dirs: list[str], pyvenv_cfg: str, *,
           python: str | None = None, files: Sequence[str] = (), shared: bool = False) -> str | None:
    """What is missing from (or added to) a venv whose marker says it is complete, or None.

    The interpreter, and that bin/python still runs `python` (the target's real path);
    every file of `files` (bin/ and the venv's top level as built: activate, python3, ...);
    pyvenv.cfg (its sha256 as built), pip.conf and the no-op key's list of directories as
    written; every file each installed package's RECORD lists, at the size it lists (a
    package removed with `pip uninstall`, a deleted or replaced file, a deleted lib/ or
    bin/python); and no package beside `dist_infos` (one added with `pip install`, which
    may also have replaced a console script). A file edited in place to the same size is
    not seen (that would mean reading every file).
    """
    for path in (layout.python, os.path.join(layout.root, "pyvenv.cfg")):
        if not os.path.exists(path):
            return f"{path} is missing"
    if python is not None and os.path.realpath(layout.python) != python:
        return f"its bin/python runs {os.path.realpath(layout.python)}, not {python}"
    for rel in files:
        path = os.path.join(layout.root, rel)
        if not os.path.lexists(path):
            return f"{rel} is missing"
        if python is not None and rel.startswith("bin/python") and rel != "bin/python" and os.path.islink(path) and (
                os.path.realpath(path) != python):  # python3, python3.11: what an activated shell runs
            return f"its {rel} runs {os.path.realpath(path)}, not {python}"
    try:
        read_only = os.path.join(layout.root, READ_ONLY) if shared else None
        if _read(os.path.join(layout.root, "pip.conf")) != pip_conf(wheel_dirs, read_only):
            return "its pip.conf was changed"
        if read_only is not None and _read(read_only) != _READ_ONLY_TEXT:
            return f"its {READ_ONLY} was changed"
        if shared:
            from cros_venv import read_only as guard

            changed = guard.changed(layout.site_packages, _read)
            if changed is not None:
                return changed
        if sha256_hex(_read(os.path.join(layout.root, "pyvenv.cfg"))) != pyvenv_cfg:
            return "its pyvenv.cfg was changed"
        if b"bin" not in _read(os.path.join(layout.root, DIRS_FILE)).split(b"\n"):  # else the key watches nothing
            return f"its {DIRS_FILE} is not as written"
    except OSError as e:
        return f"{e.filename} is missing or unreadable"
    try:
        found = {e for e in os.listdir(layout.site_packages) if e.endswith((".dist-info", ".egg-info"))}
    except OSError as e:
        return f"{layout.site_packages} is missing or unreadable ({e.strerror})"
    added = sorted(found - set(dist_infos))
    if added:
        return f"it has packages its requirements do not name ({', '.join(added)})"
    import csv  # here: ~2 ms of imports (re) that a build into a new directory never needs

    for dist_info in dist_infos:
        record = os.path.join(layout.site_packages, dist_info, "RECORD")
        try:
            rows = list(csv.reader(_read(record).decode("utf-8").splitlines()))
        except (OSError, UnicodeDecodeError, csv.Error):
            return f"{record} is missing or unreadable"
        for row in rows:
            if not row:
                continue
            try:
                size = os.lstat(os.path.join(layout.site_packages, row[0])).st_size
            except OSError:
                return f"{row[0]} of {dist_info} is missing"
            if len(row) > 2 and row[2].isdigit() and int(row[2]) != size:
                return f"{row[0]} of {dist_info} was replaced ({size} bytes, not {row[2]})"
    return None


def _read(path: str) -> bytes:
    """A venv file's bytes; OSError if it is missing or not a regular file (a FIFO would block)."""
    data = fs.read_regular(path)
    if data is None:
        raise OSError(errno.EINVAL, "not a regular file", path)
    return data


def built_files(layout: Layout) -> list[str]:
    """What `intact` checks beside the packages: bin/ and the venv's top-level files as
    built (virtualenv's activation scripts and python links, pyvenv.cfg, ...)."""
    files = sorted(f"bin/{name}" for name in os.listdir(layout.bin))
    files += sorted(e.name for e in os.scandir(layout.root) if e.is_file(follow_symlinks=False) and e.name != MARKER)
    return files


def start(layout: Layout) -> None:
    """Create the venv directory and sign it as ours before anything else goes in."""
    try:
        os.makedirs(layout.root, exist_ok=True)
        with suppress(FileNotFoundError):
            os.unlink(layout.sign)  # a planted symlink must not be written through
        with open(layout.sign, "wb") as f:
            f.write(b"Made by create_venv, which may wipe and rebuild it; complete when .cros_venv.json exists.\n")
    except OSError as e:
        raise BuildError(f"cannot create {layout.root}: {e.strerror}") from None


READ_ONLY = "READ-ONLY.txt"  # a shared venv's: pip reads it on install/uninstall, and stops there
_READ_ONLY_TEXT = (b"# cros_venv: a shared venv is never changed; pip.conf makes pip read this file on every\n"
                   b"# install and uninstall, and the line below stops it with this message.\n"
                   b"this shared venv is read-only, build a private venv with create_venv DIR REQUIREMENTS "
                   b"and install there\n")


def pip_conf(wheel_dirs: list[str], read_only: str | None = None) -> bytes:
    """The venv's pip.conf: offline, find-links to the wheelhouse. With `read_only` (a
    shared venv's READ_ONLY file), no wheelhouse, and every install or uninstall refused.
    """
    if read_only is not None:
        lines = ["# Written by create_venv: this venv is shared; pip may list and check, not change it.",
                 "[global]", "no-index = true", "disable-pip-version-check = true",
                 "[install]", f"constraint = {read_only}", "[uninstall]", f"requirement = {read_only}"]
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    lines = ["# Written by create_venv: pip in this venv installs offline from these wheels.",
             "[global]", "no-index = true", "disable-pip-version-check = true"]
    lines += ["find-links ="] + [f"    {d}" for d in wheel_dirs]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def configure(layout: Layout, wheel_dirs: list[str], provenance: str, shared: bool = False) -> None:
    """pip.conf and provenance in pyvenv.cfg (a `shared` venv: pip.conf refuses changes)."""
    read_only = os.path.join(layout.root, READ_ONLY) if shared else None
    if read_only is not None:
        with open(read_only, "wb") as f:
            f.write(_READ_ONLY_TEXT)
        from cros_venv import read_only as guard

        guard.write(layout.site_packages)
    with open(os.path.join(layout.root, "pip.conf"), "wb") as f:
        f.write(pip_conf(wheel_dirs, read_only))
    with open(os.path.join(layout.root, "pyvenv.cfg"), "a", encoding="utf-8") as f:
        f.write(provenance)


def watch(layout: Layout, placed: set[str], modules: set[str]) -> None:
    """List the directories whose inode and mtime the no-op key records (DIRS_FILE):
    bin/, site-packages/ and every directory the wheels' files were `placed` in (scripts,
    data and headers too), with their parents. Each that holds modules gets its __pycache__ now, so that Python writing
    bytecode on first import changes none of them.
    """
    watched = {layout.bin, layout.site_packages}
    below_root = layout.root + os.sep
    for directory in placed:  # with their parents (site-packages/ or the root stops the walk)
        while directory.startswith(below_root) and directory not in watched:
            watched.add(directory)
            directory = os.path.dirname(directory)
    for directory in modules | {layout.site_packages}:
        with suppress(FileExistsError):
            os.mkdir(os.path.join(directory, "__pycache__"))
    cut = len(layout.root) + 1
    listing = sorted(d[cut:] for d in watched)  # all below the root: no os.path.relpath (slow)
    with open(os.path.join(layout.root, DIRS_FILE), "wb") as f:
        f.write(b"\n".join(os.fsencode(d) for d in listing))

