"""Worker processes that unpack wheels into the cache while the build goes on.

Unpacking is thousands of small system calls (create, write, close a file), and each one
releases and retakes the GIL. With threads the GIL changes hands on nearly every call:
3,800 files cost ~80,000 futex calls, and on this machine two threads were slower than
one (tmpfs, 33 wheels: 1 thread 0.33 s, 2 threads 0.40 s, 2 processes 0.20 s). So the
workers are processes: forks of this one, made while it has no other thread (fork is
then safe), each fed through its own pipe. Where fork is unavailable, or a thread is
already running, the work is done in this process when its result is asked for.

A job is a wheel path and, if known, its sha256; a worker without the hash computes it
from the bytes it reads. The worker unpacks into the cache (atomically, see cache.py)
unless the entry is there already, and answers with the hash and the entry. Jobs are
dealt out largest-first-fit by size, so that the caller can take results in its own
order while both workers stay busy. Workers leave when their pipe closes (also when this
process dies), and die at once on Ctrl-C: an unfinished extraction is a temp directory
that nothing trusts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Sequence

from cros_venv.cache import Cache
from cros_venv.errors import BuildError

IN_FLIGHT = 64  # jobs written to a worker's pipe and not yet answered (keeps both pipes far from full)


@dataclass
class _Worker:
    pid: int
    jobs: int  # write end
    results: int  # read end
    buffer: bytes = b""
    load: int = 0  # bytes of wheels given to it
    in_flight: int = 0
    queue: list[tuple[str, str | None]] = field(default_factory=list)


class Unpacker:
    """Unpack wheels into `cache` on `workers` forked processes (0: in this process)."""

    def __init__(self, cache: Cache, workers: int | None = None) -> None:
        self.cache = cache
        self.wanted = min(os.cpu_count() or 1, 4) if workers is None else workers
        self.workers: list[_Worker] | None = None  # forked on the first submit
        self.jobs: dict[str, str | None] = {}  # wheel path -> sha256 given (None: the worker hashes)
        self.done: dict[str, tuple[str, str] | str] = {}  # wheel path -> (sha256, entry) or error
        self.owner: dict[str, _Worker] = {}
        # wheel path -> [size, mtime_ns, inode, sha256] of wheels a worker hashed (for the stat index)
        self.hashed: dict[str, list[object]] = {}

    # -- the caller's side ---------------------------------------------------------------------

    def submit(self, wheel: str, sha256: str | None = None) -> None:
        """Unpack `wheel` (if not asked already). Starts the workers on first use."""
        if wheel in self.jobs:
            return
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
        worker.queue.append((wheel, sha256))
        self.owner[wheel] = worker
        self._feed(worker)

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
        self.workers = []

    def __enter__(self) -> Unpacker:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)

    # -- plumbing ------------------------------------------------------------------------------

    def _start(self) -> list[_Worker]:
        if self.wanted < 1 or not hasattr(os, "fork") or threading.active_count() > 1:
            return []
        workers = []
        for _ in range(self.wanted):
            job_r, job_w = os.pipe()
            res_r, res_w = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                status = 1
                try:
                    _close_all_but(job_r, res_w)
                    _serve(self.cache, job_r, res_w)
                    status = 0
                finally:
                    os._exit(status)
            os.close(job_r)
            os.close(res_w)
            os.set_inheritable(job_w, False)
            os.set_inheritable(res_r, False)
            workers.append(_Worker(pid, job_w, res_r))
        return workers

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
            wheel, sha256 = worker.queue.pop(0)
            _write_all(worker.jobs, json.dumps([wheel, sha256]).encode() + b"\n")
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
            self._record(*json.loads(line))
            worker.in_flight -= 1
        self._feed(worker)


def _close_all_but(*keep: int) -> None:
    """Close every inherited descriptor but `keep` (the other workers' pipes, the venv's
    lock): a worker must not keep them open after this process has let them go.
    """
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _unpack(cache: Cache, wheel: str, sha256: str | None) -> tuple[str, tuple[str, str] | str, list[int] | None]:
    """(wheel, (sha256, entry) or an error message, the stat of what was hashed or None)."""
    stat = None
    try:
        if sha256 is None:
            sha256, stat = _hash(wheel)
        return wheel, (sha256, cache.unpack(wheel, sha256)), stat
    except BuildError as e:
        return wheel, str(e), None
    except OSError as e:
        return wheel, f"cannot read {wheel}: {e.strerror}; check the file", None
    except Exception as e:  # a bug: still reported as this wheel's failure
        return wheel, f"unpacking {os.path.basename(wheel)} failed: {type(e).__name__}: {e}", None


def _hash(path: str) -> tuple[str, list[int]]:
    """sha256 of a file and the (size, mtime, inode) of what was read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        while True:
            block = f.read(1 << 20)
            if not block:
                return h.hexdigest(), [st.st_size, st.st_mtime_ns, st.st_ino]
            h.update(block)


def _serve(cache: Cache, jobs: int, results: int) -> None:
    """The worker's loop: one JSON line per job in, one per job out, until EOF."""
    signal.signal(signal.SIGTERM, _exit_on_term)
    with os.fdopen(jobs, "rb") as source:
        for line in source:
            wheel, sha256 = json.loads(line)
            _write_all(results, json.dumps(_unpack(cache, wheel, sha256)).encode() + b"\n")


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(1)  # unwinds through cache.unpack, which removes its temp directory
