"""bin/venv_gc: remove shared venvs and cached wheels not used for N days, never one in use.

    venv_gc [--max-age-days N] [--dry-run]

A shared venv's last use is its link's mtime (venvs/NAME, touched by create_venv and
python_venv at most hourly: fastpath.touch). One is removed only when it is older than
the cutoff, its build lock (venvs/NAME.lock) and a flock on its directory are both free
(a running python_venv holds the directory shared): the link goes first, so that no one
finds the venv any more, then the directory. A directory no link leads to (replaced after
damage, or left by a killed build) goes at any age, under the same two locks. Then the
request files of venvs that are gone (or unused for N days), the converted specs unused
for N days that no remaining venv's request names (python_venv touches the one it uses,
at most hourly, and a running program's children read it), and the cache's wheels and
other entries unused for N days (Cache.prune: it waits for running builds). Each removal
is listed with its size; what cannot be removed (permission denied, ...) is told as such,
with its path, and what is in use as "in use".

The space freed counts a file's blocks once all its links are among what is removed (a
venv's files are hard links to the cache's unpacked wheels).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import time
from typing import Callable, Iterator, NoReturn, Sequence

from cros_venv.cache import Cache, default_root, rmtree
from cros_venv.converted import SPECS_DIR
from cros_venv.names import SHARED_DIR, SHARED_REAL, SHARED_REQUESTS

PROG = "venv_gc"


class Usage:
    """Blocks per inode over everything removed: a file is freed once all its links are."""

    def __init__(self) -> None:
        self.inodes: dict[tuple[int, int], list[int]] = {}  # (dev, ino) -> [nlink, blocks, links seen]

    def add(self, path: str) -> None:
        paths = [path]
        if os.path.isdir(path) and not os.path.islink(path):
            for dirpath, dirnames, filenames in os.walk(path):
                paths += [os.path.join(dirpath, n) for n in dirnames + filenames]
        for p in paths:
            try:
                st = os.lstat(p)
            except OSError:
                continue
            seen = self.inodes.setdefault((st.st_dev, st.st_ino), [st.st_nlink, st.st_blocks, 0])
            seen[2] += 1

    @property
    def freed(self) -> int:
        return sum(blocks * 512 for nlink, blocks, seen in self.inodes.values() if seen >= nlink)


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


@contextlib.contextmanager
def _held(path: str, directory: bool = False) -> Iterator[str | None]:
    """An exclusive flock on `path`, taken without waiting: yields None if held, else why
    not ("in use", or what stopped us opening it, e.g. "cannot open …: Permission denied")."""
    try:
        fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else
                     (os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW), 0o644)
    except OSError as e:
        if not directory and not os.path.exists(path):
            yield None  # no lock file, no build (one that cannot be created: no build here either)
        else:
            yield f"cannot open {path} to lock it: {e.strerror}"
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield "in use"
            return
        except OSError as e:
            yield f"cannot lock {path}: {e.strerror}"
            return
        yield None
    finally:
        os.close(fd)


def collect(cache_root: str, max_age_days: float, dry_run: bool, say: Callable[[str], None],
            lock_timeout: float = 600.0) -> tuple[int, int, int]:
    """Remove (or, `dry_run`, list) what is unused, each with its size; returns (venvs,
    cache entries, bytes freed)."""
    cutoff = time.time() - max_age_days * 86400
    # A request or converted spec made in the last minute may be about to be read by the
    # python_venv that made it (it has no lock to show for it yet): never one of those.
    file_cutoff = min(cutoff, time.time() - 60)
    usage = Usage()
    verb = "would remove" if dry_run else "removed"
    top = os.path.join(cache_root, SHARED_DIR)
    real_top = os.path.join(top, SHARED_REAL)
    venvs = 0

    def counted(path: str) -> str:
        alone = Usage()
        alone.add(path)
        usage.add(path)
        return _size(alone.freed)

    def remove(path: str, what: str) -> bool:
        """Remove `path` (renamed aside first, then deleted) and say so; False if it stays."""
        if not dry_run:
            aside = os.path.join(top, f".gc-{os.getpid()}-{os.urandom(4).hex()}")
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                return False
            except OSError as e:
                say(f"cannot remove {what} {path}: {e.strerror}")
                return False
            size = counted(aside)
            rmtree(aside, ignore_errors=True)
        else:
            size = counted(path)
        say(f"{verb} {what} {path} ({size})")
        return True

    def remove_file(path: str, what: str) -> None:
        alone = Usage()
        alone.add(path)
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            except OSError as e:
                say(f"cannot remove {what} {path}: {e.strerror}")
                return
        usage.inodes.update(alone.inodes)
        say(f"{verb} {what} {path} ({_size(alone.freed)})")

    links = _listdir(top)
    for name in links:  # what a venv_gc killed while deleting left: `.gc-PID-…` of a PID that is gone
        pid = name.split("-")[1] if name.startswith(".gc-") else ""
        if pid.isdigit() and not _alive(int(pid)):
            venvs += remove(os.path.join(top, name), "leftover of a stopped venv_gc")
    kept_real: set[str] = set()
    for name in links:
        link = os.path.join(top, name)
        if name.startswith(".") or not os.path.islink(link):
            continue
        target = os.readlink(link)
        real = os.path.join(top, target)
        if os.path.dirname(os.path.normpath(real)) != real_top:
            continue  # not a link we made
        try:
            old = os.lstat(link).st_mtime < cutoff
        except OSError:
            continue
        kept_real.add(os.path.basename(target))  # kept, or done with (a dry run lists it once)
        if not old:
            continue
        if not os.path.isdir(real):  # its venv is gone: the link leads nowhere
            if not dry_run:
                with contextlib.suppress(OSError):
                    os.unlink(link)
            continue
        with _held(os.path.join(top, name + ".lock")) as building, _held(real, directory=True) as running:
            why = building or running
            if why is not None:
                say(f"kept {link}: {why}")
                continue
            if not dry_run:
                try:
                    os.unlink(link)  # first: no one finds it any more
                except FileNotFoundError:
                    pass
                except OSError as e:
                    say(f"cannot remove {link}: {e.strerror}")
                    continue
            venvs += remove(real, "shared venv")
    for entry in _listdir(real_top):
        if entry in kept_real:
            continue
        name = entry.rpartition("-")[0]
        real = os.path.join(real_top, entry)
        with _held(os.path.join(top, name + ".lock")) as building, _held(real, directory=True) as running:
            why = building or running
            if why is None and (dry_run or not _linked(top, entry)):
                venvs += remove(real, "unused venv directory")
            elif why is not None and why != "in use":
                say(f"kept {real}: {why}")
    requests = os.path.join(top, SHARED_REQUESTS)
    live_specs: set[str] = set()  # the specs of venvs still here: a running program's children may read them
    stale: list[str] = []
    for entry in _listdir(requests):
        path = os.path.join(requests, entry)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                name = f.readline().strip()
                key = f.readline()
            old = os.lstat(path).st_mtime < file_cutoff
        except OSError:
            continue
        if name and "/" not in name and os.path.islink(os.path.join(top, name)):
            live_specs.update(os.path.realpath(p) for p in _arguments(key))
            in_use = os.path.basename(os.path.realpath(os.path.join(top, name))) in kept_real
            if not old or in_use:  # a venv kept in use keeps its request, so its spec stays live next time
                continue
        stale.append(path)
    for path in stale:
        remove_file(path, "request file")
    specs = os.path.join(cache_root, SPECS_DIR)
    for entry in _listdir(specs):
        path = os.path.join(specs, entry)
        with contextlib.suppress(OSError):
            if os.lstat(path).st_mtime < file_cutoff and os.path.realpath(path) not in live_specs:
                remove_file(path, "converted spec")
    entries = 0
    if os.path.isdir(cache_root):
        entries, _ = Cache(cache_root).prune(max_age_days, lock_timeout,
                                             lambda: say("waiting for the builds using the cache to finish"),
                                             dry_run=dry_run,
                                             on_remove=lambda path: say(f"{verb} cache entry {path} ({counted(path)})"))
    return venvs, entries, usage.freed


def _arguments(key: str) -> list[str]:
    """The requirement files a request's no-op key names (its `arg=` tokens)."""
    paths = []
    for token in key.split():
        if token.startswith("arg="):
            with contextlib.suppress(ValueError):
                paths.append(os.fsdecode(bytes.fromhex(token[4:])))
    return paths


