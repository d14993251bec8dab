"""Requirements files as bytes, each read once per run.

A pipe such as /dev/stdin, or a FIFO, can be read only once; the bytes are shared by the
no-op key, the prefetch guess and the parser. (The no-op check reads regular files only,
with fastpath.read_regular.)
"""

from __future__ import annotations

from cros_venv import fs
from cros_venv.names import MAX_REQUIREMENTS_SIZE

__all__ = ["MAX_REQUIREMENTS_SIZE", "Sources", "read_requirements"]


def read_requirements(path: str) -> bytes:
    """A requirements file's bytes; one larger than MAX_REQUIREMENTS_SIZE (`-r /dev/zero`) is an
    OSError, not a MemoryError some minutes later.
    """
    with open(path, "rb") as f:
        data = f.read(MAX_REQUIREMENTS_SIZE + 1)
    if len(data) > MAX_REQUIREMENTS_SIZE:
        import errno

        raise OSError(errno.EFBIG, f"larger than {MAX_REQUIREMENTS_SIZE >> 20} MiB; is it a requirements file?")
    return data


class Sources:
    """Requirements files, each read once per run (a pipe such as /dev/stdin, or a FIFO,
    can be read only once); the bytes are shared by the no-op key, the prefetch guess and
    the parser.
    """

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def read(self, path: str) -> bytes:
        """The file's bytes; raises OSError as open() does."""
        key = fs.file_path(path)
        if key not in self.data:
            self.data[key] = read_requirements(path)
        return self.data[key]

    def get(self, path: str) -> bytes | None:
        try:
            return self.read(path)
        except OSError:
            return None
