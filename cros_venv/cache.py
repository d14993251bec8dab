"""The per-user cache: unpacked wheels keyed by sha256, and a stat index of wheel hashes.

Standard library only: the tool's own dependencies are unpacked through this module
before they can be imported.

Layout under the root (`$CROS_VENV_CACHE`, else `$XDG_CACHE_HOME/cros_venv`, else
`~/.cache/cros_venv`):

    wheels/<sha256>/          a wheel's members, exactly as in the zip (read-only files), and
                              MANIFEST: each file's size and mtime as extracted
    wheels/.tmp-*             an extraction in progress (or killed, or a damaged entry set
                              aside): never trusted
    stat/<dir-id>.json        {filename: [inode, size, mtime_ns, ctime_ns, sha256]} per wheelhouse
    interpreters/<id>.json    what a target interpreter reported about itself
    plans/, resolutions/, skeletons/   see install.py, resolution.py, skeleton.py
    virtualenv/               virtualenv's app-data
    use.lock                  builds hold it shared; `prune` holds it exclusive

Entries are written into a temporary directory and renamed into place; rename is atomic,
so a reader sees a whole entry or none. When two processes race, the loser's rename fails
and it uses the winner's entry.

Entry files are hard-linked into venvs, so an edit inside a venv (a debugging `print` in
site-packages) writes through into the cache. The files are read-only, which stops most
editors and every non-root writer, and before an entry is linked into a venv its files
are checked against MANIFEST (size and mtime, which any write changes): a changed or
missing file means the entry is set aside and extracted again from the wheel. Root, or an
edit that restores size and mtime on purpose, is not stopped by the first and not seen
by the second; that is the same trust git gives its index.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import io
import json
import os
import shutil
import stat
import struct
import tempfile
import time
import zlib
from typing import TYPE_CHECKING, Iterator, Sequence

from cros_venv.digest import sha256_hex
from cros_venv.errors import BuildError, InputError

if TYPE_CHECKING:
    import zipfile  # imported where wheels are read: a warm build reads none (~4 ms)

CHUNK = 1 << 20
SUBDIRS = ("wheels", "stat", "interpreters", "plans", "resolutions", "skeletons")
TMP_PREFIX = ".tmp-"  # then the extracting process's pid: never trusted, removed by prune
MANIFEST = ".cros_venv-files.json"  # in an entry: {member: [size, mtime_ns]} as extracted
WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def default_root() -> str:
    """Where the cache lives, from the environment."""
    explicit = os.environ.get("CROS_VENV_CACHE")
    if explicit:
        return os.path.abspath(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cros_venv")


def stamp(st: os.stat_result) -> list[int]:
    """What says a file is unchanged, as git's index has it: inode, size, mtime, ctime.

    ctime cannot be set by a user: a file rewritten with its size and mtime restored
    (`cp -p`, `touch -r`, `rsync -a` in place) still gets a new ctime.
    """
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def load_json(path: str) -> object:
    """A cache file's JSON, or None if it is missing, unreadable, truncated or not JSON."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return None


