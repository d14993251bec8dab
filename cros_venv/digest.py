"""sha256, computed here and nowhere else, and the stat index that remembers wheels' hashes.

Two implementations, chosen by size. Small inputs (keys, paths, a launcher's RECORD row)
use the interpreter's builtin `_sha2` (`_sha256` before 3.12): importing hashlib starts
OpenSSL (~3-5 ms), and a warm build hashes nothing large. Wheels use hashlib: OpenSSL's
sha256 is ~6x faster on megabytes (16 MB: ~9 ms against ~55 ms on this machine).

This module imports only `fs` (the no-op path uses it, see fastpath.py): hashlib and
binascii are imported where they are used.

The stat index: for each wheel directory, `<cache>/stat/<dir-id>.m4` (store.py) maps a wheel's file
name to [inode, size, mtime_ns, ctime_ns, sha256]. A wheel whose stamp still matches is not
hashed again; `--hash` checks ignore the index and hash the bytes.
"""

from __future__ import annotations

import sys

from cros_venv import fs

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~10 ms (see fastpath.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping, Sequence

CHUNK = 1 << 20
BULK = 1 << 20  # from this size on, hashlib's faster code pays for its import


def sha256(data: bytes = b"") -> Any:
    """A sha256 object of `data` without importing hashlib (which initialises OpenSSL: ~5 ms)."""
    if not _FACTORY:  # found once: a failed import costs ~0.1 ms, and a build hashes ~100 small things
        try:  # the module's name since 3.12; before, _sha256 (a failed import costs ~0.15 ms)
            if sys.version_info >= (3, 12):
                from _sha2 import sha256 as factory  # type: ignore[import-not-found,unused-ignore]
            else:
                from _sha256 import sha256 as factory  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # pragma: no cover - interpreters built without the module
            from hashlib import sha256 as factory
        _FACTORY.append(factory)
    return _FACTORY[0](data)


_FACTORY: list[Callable[[bytes], Any]] = []


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data`: the builtin for small data, OpenSSL's for large (see the module doc)."""
    if len(data) >= BULK:
        return sha256_bulk(data).hexdigest()  # type: ignore[no-any-return]
    return sha256(data).hexdigest()  # type: ignore[no-any-return]


def sha256_bulk(data: bytes = b"") -> Any:
    """A sha256 object from hashlib (OpenSSL): for megabytes, such as a wheel's bytes."""
    import hashlib

    return hashlib.sha256(data)


def hexdigest(algorithm: str, data: bytes) -> str:
    """Hex digest of `data` by any algorithm hashlib knows (a requirement's `--hash=sha384:...`)."""
    if algorithm == "sha256":
        return sha256_hex(data)
    import hashlib

    return hashlib.new(algorithm, data).hexdigest()


def record_hash(data: bytes) -> str:
    """A file's hash as RECORD writes it: `sha256=` and the urlsafe base64 digest, unpadded."""
    from binascii import b2a_base64  # not base64 (~0.5 ms): urlsafe is two characters swapped

    encoded = b2a_base64(sha256(data).digest(), newline=False).decode("ascii")
    return "sha256=" + encoded.replace("+", "-").replace("/", "_").rstrip("=")


def stamp(st: fs.stat_result) -> list[int]:
    """What says a file is unchanged, as git's index has it: inode, size, mtime, ctime.

    ctime cannot be set by a user: a file rewritten with its size and mtime restored
    (`cp -p`, `touch -r`, `rsync -a` in place) still gets a new ctime.
    """
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class Hashed:
    """A file's sha256 and the stamp of the bytes that were hashed: a row of the stat index."""

    __slots__ = ("sha256", "stamp")

    def __init__(self, sha256: str, stamp: Iterable[int]) -> None:
        self.sha256 = sha256
        self.stamp = list(stamp)

    def row(self) -> list[object]:
        return [*self.stamp, self.sha256]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hashed) and (self.sha256, self.stamp) == (other.sha256, other.stamp)

    def __repr__(self) -> str:
        return f"Hashed({self.sha256!r}, {self.stamp!r})"


def hash_file(path: str) -> Hashed:
    """sha256 of a file's bytes, and the stamp of the file they were read from."""
    h = sha256_bulk()
    with open(path, "rb") as f:
        st = fs.fstat(f.fileno())
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return Hashed(h.hexdigest(), stamp(st))


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    return hash_file(path).sha256


class StatIndex:
    """The stat index in `directory` (the cache's stat/): wheels' sha256, by stamp."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def path(self, wheel_dir: str) -> str:
        """The index file of the wheels in `wheel_dir`."""
        ident = sha256_hex(fs.fsencode(fs.realpath(wheel_dir)))[:24]
        from cros_venv.store import SUFFIX  # here: store imports fs, which the no-op path keeps lean

        return fs.join(self.directory, ident + SUFFIX)

    @staticmethod
    def _read(index_path: str) -> dict[str, object]:
        from cros_venv import store

        index = store.load(index_path)
        return index if isinstance(index, dict) else {}

    def known(self, wheel_paths: Sequence[str]) -> dict[str, str]:
        """sha256 of the wheels whose stamp matches their row (nothing is hashed)."""
        result: dict[str, str] = {}
        indexes: dict[str, dict[str, object]] = {}
        for p in wheel_paths:
            wheel_dir = fs.dirname(p)
            if wheel_dir not in indexes:
                indexes[wheel_dir] = self._read(self.path(wheel_dir))
            row = indexes[wheel_dir].get(fs.basename(p))
            try:
                st = fs.stat(p)
            except OSError:
                continue
            if isinstance(row, list) and len(row) == 5 and row[:4] == stamp(st) and isinstance(row[4], str):
                result[p] = row[4]
        return result

    def record(self, computed: Mapping[str, Hashed]) -> None:
        """Add hashes computed elsewhere (each with the stamp of the bytes hashed)."""
        from cros_venv import store
        from cros_venv.cache import atomic_write  # here: cache imports this module
        from cros_venv.lite import suppress

        by_dir: dict[str, list[str]] = {}
        for p in computed:
            by_dir.setdefault(fs.dirname(p), []).append(p)
        for wheel_dir, paths in by_dir.items():
            index_path = self.path(wheel_dir)
            index = self._read(index_path)
            for p in paths:
                index[fs.basename(p)] = computed[p].row()
            with suppress(OSError):  # only a cache
                atomic_write(index_path, store.dumps(index), durable=False)

    def hashes(self, wheel_paths: Sequence[str], trust_index: bool = True) -> dict[str, str]:
        """sha256 of each wheel: from the index when its stamp matches (unless not
        `trust_index`: `--hash` pins are checked against the bytes), else computed and recorded.
        """
        result = self.known(wheel_paths) if trust_index else {}
        todo = [p for p in dict.fromkeys(wheel_paths) if p not in result]
        if not todo:
            return result
        if sum(fs.getsize(p) for p in todo) < 16 << 20:  # a few ms: not worth a pool's import (~6 ms)
            hashed = [hash_file(p) for p in todo]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(4, len(todo))) as pool:
                hashed = list(pool.map(hash_file, todo))
        result.update((p, h.sha256) for p, h in zip(todo, hashed))
        self.record(dict(zip(todo, hashed)))
        return result
