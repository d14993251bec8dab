"""The format of the cache's own data files: marshal.

Resolutions, install plans, entry manifests and the stat index are read on every warm
build. `json` would cost ~6 ms of imports there (json.decoder imports `re`, which imports
`enum` and `functools`); `marshal` is built in, and reads these files faster too. Only
plain data is stored (dicts, lists, str, int, None, bool) and every reader checks the
shape of what it loaded (a cache file is data, not code: never trusted). The format
version is in every file name (SUFFIX): an interpreter with another marshal format reads
and writes other files, never misreads these.
"""

from __future__ import annotations

import marshal

from cros_venv import fs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUFFIX = f".m{marshal.version}"  # marshal's format version (4 on CPython 3.4 to 3.13)
MAX_SIZE = 64 << 20  # the largest cache file is a stat index: ~100 bytes a wheel


def dumps(data: dict[str, Any]) -> bytes:
    """`data` (plain data only) as a cache file's bytes."""
    return marshal.dumps(data, marshal.version)


def load(path: str) -> object:
    """A cache file's data, or None if it is missing, unreadable, truncated, not ours, not
    a regular file (a FIFO would block, a link to /dev/zero never ends) or over MAX_SIZE."""
    try:
        data = fs.read_regular(path, limit=MAX_SIZE)
        return None if data is None else marshal.loads(data)
    except (OSError, ValueError, EOFError, TypeError, RecursionError):
        return None
