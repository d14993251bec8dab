"""Unpack a wheel safely: no member outside the directory, no symlink, no name twice, every
CRC checked, no member inflating past its declared size (a zip bomb stops at its first lie).

Standard library only (the tool's own dependencies are unpacked through this module), and
`zipfile` is imported where a wheel is read: a warm build reads none (~4 ms).
"""

from __future__ import annotations

import os
import stat
import struct
import zlib

from cros_venv import store
from cros_venv.digest import Hashed, sha256_bulk, stamp
from cros_venv.errors import BuildError
from cros_venv.lite import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    import zipfile

CHUNK = 1 << 20
MANIFEST = ".cros_venv-files" + store.SUFFIX  # beside the members: {member: [size, mtime_ns]} as extracted
# The same as JSON, for the earlier versions of the tool that share a cache with this one
# (they read only this; this version reads it when MANIFEST is missing).
LEGACY_MANIFEST = ".cros_venv-files.json"
# A wheel up to WHOLE bytes is read at once; members up to WHOLE_MEMBER bytes are inflated
# from that copy with one zlib call. Larger ones are streamed (memory stays small).
WHOLE = 32 << 20
WHOLE_MEMBER = 4 << 20
_LOCAL_HEADER = b"PK\x03\x04"


class WheelRead(NamedTuple):
    """A wheel read whole, once: hashed, searched for its METADATA, unpacked from memory."""

    data: bytes
    zf: zipfile.ZipFile | None  # None: not a zip (unpacking it says so)
    hashed: Hashed  # the bytes' sha256, and the stamp of the file they were read from

    @classmethod
    def of(cls, wheel: str) -> WheelRead:
        import io
        import zipfile

        with open(wheel, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
        try:
            zf: zipfile.ZipFile | None = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
            zf = None
        return cls(data, zf, Hashed(sha256_bulk(data).hexdigest(), stamp(st)))

    def metadata(self) -> str | None:
        """The text of its .dist-info/METADATA, or None if it cannot be read (whoever needs it
        then reads the wheel again, and reports the problem).
        """
        import zipfile

        if self.zf is None:
            return None
        try:
            for name in self.zf.namelist():
                top, _, rest = name.partition("/")
                if top.endswith(".dist-info") and rest == "METADATA":
                    return self.zf.read(name).decode("utf-8")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, UnicodeDecodeError, ValueError, EOFError, OSError,
                zlib.error):
            pass
        return None


def extract_wheel(wheel: str, dest: str, read: WheelRead | None = None) -> str:
    """Unpack `wheel` into the empty directory `dest`, refusing unsafe members; returns the
    sha256 of the bytes unpacked (`read`: the wheel read whole already, if the caller has
    it). Raises BuildError for a wheel that is not a valid zip.

    zipfile reads the central directory; a small member is then taken straight from the
    wheel's bytes (local header, one `zlib.decompress`, CRC check) rather than through
    zipfile's streaming reader, and written with os.open/os.write: unpacking is thousands
    of small files, so the Python work and system calls per file are what it costs
    (~25% less CPU than `ZipFile.open` per member, measured on the benchmark set).
    """
    import io
    import zipfile

    try:
        if read is not None:
            _extract(wheel, dest, read.data, read.zf or zipfile.ZipFile(io.BytesIO(read.data)))
            return read.hashed.sha256
        with open(wheel, "rb") as f:
            if os.fstat(f.fileno()).st_size <= WHOLE:
                data = f.read()
                _extract(wheel, dest, data, zipfile.ZipFile(io.BytesIO(data)))
                return sha256_bulk(data).hexdigest()  # type: ignore[no-any-return]
            h = sha256_bulk()
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
            f.seek(0)
            _extract(wheel, dest, None, zipfile.ZipFile(f))
            return h.hexdigest()  # type: ignore[no-any-return]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, zlib.error) as e:
        raise BuildError(f"{wheel} is not a valid wheel ({e}); replace it with a good copy") from None


def _safe_member(name: str) -> bool:
    if name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return ".." not in name.split("/")


def _extract(wheel: str, dest: str, data: bytes | None, zf: zipfile.ZipFile) -> None:
    """extract_wheel's work; `data` is the wheel's bytes if it was read whole."""
    import zipfile

    made = {dest}
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    manifest: dict[str, list[int]] = {}
    for info in zf.infolist():
        name = info.filename
        mode = info.external_attr >> 16
        if not _safe_member(name) or name in (MANIFEST, LEGACY_MANIFEST):
            raise BuildError(f"{os.path.basename(wheel)} has an unsafe member {name!r}; rebuild the wheel")
        if stat.S_ISLNK(mode):
            raise BuildError(f"{os.path.basename(wheel)} has a symlink member {name!r}; rebuild the wheel")
        target = os.path.join(dest, name)
        if name.endswith("/"):
            os.makedirs(target, exist_ok=True)
            made.add(target.rstrip("/"))
            continue
        if name in manifest:
            raise BuildError(f"{os.path.basename(wheel)} has the member {name!r} twice; rebuild the wheel")
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        # Read-only: the file is hard-linked into venvs, and must not be edited through them.
        fd = os.open(target, flags, 0o555 if mode & 0o111 else 0o444)
        try:
            if (data is not None and info.file_size <= WHOLE_MEMBER and info.compress_type in (0, 8)
                    and not info.flag_bits & 1):
                write_all(fd, _member(data, info))
            else:
                written = 0
                with zf.open(info) as src:
                    for block in iter(lambda: src.read(CHUNK), b""):
                        written += len(block)
                        if written > info.file_size:  # zipfile trusts the local header; we do not
                            raise zipfile.BadZipFile(f"{name!r} inflates past its declared size")
                        write_all(fd, block)
            st = os.fstat(fd)
            manifest[name] = [st.st_size, st.st_mtime_ns]
        finally:
            os.close(fd)
    store.dump_shared(os.path.join(dest, MANIFEST), os.path.join(dest, LEGACY_MANIFEST), manifest)


def _member(data: bytes, info: zipfile.ZipInfo) -> bytes:
    """A stored or deflated member's bytes, checked against the central directory's CRC."""
    import zipfile

    at = info.header_offset
    if data[at:at + 4] != _LOCAL_HEADER:
        raise zipfile.BadZipFile(f"bad local header for {info.filename!r}")
    name_len, extra_len = struct.unpack_from("<HH", data, at + 26)
    start = at + 30 + name_len + extra_len
    raw = data[start:start + info.compress_size]
    try:
        # Never more than one byte past the declared size: a lying size is a zip bomb.
        body = zlib.decompressobj(-15).decompress(raw, info.file_size + 1) if info.compress_type == 8 else raw
    except zlib.error as e:
        raise zipfile.BadZipFile(f"{info.filename!r} does not inflate: {e}") from None
    if len(body) != info.file_size or zlib.crc32(body) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return body


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
