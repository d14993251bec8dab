"""Writing the user's own files (a lock, a requirements file with hashes, wheels into
pip_packages/): all or nothing, even on a full disk, a Ctrl-C or a SIGTERM.

A file is replaced by a temporary file written beside it and renamed over it (through a
symlink: over its target, so the link stays a link), with the old file's mode and owner.
Wheels are copied beside their final name and renamed; an interrupted `install` removes
those it already put in place, so pip_packages/ is as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Sequence

from cros_venv.errors import InputError


class Replacement:
    """`text`, written next to `path`, that `commit` puts in its place (and `discard` drops)."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.real = os.path.realpath(path)
        directory, name = os.path.split(self.real)
        try:
            old = os.stat(self.real)
        except FileNotFoundError:
            old = None
        except OSError as e:
            raise InputError(f"{path}: cannot read it ({e.strerror or e}); nothing was changed") from None
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        except OSError as e:
            raise InputError(f"{path}: cannot write in {directory} ({e.strerror or e}); nothing was changed; "
                             "check its permissions") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if old is not None:
                os.chmod(self.tmp, old.st_mode & 0o7777)
                with contextlib.suppress(OSError):  # only root may give a file away; others keep theirs
                    os.chown(self.tmp, old.st_uid, old.st_gid)
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self.tmp, 0o666 & ~umask)
        except OSError as e:
            self.discard()
            raise InputError(f"{path}: cannot write it ({e.strerror or e}); nothing was changed") from None
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        os.replace(self.tmp, self.real)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def write_text(path: str, text: str) -> None:
    """Replace `path` with `text`, all or nothing."""
    pending = Replacement(path, text)
    try:
        pending.commit()
    except BaseException:
        pending.discard()
        raise


def install(files: Sequence[str], dest: str) -> list[str]:
    """Copy each of `files` into `dest` (same name) and return the paths made: each appears
    whole or not at all; on any failure or interrupt those already made are removed again.
    """
    made: list[str] = []
    part = ""
    try:
        for f in files:
            final = os.path.join(dest, os.path.basename(f))
            part = os.path.join(dest, f".{os.path.basename(f)}.part")
            shutil.copyfile(f, part)
            os.chmod(part, 0o644)
            os.replace(part, final)
            made.append(final)
            part = ""
    except BaseException as e:
        for p in [part, *made] if part else made:
            with contextlib.suppress(OSError):
                os.unlink(p)
        if isinstance(e, OSError):
            raise InputError(f"cannot write wheels into {dest} ({e.strerror or e}); nothing was changed") from None
        raise
    return made


def publish(pending: Replacement, files: Sequence[str], dest: str) -> None:
    """Install `files` into `dest`, then commit `pending`: both happen, or neither."""
    made: list[str] = []
    try:
        made = install(files, dest)
        pending.commit()
    except BaseException:
        pending.discard()
        for p in made:
            with contextlib.suppress(OSError):
                os.unlink(p)
        raise
