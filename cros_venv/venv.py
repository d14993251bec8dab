"""A venv directory: its paths, what create_venv writes into it (the owner file, pip.conf,
provenance, the no-op key's directory list), and what makes it whole.

start writes the owner file (SIGN) that makes DIR ours; replacing an existing venv (who
may, wipe, restore, the trash) is cros_venv/replace.py.
"""

from __future__ import annotations

import errno
import os
from stat import S_ISDIR

from cros_venv import fs
from cros_venv.digest import sha256_hex
from cros_venv.errors import BuildError
from cros_venv.lite import NamedTuple, suppress
from cros_venv.names import DIRS_FILE, MARKER, SIGN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence


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


class Survey(NamedTuple):
    """What a venv was as built, recorded in its marker ("built") for `intact` to compare.

    The build writes nothing after DIRS_FILE (configure's last file) but the marker, so a
    file of the venv with a later mtime than `settled_ns` was written after the build.
    """

    files: tuple[str, ...]  # bin/ and the venv's top-level files (built_files)
    site_packages: tuple[str, ...]  # site-packages' entries: packages, modules, .pth files
    pyvenv_cfg: str  # sha256 of pyvenv.cfg
    dirs_file: str  # sha256 of DIRS_FILE (the directories the no-op key watches)
    settled_ns: int  # DIRS_FILE's mtime

    def to_json(self) -> dict[str, object]:
        return {"files": list(self.files), "site_packages": list(self.site_packages), "pyvenv_cfg": self.pyvenv_cfg,
                "dirs_file": self.dirs_file, "settled_ns": self.settled_ns}

    @classmethod
    def from_json(cls, built: object) -> Survey | None:
        """The survey in a marker's "built" object, or None if it is not one."""
        if not isinstance(built, dict):
            return None
        files, listing = built.get("files"), built.get("site_packages")
        cfg, dirs, settled = built.get("pyvenv_cfg"), built.get("dirs_file"), built.get("settled_ns")
        if not (isinstance(files, list) and isinstance(listing, list) and isinstance(cfg, str)
                and isinstance(dirs, str) and type(settled) is int
                and all(isinstance(f, str) for f in files) and all(isinstance(e, str) for e in listing)):
            return None
        return cls(tuple(files), tuple(listing), cfg, dirs, settled)


def survey(layout: Layout) -> Survey:
    """The venv as built, just before its marker is written (after configure and watch)."""
    dirs = os.path.join(layout.root, DIRS_FILE)
    return Survey(tuple(built_files(layout)), tuple(sorted(os.listdir(layout.site_packages))),
                  sha256_hex(_read(os.path.join(layout.root, "pyvenv.cfg"))), sha256_hex(_read(dirs)),
                  os.stat(dirs).st_mtime_ns)


