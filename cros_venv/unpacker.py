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

import os
import select

from cros_venv import procs
from cros_venv.cache import TMP_PREFIX, Cache, rmtree
from cros_venv.digest import Hashed, hash_file
from cros_venv.errors import BuildError, CrosVenvError
from cros_venv.extract import WHOLE, WheelRead, write_all
from cros_venv.lite import NamedTuple, signal, suppress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence, Union

IN_FLIGHT = 64  # jobs written to a worker's pipe and not yet answered (keeps both pipes far from full)
KEEP = 16 << 20  # bytes of wheels a worker keeps in memory between reading METADATA and unpacking


class Meta(NamedTuple):
    """What a worker tells about a wheel as soon as it has read it, before unpacking it."""

    sha256: str  # of the bytes read (whatever hash the caller gave)
    stamp: list[int] | None  # of the bytes hashed, for the stat index (None: the caller's hash was right)
    text: str | None  # METADATA (None: unreadable; resolving reads the zip and reports it)


class Unpacked(NamedTuple):
    """A wheel unpacked: the sha256 of its bytes and its cache entry."""

    sha256: str
    entry: str


class Failed(NamedTuple):
    """A wheel that could not be unpacked: why, in one line."""

    error: str


if TYPE_CHECKING:
    Outcome = Union[Unpacked, Failed]


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
        self.done: dict[str, Outcome] = {}
        self.owner: dict[str, _Worker] = {}
        self.hashed: dict[str, Hashed] = {}  # the wheels a worker hashed (for the stat index)
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
        known = self.cache.stat_index.known(wheels)
        missing = [w for w in wheels if w not in known or not self.cache.has(known[w])]
        for wheel in missing:
            self.submit(wheel, known.get(wheel), meta)
        return known, missing

    def metadata(self, wheel: str) -> Meta | None:
        """The Meta of a wheel submitted with `meta`, as soon as its worker has read it
        (before unpacking it); else None.
        """
        if wheel not in self.wants_meta:
            return None
        while wheel not in self.meta and wheel not in self.done:
            self._read(self.owner[wheel])
        return self.meta.get(wheel)

    def result(self, wheel: str) -> Unpacked:
        """The sha256 and cache entry of a submitted wheel, waiting for it; raises BuildError."""
        if wheel not in self.jobs:
            self.submit(wheel)
        while wheel not in self.done:
            if not self.workers:
                self._record(wheel, *_unpack(self.cache, wheel, self.jobs[wheel]))
            else:
                self._read(self.owner[wheel])
        outcome = self.done[wheel]
        if isinstance(outcome, Failed):
            raise BuildError(outcome.error)
        return outcome

    def close(self, abort: bool = False) -> None:
        """Let the workers go: each finishes its jobs and exits (`abort`: at once)."""
        for w in self.workers or ():
            if abort:
                with suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGTERM)
            for fd in (w.jobs, w.results):
                with suppress(OSError):
                    os.close(fd)
            with suppress(ChildProcessError):
                os.waitpid(w.pid, 0)
            if abort:  # a worker stopped between making its temp dir and its cleanup handler
                for name in os.listdir(self.cache.wheels):
                    if name.startswith(f"{TMP_PREFIX}{w.pid}-"):
                        rmtree(os.path.join(self.cache.wheels, name), ignore_errors=True)
        self.workers = []

    def __enter__(self) -> Unpacker:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)

    # -- plumbing ------------------------------------------------------------------------------

    def _start(self) -> list[_Worker]:
        if self.wanted < 1 or not procs.can_fork():
            return []
        import json  # noqa: F401 (the pipes' protocol: imported once here, the forks inherit it)

        workers = []
        for _ in range(self.wanted):
            job_r, job_w = os.pipe()
            res_r, res_w = os.pipe()

            def work(job_r: int = job_r, res_w: int = res_w) -> int:
                procs.close_all_but(job_r, res_w)
                _serve(self.cache, job_r, res_w)
                return 0

            pid = procs.fork(work)
            os.close(job_r)
            os.close(res_w)
            os.set_inheritable(job_w, False)
            os.set_inheritable(res_r, False)
            workers.append(_Worker(pid, job_w, res_r))
        return workers

    def _record(self, wheel: str, outcome: Outcome, stat: list[int] | None) -> None:
        """Note a job's outcome (`stat`: of the bytes hashed, if the worker hashed them)."""
        self.done[wheel] = outcome
        if isinstance(outcome, Unpacked) and stat is not None:
            self.hashed[wheel] = Hashed(outcome.sha256, stat)

    def _feed(self, worker: _Worker) -> None:
        import json  # here: only a build that unpacks needs it (~6 ms of imports with re)

        while worker.queue and worker.in_flight < IN_FLIGHT:
            job = worker.queue.pop(0)
            try:
                write_all(worker.jobs, json.dumps(job).encode() + b"\n")
            except BrokenPipeError:  # it died: _read finds its results at EOF and fails its jobs
                worker.queue.clear()
                return
            worker.in_flight += 1

    def _read(self, worker: _Worker) -> None:
        """Read whatever `worker` has answered (waiting for at least one answer)."""
        import json  # here: only a build that unpacks needs it (~6 ms of imports with re)

        data = os.read(worker.results, 1 << 16)
        if not data:
            for wheel, w in self.owner.items():
                if w is worker and wheel not in self.done:
                    self.done[wheel] = Failed(f"the process unpacking {os.path.basename(wheel)} died; "
                                              "run create_venv again")
            return
        lines = (worker.buffer + data).split(b"\n")
        worker.buffer = lines.pop()
        for line in lines:
            kind, wheel, *message = json.loads(line)
            if kind == "meta":
                sha256, stat, text = message
                self.meta[wheel] = Meta(sha256, stat, text)
                if stat is not None:
                    self.hashed[wheel] = Hashed(sha256, stat)
            else:
                sha256, entry, error, stat = message
                self._record(wheel, Failed(error) if error else Unpacked(sha256, entry), stat)
                worker.in_flight -= 1
        self._feed(worker)