def _linked(top: str, entry: str) -> bool:
    """Does a link in `top` lead to .d/entry (made since we looked)?"""
    want = os.path.join(SHARED_REAL, entry)
    return any(os.path.islink(os.path.join(top, n)) and os.readlink(os.path.join(top, n)) == want
               for n in _listdir(top) if not n.startswith("."))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: alive
        pass
    return True


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def main(argv: Sequence[str]) -> int:
    from cros_venv.cli import lock_timeout, write_error
    from cros_venv.errors import CrosVenvError

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            """One line, no usage dump: cron mails and wrappers show stderr to people."""
            write_error(f"{PROG}: error: {message}; see {PROG} --help")
            self.exit(2)

    p = Parser(prog=PROG, description="Remove shared venvs and cached wheels not used for N days (never one in use).")
    p.add_argument("--max-age-days", type=float, default=30.0, metavar="N", help="default: 30")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    args = p.parse_args(argv)
    if not 0 <= args.max_age_days < float("inf"):  # not nan or inf either
        p.error("--max-age-days must be a number of days, 0 or more")
    try:
        venvs, entries, freed = collect(default_root(), args.max_age_days, args.dry_run, print,
                                        lock_timeout(None, os.environ))
    except CrosVenvError as e:
        for problem in e.problems:
            write_error(f"{PROG}: error: {problem}")
        return e.exit_code
    except KeyboardInterrupt:
        write_error(f"{PROG}: interrupted")
        return 130
    verb = "would free" if args.dry_run else "freed"
    print(f"{PROG}: {verb} {_size(freed)}: {venvs} venvs, {entries} cache entries")
    sys.stdout.flush()
    return 0
