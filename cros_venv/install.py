"""Install an unpacked wheel (a cache entry) into a venv by hard link.

The semantics are the wheel spec's and pip's, using PyPA `installer` for the parts with
rules (RECORD rows and hashes, entry points, launcher scripts, `#!python` shebangs):
the archive root goes to site-packages, `<name>.data/<scheme>/` to that scheme's
directory, console and GUI scripts are generated for the venv's python, and RECORD is
rewritten with every installed file, plus INSTALLER and (for requested packages)
REQUESTED, so that pip can list, show, check and uninstall what we installed.

Files are hard links to the cache (the cache is never written through: pip and Python
replace files rather than editing them); across filesystems they are copied. Bytecode is
not compiled here: Python writes it on first import (or pass --compile).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import shutil
from base64 import urlsafe_b64encode
from typing import Iterable

from installer.records import Hash, RecordEntry, parse_record_file
from installer.scripts import Script
from installer.utils import fix_shebang, parse_entrypoints, parse_metadata_file

from cros_venv.errors import BuildError
from cros_venv.venv import Layout

INSTALLER = b"cros_venv\n"
# Installation-specific files in a wheel's dist-info that we write ourselves.
GENERATED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


class Linker:
    """Places files: hard link from the cache, else copy; later wheels overwrite earlier."""

    def __init__(self) -> None:
        self.copy = False
        self.made: set[str] = set()

    def ensure_dir(self, directory: str) -> None:
        if directory not in self.made:
            os.makedirs(directory, exist_ok=True)
            self.made.add(directory)

    def place(self, src: str, dst: str) -> None:
        self.ensure_dir(os.path.dirname(dst))
        if not self.copy:
            try:
                os.link(src, dst)
                return
            except FileExistsError:
                os.unlink(dst)
                os.link(src, dst)
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                self.copy = True
        if os.path.lexists(dst):
            os.unlink(dst)
        shutil.copy2(src, dst)

    def write(self, dst: str, data: bytes, executable: bool = False) -> None:
        self.ensure_dir(os.path.dirname(dst))
        if os.path.lexists(dst):
            os.unlink(dst)
        with open(dst, "wb") as f:
            f.write(data)
        if executable:
            os.chmod(dst, 0o755)


def _digest(data: bytes) -> Hash:
    return Hash("sha256", urlsafe_b64encode(hashlib.sha256(data).digest()).decode("ascii").rstrip("="))


def dist_info_dir(entry: str) -> str:
    found = [d for d in os.listdir(entry) if d.endswith(".dist-info")]
    if len(found) != 1:
        raise BuildError(f"the wheel unpacked at {entry} has {len(found)} .dist-info directories; replace the wheel")
    return found[0]


def install(entry: str, layout: Layout, requested: bool, linker: Linker) -> list[str]:
    """Install the wheel unpacked at `entry` into `layout`; returns the scripts written."""
    dist_info = dist_info_dir(entry)
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    with open(os.path.join(entry, dist_info, "WHEEL"), encoding="utf-8") as f:
        wheel_meta = parse_metadata_file(f.read())
    if not (wheel_meta["Wheel-Version"] or "").startswith("1."):
        raise BuildError(f"{dist_info} has Wheel-Version {wheel_meta['Wheel-Version']}; only 1.x is supported")
    sp = layout.site_packages
    schemes = {
        "purelib": sp, "platlib": sp, "scripts": layout.bin, "data": layout.root,
        "headers": os.path.join(layout.include, dist_info.split("-")[0]),
    }
    try:
        with open(os.path.join(entry, dist_info, "RECORD"), encoding="utf-8", newline="") as f:
            rows = list(parse_record_file(f))
    except OSError as e:
        raise BuildError(f"{dist_info} has no readable RECORD ({e.strerror}); replace the wheel") from None

    written: list[tuple[str, str, str]] = []
    scripts: list[str] = []
    for path, hash_, size in rows:
        if path.startswith(dist_info + "/") and path[len(dist_info) + 1:] in GENERATED:
            continue
        src = os.path.join(entry, path)
        if not path.startswith(data_dir + "/"):
            linker.place(src, os.path.join(sp, path))
            written.append((path, hash_, size))
            continue
        scheme, _, rel = path[len(data_dir) + 1:].partition("/")
        if scheme not in schemes or not rel:
            raise BuildError(f"{path} is not in a valid .data subdirectory; replace the wheel")
        dst = os.path.join(schemes[scheme], rel)
        if scheme == "scripts":
            with open(src, "rb") as raw, fix_shebang(raw, layout.python) as fixed:
                data = fixed.read()
            linker.write(dst, data, executable=True)
            written.append((os.path.relpath(dst, sp), str(_digest(data)), str(len(data))))
            scripts.append(dst)
        else:
            linker.place(src, dst)
            written.append((os.path.relpath(dst, sp), hash_, size))

    entry_points = os.path.join(entry, dist_info, "entry_points.txt")
    if os.path.exists(entry_points):
        with open(entry_points, encoding="utf-8") as f:
            for name, module, attr, section in parse_entrypoints(f.read()):
                script_name, data = Script(name, module, attr, section).generate(layout.python, "posix")
                dst = os.path.join(layout.bin, script_name)
                linker.write(dst, data, executable=True)
                written.append((os.path.relpath(dst, sp), str(_digest(data)), str(len(data))))
                scripts.append(dst)

    extra = {"INSTALLER": INSTALLER, **({"REQUESTED": b""} if requested else {})}
    for filename, data in extra.items():
        path = f"{dist_info}/{filename}"
        linker.write(os.path.join(sp, path), data)
        written.append((path, str(_digest(data)), str(len(data))))
    _write_record(os.path.join(sp, dist_info, "RECORD"), written, f"{dist_info}/RECORD")
    return scripts


def _write_record(path: str, rows: Iterable[tuple[str, str, str]], own: str) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=",", quotechar='"', lineterminator="\n")
    writer.writerows(rows)
    writer.writerow(RecordEntry(own, None, None).to_row())
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(out.getvalue())
