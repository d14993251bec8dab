"""Worker processes that unpack wheels into the cache while the build goes on.

Unpacking is thousands of small system calls (create, write, close a file), and each one
releases and retakes the GIL. With threads the GIL changes hands on nearly every call:
3,800 files cost ~80,000 futex calls, and on this machine two threads were slower than
one (tmpfs, 33 wheels: 1 thread 0.33 s, 2 threads 0.40 s, 2 processes 0.20 s). So the
workers are processes: forks of this one, made while it has no other thread (fork is
then safe), each fed through its own pipe. Where fork is unavailable, or a thread is
already running, the work is done in this process when its result is asked for.

A job is a wheel path, its sha256 if known (else the worker computes it from the bytes
it reads) and whether the caller wants its METADATA early. The worker unpacks into the
cache (atomically, see cache.py) unless the entry is there already, and answers with the
hash and the entry; a job that asked for METADATA is answered twice, first with the hash
and METADATA as soon as the job is read (every job that has arrived gets that answer
before the next wheel is unpacked), so that resolving never waits behind unpacking. Each
job goes to the worker with the fewest bytes queued, so both stay busy while the caller
takes results in its own order.

Workers leave when their pipe closes (also when this process dies), after the job in
hand. Ctrl-C and SIGTERM unwind through cache.unpack, which removes its temp directory;
after an abort the parent also removes any temp directory left by a worker it stopped.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import shutil
import signal
import sys
import threading
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

from cros_venv.cache import TMP_PREFIX, WHOLE, Cache, stamp, write_all
from cros_venv.errors import BuildError, CrosVenvError

if TYPE_CHECKING:
    import zipfile  # imported by the workers, which read wheels (a warm build reads none)

IN_FLIGHT = 64  # jobs written to a worker's pipe and not yet answered (keeps both pipes far from full)
KEEP = 16 << 20  # bytes of wheels a worker keeps in memory between reading METADATA and unpacking


# (sha256, the stat of the bytes hashed or None, METADATA text or None)
Meta = Tuple[str, Optional[List[int]], Optional[str]]


class _Worker:
    """One forked worker: its pid, its two pipes, and what it was given."""

    def __init__(self, pid: int, jobs: int, results: int) -> None:
        self.pid = pid
        self.jobs = jobs  # write end
        self.results = results  # read end
        self.buffer = b""
        self.load = 0  # bytes of wheels given to it
        self.in_flight = 0
        self.queue: list[tuple[str, str | None, bool]] = []


class Unpacker:
    """Unpack wheels into `cache` on `workers` forked processes (0: in this process)."""

    def __init__(self, cache: Cache, workers: int | None = None) -> None:
        self.cache = cache
        self.wanted = min(os.cpu_count() or 1, 4) if workers is None else workers
        self.workers: list[_Worker] | None = None  # forked on the first submit
        self.jobs: dict[str, str | None] = {}  # wheel path -> sha256 given (None: the worker hashes)
        self.done: dict[str, tuple[str, str] | str] = {}  # wheel path -> (sha256, entry) or error
        self.owner: dict[str, _Worker] = {}
        # wheel path -> [*stamp, sha256] of wheels a worker hashed (for the stat index)
        self.hashed: dict[str, list[object]] = {}
        self.wants_meta: set[str] = set()
        self.meta: dict[str, Meta] = {}

    # -- the caller's side ---------------------------------------------------------------------

    def submit(self, wheel: str, sha256: str | None = None, meta: bool = False) -> None:
        """Unpack `wheel` (if not asked already). Starts the workers on first use.

        `meta`: the worker first sends the wheel's hash and METADATA (see `metadata`).
        """
        if wheel in self.jobs:
            return
        self.cache.require_writable()
        self.jobs[wheel] = sha256
        if self.workers is None:
            self.workers = self._start()
        if not self.workers:
            return  # unpacked in result()
        try:
            size = os.path.getsize(wheel)
        except OSError:
            size = 0
        worker = min(self.workers, key=lambda w: w.load)
        worker.load += size
        worker.queue.append((wheel, sha256, meta))
        if meta:
            self.wants_meta.add(wheel)
        self.owner[wheel] = worker
        self._feed(worker)

    def submit_missing(self, wheels: Sequence[str], meta: bool = False) -> tuple[dict[str, str], list[str]]:
        """Submit the wheels the cache has no entry for (by the stat index: nothing is
        hashed here). Returns (the hashes the index knew, the wheels submitted).
        """
        known = self.cache.known_hashes(wheels)
        missing = [w for w in wheels if w not in known or not self.cache.has(known[w])]
        for wheel in missing:
            self.submit(wheel, known.get(wheel), meta)
        return known, missing

    def metadata(self, wheel: str) -> Meta | None:
        """(sha256, stat hashed or None, METADATA text or None) of a wheel submitted with
        `meta`, as soon as its worker has read it (before unpacking it); else None.
        """
        if wheel not in self.wants_meta:
            return None
        while wheel not in self.meta and wheel not in self.done:
            self._read(self.owner[wheel])
        return self.meta.get(wheel)

    def result(self, wheel: str) -> tuple[str, str]:
        """(sha256, cache entry) for a submitted wheel, waiting for it; raises BuildError."""
        if wheel not in self.jobs:
            self.submit(wheel)
        while wheel not in self.done:
            if not self.workers:
                self._record(*_unpack(self.cache, wheel, self.jobs[wheel]))
            else:
                self._read(self.owner[wheel])
        outcome = self.done[wheel]
        if isinstance(outcome, str):
            raise BuildError(outcome)
        return outcome

    def close(self, abort: bool = False) -> None:
        """Let the workers go: each finishes its jobs and exits (`abort`: at once)."""
        for w in self.workers or ():
            if abort:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGTERM)
            for fd in (w.jobs, w.results):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(w.pid, 0)
            if abort:  # a worker stopped between making its temp dir and its cleanup handler
                for name in os.listdir(self.cache.wheels):
                    if name.startswith(f"{TMP_PREFIX}{w.pid}-"):
                        shutil.rmtree(os.path.join(self.cache.wheels, name), ignore_errors=True)
        self.workers = []

    def __enter__(self) -> Unpacker:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)

    # -- plumbing ------------------------------------------------------------------------------

    def _start(self) -> list[_Worker]:
        if self.wanted < 1 or not can_fork():
            return []
        workers = []
        for _ in range(self.wanted):
            job_r, job_w = os.pipe()
            res_r, res_w = os.pipe()

            def work(job_r: int = job_r, res_w: int = res_w) -> int:
                close_all_but(job_r, res_w)
                _serve(self.cache, job_r, res_w)
                return 0

            pid = fork(work)
            os.close(job_r)
            os.close(res_w)
            os.set_inheritable(job_w, False)
            os.set_inheritable(res_r, False)
            workers.append(_Worker(pid, job_w, res_r))
        return workers

    def _record_meta(self, wheel: str, sha256: str, stat: list[int] | None, text: str | None) -> None:
        self.meta[wheel] = (sha256, stat, text)
        if stat is not None:
            self.hashed[wheel] = [*stat, sha256]

    def _record(self, wheel: str, outcome: Sequence[str] | str, stat: list[int] | None) -> None:
        """Note a job's outcome (`outcome` is a list when it came through JSON)."""
        if isinstance(outcome, str):
            self.done[wheel] = outcome
            return
        self.done[wheel] = (outcome[0], outcome[1])
        if stat is not None:
            self.hashed[wheel] = [*stat, outcome[0]]

    def _feed(self, worker: _Worker) -> None:
        while worker.queue and worker.in_flight < IN_FLIGHT:
            job = worker.queue.pop(0)
            write_all(worker.jobs, json.dumps(job).encode() + b"\n")
            worker.in_flight += 1

    def _read(self, worker: _Worker) -> None:
        """Read whatever `worker` has answered (waiting for at least one answer)."""
        data = os.read(worker.results, 1 << 16)
        if not data:
            for wheel, w in self.owner.items():
                if w is worker and wheel not in self.done:
                    self.done[wheel] = f"the process unpacking {os.path.basename(wheel)} died; run create_venv again"
            return
        lines = (worker.buffer + data).split(b"\n")
        worker.buffer = lines.pop()
        for line in lines:
            kind, *message = json.loads(line)
            if kind == "meta":
                self._record_meta(*message)
            else:
                self._record(*message)
                worker.in_flight -= 1
        self._feed(worker)


