"""pip_packages/ as an index: the wheels of each project (from their filenames), the best one
for a target, and a wheel's METADATA.

Only filenames are read to index a wheelhouse; METADATA is read for the selected wheels.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from typing import Mapping

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename
from packaging.version import Version

from cros_venv.errors import BuildError, InputError
from cros_venv.interpreter import Target
from cros_venv.reqlines import Pin


@dataclass(frozen=True)
class Wheel:
    """A wheel file in a wheelhouse, known by its filename."""

    path: str
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]

    @property
    def filename(self) -> str:
        return os.path.basename(self.path)

    @property
    def is_pure(self) -> bool:
        return all(t.abi == "none" and t.platform == "any" for t in self.tags)


@dataclass(frozen=True)
class Wheelhouse:
    """The wheels of one directory, by project name."""

    directory: str
    wheels: Mapping[NormalizedName, tuple[Wheel, ...]]
    invalid: tuple[str, ...]  # files ending in .whl whose names are not valid wheel names
    not_files: tuple[str, ...] = ()  # entries named *.whl that are not regular files (directories, ...)

    @classmethod
    def scan(cls, directory: str) -> Wheelhouse:
        """Index the regular files (or links to them) named *.whl in `directory`."""
        by_name: dict[NormalizedName, list[Wheel]] = {}
        invalid: list[str] = []
        not_files: list[str] = []
        try:
            with os.scandir(directory) as it:
                entries = sorted((e.name, e.is_file()) for e in it if e.name.endswith(".whl"))
        except OSError as e:
            raise InputError(f"cannot read the wheel directory {directory}: {e.strerror}") from None
        for filename, is_file in entries:
            if not is_file:
                not_files.append(filename)
                continue
            try:
                name, version, _build, tags = parse_wheel_filename(filename)
            except InvalidWheelFilename:
                invalid.append(filename)
                continue
            by_name.setdefault(name, []).append(Wheel(os.path.join(directory, filename), name, version, tags))
        return cls(directory, {k: tuple(v) for k, v in by_name.items()}, tuple(invalid), tuple(not_files))

    def candidates(self, name: NormalizedName, version: Version) -> list[Wheel]:
        return [w for w in self.wheels.get(name, ()) if w.version == version]

    def for_pin(self, pin: Pin) -> list[Wheel]:
        """The wheels `pin` may use: of its name and version, and among those its lock names."""
        found = self.candidates(pin.name, pin.version)
        return found if pin.locked is None else [w for w in found if w.filename in pin.locked.filenames]


def best_wheel(candidates: list[Wheel], target: Target) -> Wheel | None:
    """The candidate whose best tag comes first in the target's tag order, if any fits."""
    rank = target.tag_rank
    scored = [(min((rank[t] for t in w.tags if t in rank), default=None), w) for w in candidates]
    fitting = [(r, w) for r, w in scored if r is not None]
    if not fitting:
        return None
    return min(fitting, key=lambda rw: (rw[0], rw[1].filename))[1]


# What reading a damaged zip raises: besides BadZipFile, EOFError for a truncated member,
# zlib.error for a bad deflate stream, NotImplementedError for an unknown compression method,
# RuntimeError for an encrypted member, LargeZipFile, ValueError.
ZIP_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError,
              RuntimeError, ValueError)
MAX_METADATA_SIZE = 16 << 20  # the largest METADATA on PyPI is a few MiB (a long description)


def read_metadata(wheel: Wheel, unpacked: str | None = None) -> Message:
    """The METADATA headers of `wheel`, from its cache entry if there is one, else its zip."""
    try:
        if unpacked is not None:
            for entry in os.listdir(unpacked):
                if entry.endswith(".dist-info"):
                    with open(os.path.join(unpacked, entry, "METADATA"), "rb") as f:
                        return _headers(f.read())
        with zipfile.ZipFile(wheel.path) as zf:
            for member in zf.namelist():
                parts = member.split("/")
                if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                    return _headers(read_metadata_member(zf, member))
    except (*ZIP_ERRORS, UnicodeDecodeError, KeyError) as e:
        raise BuildError(f"cannot read the metadata of {wheel.path} ({e}); replace it with a good wheel") from None
    raise BuildError(f"{wheel.path} has no .dist-info/METADATA; replace it with a good wheel")


def read_metadata_member(zf: zipfile.ZipFile, member: str) -> bytes:
    """The bytes of METADATA `member`. One that would unpack to more than MAX_METADATA_SIZE
    (a zip bomb: 16 MiB of METADATA deflate to a few KiB) is a BadZipFile, not a MemoryError.
    """
    size = zf.getinfo(member).file_size
    if size > MAX_METADATA_SIZE:
        raise zipfile.BadZipFile(f"its {member} would be {size} bytes unpacked")
    return zf.read(member)


def _headers(data: bytes) -> Message:
    return parse_headers(data.decode("utf-8"))


def parse_headers(text: str) -> Message:
    """METADATA's header block. Only that is parsed: the body (the long description,
    often most of the file) is never needed, and the email parser walks it line by line.
    """
    end = min((i for i in (text.find("\n\n"), text.find("\r\n\r\n")) if i >= 0), default=len(text))
    return HeaderParser().parsestr(text[:end + 1])