def not_writable(root: str, e: OSError | None = None) -> InputError:
    """The one-line error for a cache this user cannot write."""
    why = f" ({e.strerror})" if e is not None and e.strerror else ""
    return InputError(f"cannot write the cache at {root}{why}; "
                      "set CROS_VENV_CACHE to a directory you can write, or fix its permissions")


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    import hashlib  # here: OpenSSL's start costs ~3 ms, and a warm build hashes nothing

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never a part.

    Temp file in the same directory, rename over it. `durable` (the marker) adds an fsync
    of the file before the rename and of the directory after; cache files skip both (a
    cache file lost in a crash is recomputed, and each fsync costs a journal commit).
    """
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _safe_member(name: str) -> bool:
    if name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return ".." not in name.split("/")


# A wheel up to WHOLE bytes is read at once; members up to WHOLE_MEMBER bytes are inflated
# from that copy with one zlib call. Larger ones are streamed (memory stays small).
WHOLE = 32 << 20
WHOLE_MEMBER = 4 << 20
_LOCAL_HEADER = b"PK\x03\x04"


def extract_wheel(wheel: str, dest: str, read: tuple[bytes, zipfile.ZipFile] | None = None) -> str:
    """Unpack `wheel` into the empty directory `dest`, refusing unsafe members; returns the
    sha256 of the bytes unpacked (`read`: the bytes and their ZipFile, if the caller has
    them; their hash is then the caller's to check).

    zipfile reads the central directory; a small member is then taken straight from the
    wheel's bytes (local header, one `zlib.decompress`, CRC check) rather than through
    zipfile's streaming reader, and written with os.open/os.write: unpacking is thousands
    of small files, so the Python work and system calls per file are what it costs
    (~25% less CPU than `ZipFile.open` per member, measured on the benchmark set).
    """
    import hashlib
    import zipfile

    if read is not None:  # the wheel's bytes and their ZipFile, from the caller
        _extract(wheel, dest, *read)
        return ""
    with open(wheel, "rb") as f:
        if os.fstat(f.fileno()).st_size <= WHOLE:
            data = f.read()
            _extract(wheel, dest, data, zipfile.ZipFile(io.BytesIO(data)))
            return hashlib.sha256(data).hexdigest()
        h = hashlib.sha256()
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
        f.seek(0)
        _extract(wheel, dest, None, zipfile.ZipFile(f))
        return h.hexdigest()


def _extract(wheel: str, dest: str, data: bytes | None, zf: zipfile.ZipFile) -> None:
    """extract_wheel's work; `data` is the wheel's bytes if it was read whole."""
    import zipfile

    made = {dest}
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    manifest: dict[str, list[int]] = {}
    for info in zf.infolist():
        name = info.filename
        mode = info.external_attr >> 16
        if not _safe_member(name) or name == MANIFEST:
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
    with open(os.path.join(dest, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, separators=(",", ":"))


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


class Cache:
    """The cache rooted at `root` (created on first use)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.wheels = os.path.join(root, "wheels")

    def ensure_dirs(self) -> None:
        try:
            for sub in SUBDIRS:
                os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        except OSError as e:
            raise not_writable(self.root, e) from None

    @functools.cached_property
    def writable(self) -> bool:
        """Can this process add entries? (A cache shared read-only still serves what it has.)"""
        return os.access(self.wheels, os.W_OK)

    def require_writable(self) -> None:
        if not self.writable:
            raise not_writable(self.root)

    # -- use and prune ---------------------------------------------------------------------

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Held (shared) by every build, so that `prune` never removes what a build uses.

        A cache this user cannot write is used without it (no one could prune it either).
        """
        path = os.path.join(self.root, "use.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno not in WRITE_ERRNOS:
                raise
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                yield
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def prune(self, max_age_days: float) -> tuple[int, int]:
        """Remove entries unused for `max_age_days` and any abandoned temp dirs.

        Waits until no build is running. Returns (entries removed, entries kept).
        """
        self.ensure_dirs()
        try:
            fd = os.open(os.path.join(self.root, "use.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise not_writable(self.root, e) from None
        removed = kept = 0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            cutoff = time.time() - max_age_days * 86400
            # Every directory of the cache: entries and files unused since the cutoff (used
            # ones are touched, or cheap to make again), and every temporary left by a kill.
            for sub in SUBDIRS:
                directory = os.path.join(self.root, sub)
                for name in sorted(os.listdir(directory)):
                    path = os.path.join(directory, name)
                    try:
                        old = os.lstat(path).st_mtime < cutoff
                    except OSError:
                        continue
                    if name.startswith(TMP_PREFIX) or old:
                        if os.path.isdir(path) and not os.path.islink(path):
                            shutil.rmtree(path, ignore_errors=True)
                        else:
                            with contextlib.suppress(OSError):
                                os.unlink(path)
                        removed += 1
                    else:
                        kept += 1
        finally:
            os.close(fd)
        return removed, kept

    # -- hashes ----------------------------------------------------------------------------

    def stat_index_path(self, wheel_dir: str) -> str:
        ident = sha256_hex(os.fsencode(os.path.realpath(wheel_dir)))[:24]
        return os.path.join(self.root, "stat", ident + ".json")

    def _read_index(self, index_path: str) -> dict[str, object]:
        index = load_json(index_path)
        return index if isinstance(index, dict) else {}

    def known_hashes(self, wheel_paths: Sequence[str]) -> dict[str, str]:
        """sha256 of the wheels whose stamp (inode, size, mtime, ctime) matches the stat
        index (no hashing).
        """
        result: dict[str, str] = {}
        indexes: dict[str, dict[str, object]] = {}
        for p in wheel_paths:
            wheel_dir = os.path.dirname(p)
            if wheel_dir not in indexes:
                indexes[wheel_dir] = self._read_index(self.stat_index_path(wheel_dir))
            known = indexes[wheel_dir].get(os.path.basename(p))
            try:
                st = os.stat(p)
            except OSError:
                continue
            if (isinstance(known, list) and len(known) == 5 and known[:4] == stamp(st)
                    and isinstance(known[4], str)):
                result[p] = known[4]
        return result

    def record_hashes(self, computed: dict[str, list[object]]) -> None:
        """Add hashes computed elsewhere ({path: [*stamp, sha256]}, the stamp being that of
        the bytes hashed) to the stat index.
        """
        by_dir: dict[str, list[str]] = {}
        for p in computed:
            by_dir.setdefault(os.path.dirname(p), []).append(p)
        for wheel_dir, paths in by_dir.items():
            index_path = self.stat_index_path(wheel_dir)
            index = self._read_index(index_path)
            for p in paths:
                index[os.path.basename(p)] = computed[p]
            with contextlib.suppress(OSError):
                atomic_write(index_path, json.dumps(index, sort_keys=True).encode(), durable=False)

    def hashes(self, wheel_paths: Sequence[str], trust_index: bool = True) -> dict[str, str]:
        """sha256 of each wheel: from the stat index when its stamp matches (unless not
        `trust_index`: `--hash` pins are checked against the bytes), else computed (in
        parallel) and recorded.
        """
        result = self.known_hashes(wheel_paths) if trust_index else {}
        todo = [p for p in dict.fromkeys(wheel_paths) if p not in result]
        if todo:
            stats = [os.stat(p) for p in todo]  # before hashing: what the recorded hash is of
            if sum(st.st_size for st in stats) < 16 << 20:  # a few ms: not worth a pool's import (~6 ms)
                digests = [file_sha256(p) for p in todo]
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=min(4, len(todo))) as pool:
                    digests = list(pool.map(file_sha256, todo))
            result.update(zip(todo, digests))
            self.record_hashes({p: [*stamp(st), digest] for p, st, digest in zip(todo, stats, digests)})
        return result

    # -- unpacked wheels -------------------------------------------------------------------

    def entry(self, sha256: str) -> str:
        return os.path.join(self.wheels, sha256)

    def has(self, sha256: str) -> bool:
        return os.path.isdir(self.entry(sha256))

    def intact(self, entry: str) -> bool:
        """Is every file of the entry as it was extracted (MANIFEST's size and mtime)?"""
        manifest = load_json(os.path.join(entry, MANIFEST))
        if not isinstance(manifest, dict):
            return False
        lstat = os.lstat  # a tight loop: it runs for every file of every wheel
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False
        try:  # names relative to the entry's descriptor: shorter lookups than whole paths
            for name, (size, mtime_ns) in manifest.items():
                st = lstat(name, dir_fd=fd)
                if st.st_size != size or st.st_mtime_ns != mtime_ns:
                    return False
        except (OSError, TypeError, ValueError):
            return False
        finally:
            os.close(fd)
        return True

    def set_aside(self, entry: str) -> None:
        """Take a damaged entry out of use (rename: atomic), then delete it."""
        aside = os.path.join(self.wheels, f"{TMP_PREFIX}{os.getpid()}-damaged-{os.urandom(4).hex()}")
        try:
            os.rename(entry, aside)
        except FileNotFoundError:
            return  # another process set it aside first
        shutil.rmtree(aside, ignore_errors=True)

    def unpack(self, wheel: str, sha256: str, read: tuple[bytes, zipfile.ZipFile] | None = None) -> str:
        """The cache entry for `wheel` (whose hash is `sha256`), extracting it if needed
        (`read`: its bytes and ZipFile, if the caller has them and has checked that they
        hash to `sha256`). An entry is only ever made from bytes whose hash is its name.
        """
        import zipfile

        final = self.entry(sha256)
        if os.path.isdir(final):
            with contextlib.suppress(OSError):
                os.utime(final)
            return final
        self.require_writable()
        tmp = tempfile.mkdtemp(dir=self.wheels, prefix=f"{TMP_PREFIX}{os.getpid()}-{sha256[:16]}-")
        try:
            if extract_wheel(wheel, tmp, read) not in ("", sha256):
                raise BuildError(f"{wheel} changed during the build; run create_venv again")
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if os.path.isdir(final):  # another process won the race: use its entry
                return final
            if e.errno in WRITE_ERRNOS:
                raise not_writable(self.root, e) from None
            raise BuildError(f"cannot unpack {os.path.basename(wheel)} into the cache: {e}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, zlib.error) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(
                f"{wheel} is not a valid wheel ({e}); replace it with a good copy"
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    @staticmethod
    def touch(entry: str) -> str:
        """Mark an entry used now (prune removes entries unused for a while)."""
        with contextlib.suppress(OSError):
            os.utime(entry)
        return entry
