"""store: the cache's data files read back as written, and anything else as None, cheaply."""

from __future__ import annotations

import marshal
import resource
import subprocess
import sys
from pathlib import Path
from zlib import crc32

from cros_venv import store

DATA = {"files": [["purelib", "a/b.py", "a/b.py", "sha256=x", "12"]], "format": 3, "n": None, "ok": True}


def test_what_is_written_is_read(tmp_path: Path) -> None:
    path = tmp_path / ("f" + store.SUFFIX)
    path.write_bytes(store.dumps(DATA))
    assert store.load(str(path)) == DATA
    assert store.load(str(tmp_path / "missing")) is None


def test_every_flipped_byte_and_every_cut_is_a_miss() -> None:
    data = store.dumps(DATA)
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        assert store.loads(bytes(flipped)) is None, i
        assert store.loads(data[:i]) is None, i
    assert store.loads(data + b"x") is None


def test_counts_that_would_take_gigabytes_are_not_unmarshalled() -> None:
    """marshal allocates the count it reads before finding the data short: these 5-byte
    files made a build take 4 GB, or fail for ever with MemoryError (a break-it finding)."""
    code = ("import resource, sys; sys.path.insert(0, sys.argv[1]); "
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); from cros_venv import store; "
            "print([store.loads(bytes.fromhex(h)) for h in sys.argv[2:]])")
    bombs = [b"(\xff\xff\xff\x7f", b"[\xff\xff\xff\x7f", b"(\x00\x00\x00\x20"]
    # A file laid out as ours with a right checksum over a bomb is a crafted one; still no traceback.
    crafted = store.MAGIC + crc32(bombs[0]).to_bytes(4, "little") + len(bombs[0]).to_bytes(4, "little") + bombs[0]
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(Path(__file__).parent.parent),
                          *(b.hex() for b in [*bombs, crafted])], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[None, None, None, None]"
    assert marshal.version >= 4 and resource.RLIM_INFINITY  # (the modules this test leans on exist)
