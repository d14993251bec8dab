"""sha256, computed in one place.

Standard library free at import: the builtin `_sha2` module, not `hashlib` (which
initialises OpenSSL: ~5 ms, on a no-op that costs ~12 ms in all).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


def sha256(data: bytes) -> Any:
    """A sha256 object of `data` without importing hashlib."""
    factory: Callable[[bytes], object]
    try:
        from _sha2 import sha256 as factory  # type: ignore[import-not-found,no-redef,unused-ignore]  # 3.12+
    except ImportError:
        try:
            from _sha256 import sha256 as factory  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # pragma: no cover - interpreters built without the module
            from hashlib import sha256 as factory
    return factory(data)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data` (see `sha256`)."""
    return sha256(data).hexdigest()  # type: ignore[no-any-return]