def _unpack(cache: Cache, wheel: str, sha256: str | None, read: WheelRead | None = None,
            ) -> tuple[Outcome, list[int] | None]:
    """The outcome, and the stat of the bytes hashed if they were hashed here (else None)."""
    stat = None
    try:
        if sha256 is None and read is None and os.path.getsize(wheel) <= WHOLE:
            meta, read = _meta(wheel, None)  # read once: hashed, then unpacked
            sha256, stat = meta.sha256, meta.stamp
        elif sha256 is None:
            hashed = hash_file(wheel)
            sha256, stat = hashed.sha256, hashed.stamp
        return Unpacked(sha256, cache.unpack(wheel, sha256, read)), stat
    except CrosVenvError as e:
        return Failed(str(e)), None
    except OSError as e:
        return Failed(f"cannot read {wheel}: {e.strerror}; check the file"), None
    except Exception as e:  # a bug: still reported as this wheel's failure
        return Failed(f"unpacking {os.path.basename(wheel)} failed: {type(e).__name__}: {e}"), None


def _meta(wheel: str, sha256: str | None) -> tuple[Meta, WheelRead]:
    """The wheel's Meta, and the wheel read whole (for unpacking it without reading it again).

    The bytes are always hashed: the hash sent is theirs, whatever the caller thought (the
    stat index may be older than a change), and an entry is made only under its own hash.
    """
    read = WheelRead.of(wheel)
    actual = read.hashed.sha256
    return Meta(actual, read.hashed.stamp if actual != sha256 else None, read.metadata()), read


def _serve(cache: Cache, jobs: int, results: int) -> None:
    """The worker's loop, until its pipe closes: one JSON line per job in; out, for a job
    that asks, a "meta" line as soon as the job is read, and a "done" line once unpacked.
    Every job that has arrived gets its "meta" line before the next wheel is unpacked, so
    that the caller, resolving, does not wait behind the unpacking.
    """
    import json  # here: only a build that unpacks needs it (~6 ms of imports with re)

    signal.signal(signal.SIGTERM, _exit_on_term)
    pending: list[tuple[str, str | None, list[int] | None]] = []
    kept: dict[str, WheelRead] = {}  # read for "meta", kept for unpacking
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
                        found, read = _meta(wheel, sha256)
                        sha256, stat = found.sha256, found.stamp
                        write_all(results, json.dumps(["meta", wheel, *found]).encode() + b"\n")
                        if read.zf is not None and len(read.data) <= room:
                            kept[wheel] = read
                            room -= len(read.data)
                    except OSError:
                        pass  # unreadable: unpacking reports it
                pending.append((wheel, sha256, stat))
        if not pending:
            return
        wheel, sha256, stat = pending.pop(0)
        whole = kept.pop(wheel, None)
        room += len(whole.data) if whole is not None else 0
        outcome, hashed = _unpack(cache, wheel, sha256, whole)
        sha256, entry, error = (None, None, outcome.error) if isinstance(outcome, Failed) else (*outcome, "")
        write_all(results, json.dumps(["done", wheel, sha256, entry, error, hashed or stat]).encode() + b"\n")


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(1)  # unwinds through cache.unpack, which removes its temp directory