def can_fork() -> bool:
    """fork() is safe only while this process runs a single thread."""
    return hasattr(os, "fork") and threading.active_count() == 1


def fork(child: Callable[[], int]) -> int:
    """Fork; the child runs `child` and exits with its status (it never returns from here,
    nor runs this process's atexit handlers or flushes its buffers twice). Returns the pid.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    # No signal may land while fork runs its at-fork callbacks (an exception raised there is
    # printed and swallowed). The child ignores Ctrl-C: the parent handles it, and stops its
    # children itself (SIGTERM); a child that died of the same Ctrl-C would look like a
    # failed build to a parent that had not yet seen its own interrupt.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            status = child()
        finally:
            os._exit(status)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid


def close_all_but(*keep: int) -> None:
    """In a forked child: close every inherited descriptor above 2 but `keep` (the other
    workers' pipes, the venv's lock): it must not keep them open after its parent has let
    them go.
    """
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc (not Linux): every descriptor number up to a sane bound
        fds = list(range(3, min(os.sysconf("SC_OPEN_MAX"), 4096)))
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _unpack(cache: Cache, wheel: str, sha256: str | None, read: tuple[bytes, zipfile.ZipFile] | None = None,
            ) -> tuple[str, tuple[str, str] | str, list[int] | None]:
    """(wheel, (sha256, entry) or an error message, the stat of what was hashed or None)."""
    stat = None
    try:
        if sha256 is None and read is None and os.path.getsize(wheel) <= WHOLE:
            (_, sha256, stat, _), read = _meta(wheel, None)  # read once: hashed, then unpacked
        elif sha256 is None:
            sha256, stat = _hash(wheel)
        return wheel, (sha256, cache.unpack(wheel, sha256, read)), stat
    except CrosVenvError as e:
        return wheel, str(e), None
    except OSError as e:
        return wheel, f"cannot read {wheel}: {e.strerror}; check the file", None
    except Exception as e:  # a bug: still reported as this wheel's failure
        return wheel, f"unpacking {os.path.basename(wheel)} failed: {type(e).__name__}: {e}", None


def _hash(path: str) -> tuple[str, list[int]]:
    """sha256 of a file and the stamp (cache.stamp) of what was read."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        while True:
            block = f.read(1 << 20)
            if not block:
                return h.hexdigest(), stamp(st)
            h.update(block)


