"""The per-user cache: its layout, unpacked wheels keyed by sha256, use and prune.

Standard library only: the tool's own dependencies are unpacked through this module
before they can be imported. Extracting a wheel is extract.py's; the stat index of wheel
hashes is digest.py's (`Cache.stat_index`).

Cache files are marshal data (store.py). Layout under the root (`$CROS_VENV_CACHE`,
else `$XDG_CACHE_HOME/cros_venv`, else `~/.cache/cros_venv`):

    wheels/<sha256>/          a wheel's members, exactly as in the zip (read-only files), and
                              MANIFEST (extract.py): each file's size and mtime as extracted
    wheels/.tmp-*             an extraction in progress (or killed, or a damaged entry set
                              aside): never trusted
    stat/<dir-id>.m4          {filename: [inode, size, mtime_ns, ctime_ns, sha256]} per wheelhouse
                              (digest.StatIndex)
    interpreters/<id>.m4      what a target interpreter reported about itself
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

import errno
import fcntl
import os
import time

from cros_venv import store
from cros_venv.digest import StatIndex
from cros_venv.errors import BuildError, InputError, LockTimeout
from cros_venv.extract import LEGACY_MANIFEST, MANIFEST, WheelRead, extract_wheel
from cros_venv.lite import contextmanager, suppress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

SUBDIRS = ("wheels", "stat", "interpreters", "plans", "resolutions", "skeletons")
TMP_PREFIX = ".tmp-"  # then the extracting process's pid: never trusted, removed by prune
WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def default_root() -> str:
    """Where the cache lives, from the environment."""
    explicit = os.environ.get("CROS_VENV_CACHE")
    if explicit:
        return os.path.abspath(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cros_venv")


def not_writable(root: str, e: OSError | None = None) -> InputError:
    """The one-line error for a cache this user cannot write."""
    why = f" ({e.strerror})" if e is not None and e.strerror else ""
    return InputError(f"cannot write the cache at {root}{why}; "
                      "set CROS_VENV_CACHE to a directory you can write, or fix its permissions")


def atomic_write(path: str, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never a part.

    Temp file in the same directory, rename over it. `durable` (the marker) adds an fsync
    of the file before the rename and of the directory after; cache files skip both (a
    cache file lost in a crash is recomputed, and each fsync costs a journal commit).
    """
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.urandom(6).hex()}")  # no tempfile: ~2 ms to import
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class Cache:
    """The cache rooted at `root` (created on first use)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.wheels = os.path.join(root, "wheels")
        self.stat_index = StatIndex(os.path.join(root, "stat"))  # see digest.py
        self._writable: bool | None = None

    def ensure_dirs(self) -> None:
        try:
            for sub in SUBDIRS:
                os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        except OSError as e:
            raise not_writable(self.root, e) from None

    @property
    def writable(self) -> bool:
        """Can this process add entries? (A cache shared read-only still serves what it has.)"""
        if self._writable is None:
            self._writable = os.access(self.wheels, os.W_OK)
        return self._writable

    def require_writable(self) -> None:
        if not self.writable:
            raise not_writable(self.root)

    # -- use and prune ---------------------------------------------------------------------

    @contextmanager
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

    def prune(self, max_age_days: float, timeout: float = float("inf"),
              waiting: Callable[[], None] | None = None, dry_run: bool = False,
              on_remove: Callable[[str], None] | None = None) -> tuple[int, int]:
        """Remove entries unused for `max_age_days` and any abandoned temp dirs (`dry_run`:
        only say so), calling `on_remove` with each before it goes.

        Waits until no build is running (calling `waiting` once if it has to; LockTimeout
        after `timeout` seconds: a build stopped with SIGSTOP holds its lock for ever).
        Returns (entries removed, entries kept).
        """
        fd = -1  # a dry run removes nothing: it needs neither the lock nor a cache it can write
        if not dry_run:
            self.ensure_dirs()
            try:
                fd = os.open(os.path.join(self.root, "use.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as e:
                raise not_writable(self.root, e) from None
        removed = kept = 0
        try:
            deadline = time.monotonic() + timeout
            while fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if waiting is not None:
                        waiting()
                        waiting = None
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"builds are still using the cache at {self.root} after {timeout:g} s; "
                                          "run --prune-cache again later, or give a longer --lock-timeout") from None
                    time.sleep(0.1)
            cutoff = time.time() - max_age_days * 86400
            # Every directory of the cache: entries and files unused since the cutoff (used
            # ones are touched, or cheap to make again), and every temporary left by a kill.
            for sub in SUBDIRS:
                directory = os.path.join(self.root, sub)
                if os.path.islink(directory) or not os.path.isdir(directory):
                    continue  # never delete through a link: what it leads to is not the cache's
                for name in sorted(os.listdir(directory)):
                    path = os.path.join(directory, name)
                    try:
                        old = os.lstat(path).st_mtime < cutoff
                    except OSError:
                        continue
                    if name.startswith(TMP_PREFIX) or old:
                        if on_remove is not None:
                            on_remove(path)
                        if dry_run:
                            pass
                        elif os.path.isdir(path) and not os.path.islink(path):
                            rmtree(path, ignore_errors=True)
                        else:
                            with suppress(OSError):
                                os.unlink(path)
                        removed += 1
                    else:
                        kept += 1
        finally:
            if fd >= 0:
                os.close(fd)
        return removed, kept

    # -- unpacked wheels -------------------------------------------------------------------

    def entry(self, sha256: str) -> str:
        return os.path.join(self.wheels, sha256)

    def has(self, sha256: str) -> bool:
        return os.path.isdir(self.entry(sha256))

    def intact(self, entry: str) -> bool:
        """Is every file of the entry as it was extracted (MANIFEST's size and mtime)?"""
        manifest = store.load_shared(os.path.join(entry, MANIFEST), os.path.join(entry, LEGACY_MANIFEST))
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
        rmtree(aside, ignore_errors=True)

    def unpack(self, wheel: str, sha256: str, read: WheelRead | None = None) -> str:
        """The cache entry for `wheel` (whose hash is `sha256`), extracting it if needed
        (`read`: the wheel read whole, if the caller has it). An entry is only ever made
        from bytes whose hash is its name.
        """
        final = self.entry(sha256)
        if os.path.isdir(final):
            with suppress(OSError):
                os.utime(final)
            return final
        self.require_writable()
        import tempfile

        tmp = tempfile.mkdtemp(dir=self.wheels, prefix=f"{TMP_PREFIX}{os.getpid()}-{sha256[:16]}-")
        try:
            if extract_wheel(wheel, tmp, read) != sha256:
                raise BuildError(f"{wheel} changed during the build; run create_venv again")
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        except OSError as e:
            rmtree(tmp, ignore_errors=True)
            if os.path.isdir(final):  # another process won the race: use its entry
                return final
            if e.errno in WRITE_ERRNOS:
                raise not_writable(self.root, e) from None
            raise BuildError(f"cannot unpack {os.path.basename(wheel)} into the cache: {e}") from None
        except BaseException:  # a wheel that is not a valid zip, an interrupt
            rmtree(tmp, ignore_errors=True)
            raise
        return final

    @staticmethod
    def touch(entry: str) -> str:
        """Mark an entry used now (prune removes entries unused for a while)."""
        with suppress(OSError):
            os.utime(entry)
        return entry


def rmtree(path: str, ignore_errors: bool = False) -> None:
    """shutil.rmtree, imported when used (~2 ms: a warm build into a new DIR removes nothing)."""
    import shutil

    shutil.rmtree(path, ignore_errors=ignore_errors)