def intact(layout: Layout, dist_infos: Sequence[str], wheel_dirs: list[str], built: Survey, *,
           python: str | None = None, shared: bool = False) -> str | None:
    """What is missing from, added to or changed in a venv whose marker says it is
    complete, or None.

    The interpreter, and that bin/python still runs `python` (the target's real path);
    every file of bin/ and the venv's top level as built, none written since; pyvenv.cfg
    and DIRS_FILE as built (sha256), pip.conf as this checkout writes it; site-packages'
    entries as built (a stray module or .pth file, a deleted `_virtualenv.pth`); no package
    beside `dist_infos` (one added with `pip install`); every file each installed package's
    RECORD lists, at the size it lists, and, if written since the build, with the sha256 it
    lists (a package removed with `pip uninstall`, a deleted, replaced or edited file).
    Not seen: a file edited to the same size with its mtime set back to before the build
    (that would mean reading every file; git's index trusts mtimes the same way).
    """
    for path in (layout.python, os.path.join(layout.root, "pyvenv.cfg")):
        if not os.path.exists(path):
            return f"{path} is missing"
    if python is not None and os.path.realpath(layout.python) != python:
        return f"its bin/python runs {os.path.realpath(layout.python)}, not {python}"
    settled = built.settled_ns
    for rel in built.files:
        path = os.path.join(layout.root, rel)
        try:
            st = os.lstat(path)
        except OSError:
            return f"{rel} is missing"
        if python is not None and rel.startswith("bin/python") and rel != "bin/python" and os.path.islink(path) and (
                os.path.realpath(path) != python):  # python3, python3.11: what an activated shell runs
            return f"its {rel} runs {os.path.realpath(path)}, not {python}"
        if st.st_mtime_ns > settled and rel not in ("pyvenv.cfg", DIRS_FILE, "pip.conf"):  # those: by content
            return f"its {rel} was changed after the build"
    try:
        added = sorted(set(built_files(layout)) - set(built.files))  # bin/pyvenv.cfg is read before ../pyvenv.cfg
    except OSError as e:
        return f"{e.filename} is missing or unreadable"
    if added:
        return f"it has files the build did not make ({', '.join(added)})"
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
        if sha256_hex(_read(os.path.join(layout.root, "pyvenv.cfg"))) != built.pyvenv_cfg:
            return "its pyvenv.cfg was changed"
        if sha256_hex(_read(os.path.join(layout.root, DIRS_FILE))) != built.dirs_file:
            return f"its {DIRS_FILE} is not as written"
    except OSError as e:
        return f"{e.filename} is missing or unreadable"
    try:
        listing = set(os.listdir(layout.site_packages))
    except OSError as e:
        return f"{layout.site_packages} is missing or unreadable ({e.strerror})"
    added = sorted(e for e in listing - set(dist_infos) if e.endswith((".dist-info", ".egg-info")))
    if added:
        return f"it has packages its requirements do not name ({', '.join(added)})"
    added, lost = sorted(listing - set(built.site_packages)), sorted(set(built.site_packages) - listing)
    if added or lost:
        return "its site-packages " + "; ".join(
            ([f"has what no package installed ({', '.join(added)})"] if added else [])
            + ([f"lost {', '.join(lost)}"] if lost else []))
    fresh = set()  # top-level files written since the build: a RECORD must vouch for each
    for name in listing:
        try:
            st = os.lstat(os.path.join(layout.site_packages, name))
        except OSError:
            return f"{name} of site-packages is missing"
        if st.st_mtime_ns > settled and not S_ISDIR(st.st_mode):
            fresh.add(name)
    return _records_intact(layout, dist_infos, settled, fresh)


def _records_intact(layout: Layout, dist_infos: Sequence[str], settled: int, fresh: set[str]) -> str | None:
    """Every file the packages' RECORDs list: there, at its size, and (if written after the
    build) with its sha256; and every `fresh` top-level file of site-packages (virtualenv's
    `_virtualenv.pth` and `.py`: no RECORD lists them) vouched for that way."""
    import csv  # here: ~2 ms of imports (re) that a build into a new directory never needs

    from cros_venv.digest import record_hash

    for dist_info in dist_infos:
        record = os.path.join(layout.site_packages, dist_info, "RECORD")
        try:
            rows = list(csv.reader(_read(record).decode("utf-8").splitlines()))
        except (OSError, UnicodeDecodeError, csv.Error):
            return f"{record} is missing or unreadable"
        for row in rows:
            if not row:
                continue
            path = os.path.join(layout.site_packages, row[0])
            try:
                st = os.lstat(path)
            except OSError:
                return f"{row[0]} of {dist_info} is missing"
            if len(row) > 2 and row[2].isdigit() and int(row[2]) != st.st_size:
                return f"{row[0]} of {dist_info} was replaced ({st.st_size} bytes, not {row[2]})"
            if st.st_mtime_ns > settled:  # written since the build: only its bytes can tell
                try:
                    same = len(row) > 1 and row[1].startswith("sha256=") and record_hash(_read(path)) == row[1]
                except OSError:
                    same = False
                if not same:
                    return f"{row[0]} of {dist_info} was changed after the build"
                fresh.discard(row[0])
    if fresh:
        return f"its site-packages/{min(fresh)} was changed after the build"
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