def _meta(wheel: str, sha256: str | None) -> tuple[tuple[str, str, list[int] | None, str | None],
                                                   tuple[bytes, zipfile.ZipFile] | None]:
    """((wheel, sha256, stat of what was hashed or None, METADATA text or None if
    unreadable), (the wheel's bytes, their ZipFile) or None).

    The bytes are always hashed: the hash sent is theirs, whatever the caller thought (the
    stat index may be older than a change), and an entry is made only under its own hash.
    """
    import hashlib
    import zipfile

    stat = None
    with open(wheel, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        stat = stamp(st)
    sha256 = actual
    text = None
    zf = None
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        for name in zf.namelist():
            top, _, rest = name.partition("/")
            if top.endswith(".dist-info") and rest == "METADATA":
                text = zf.read(name).decode("utf-8")
                break
    except (zipfile.BadZipFile, zipfile.LargeZipFile, UnicodeDecodeError, ValueError, EOFError, OSError):
        pass  # the caller reads the zip itself and reports the problem
    return (wheel, sha256, stat, text), ((data, zf) if zf is not None else None)


def _serve(cache: Cache, jobs: int, results: int) -> None:
    """The worker's loop, until its pipe closes: one JSON line per job in; out, for a job
    that asks, a "meta" line as soon as the job is read, and a "done" line once unpacked.
    Every job that has arrived gets its "meta" line before the next wheel is unpacked, so
    that the caller, resolving, does not wait behind the unpacking.
    """
    signal.signal(signal.SIGTERM, _exit_on_term)
    pending: list[tuple[str, str | None, list[int] | None]] = []
    kept: dict[str, tuple[bytes, zipfile.ZipFile]] = {}  # read for "meta", kept for unpacking
    room = KEEP
    buffer = b""
    eof = False
    while True:
        while not eof and (not pending or select.select([jobs], [], [], 0)[0]):
            data = os.read(jobs, 1 << 16)
            if not data:
                eof = True
                break
            *lines, buffer = (buffer + data).split(b"\n")
            for line in lines:
                wheel, sha256, meta = json.loads(line)
                stat = None
                if meta:
                    try:
                        message, read = _meta(wheel, sha256)
                        _, sha256, stat, _ = message
                        write_all(results, json.dumps(["meta", *message]).encode() + b"\n")
                        if read is not None and len(read[0]) <= room:
                            kept[wheel] = read
                            room -= len(read[0])
                    except OSError:
                        pass  # unreadable: unpacking reports it
                pending.append((wheel, sha256, stat))
        if not pending:
            return
        wheel, sha256, stat = pending.pop(0)
        read = kept.pop(wheel, None)
        room += len(read[0]) if read is not None else 0
        done_wheel, outcome, hashed = _unpack(cache, wheel, sha256, read)
        write_all(results, json.dumps(["done", done_wheel, outcome, hashed or stat]).encode() + b"\n")


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(1)  # unwinds through cache.unpack, which removes its temp directory
