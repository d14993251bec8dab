"""The format of the cache's own data files: marshal, behind a checksum.

Resolutions, install plans, entry manifests and the stat index are read on every warm
build. `json` would cost ~6 ms of imports there (json.decoder imports `re`, which imports
`enum` and `functools`); `marshal` is built in, and reads these files faster too. Only
plain data is stored (dicts, lists, str, int, None, bool) and every reader checks the
shape of what it loaded (a cache file is data, not code: never trusted).

marshal believes the counts it reads: one flipped byte can make it allocate gigabytes
before it finds the data short. So a file is MAGIC, the CRC-32 and length of the marshal
bytes, then those bytes, and nothing is unmarshalled unless both match (zlib is imported
on the warm path already). The format version is in every file name (SUFFIX): an
interpreter with another marshal format reads and writes other files, never these.
Entry and template manifests are also written as JSON, for earlier versions of the tool
that share the cache, and read from it when only that is there (`dump_shared`,
`load_shared`).
"""

from __future__ import annotations

import marshal
from zlib import crc32

from cros_venv import fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUFFIX = f".m{marshal.version}"  # marshal's format version (4 on CPython 3.4 to 3.13)
MAGIC = b"cvm1"
MAX_SIZE = 64 << 20  # the largest cache file is a stat index: ~100 bytes a wheel


def dumps(data: dict[str, Any]) -> bytes:
    """`data` (plain data only) as a cache file's bytes."""
    body = marshal.dumps(data, marshal.version)
    return MAGIC + crc32(body).to_bytes(4, "little") + len(body).to_bytes(4, "little") + body


def loads(data: bytes) -> object:
    """What `dumps` wrote, or None if `data` is not that, whole and unchanged."""
    body = data[12:]
    if (data[:4] != MAGIC or int.from_bytes(data[8:12], "little") != len(body)
            or int.from_bytes(data[4:8], "little") != crc32(body)):
        return None
    try:
        return marshal.loads(body)
    except (ValueError, EOFError, TypeError, RecursionError, MemoryError):
        return None


def load(path: str) -> object:
    """A cache file's data, or None if it is missing, unreadable, truncated, changed, not
    ours, not a regular file (a FIFO would block, a link to /dev/zero never ends) or over
    MAX_SIZE."""
    try:
        data = fs.read_regular(path, limit=MAX_SIZE)
    except (OSError, ValueError):
        return None
    return None if data is None else loads(data)


def dump_shared(path: str, legacy_path: str, data: dict[str, Any]) -> None:
    """Write a new file `data` at `path`, and as JSON at `legacy_path` for the earlier
    versions of the tool that share the cache and read only that (entry and template
    manifests: else each version would take the other's entries for damaged)."""
    import json  # made only when unpacking or making a template, where json is loaded anyway

    with open(path, "wb") as f:
        f.write(dumps(data))
    with open(legacy_path, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))


def load_shared(path: str, legacy_path: str) -> object:
    """What `dump_shared` wrote: from `path`, else (made by an earlier version) from the
    JSON at `legacy_path`; None if neither is readable."""
    found = load(path)
    if found is not None:
        return found
    import json

    try:
        data = fs.read_regular(legacy_path, limit=MAX_SIZE)
        return None if data is None else json.loads(data)
    except (OSError, ValueError, RecursionError):
        return None
