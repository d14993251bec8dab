"""Shared by test_kills, test_concurrency and test_disk: checking a venv against the contract
(/work/CONTRACT.md), watching for files written outside DIR, starting create_venv in its own
process group, gating racers, and mount namespaces for the disk tests.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pytest

from tests.conftest import PYTHON, ToolRepo, WheelSpec, make_tool_repo

MARKER = ".cros_venv.json"
TRASH_INFIX = ".cros_venv-trash"

# -- scratch space --------------------------------------------------------------------------

_BASE: Path | None = None


def base_dir() -> Path:
    """A world-readable scratch directory for this session (pytest's tmp dirs are 0700, so
    user nobody could not reach anything in them). Removed at exit.
    """
    global _BASE
    if _BASE is None:
        _BASE = Path(tempfile.mkdtemp(prefix="cros-venv-rel-"))
        _BASE.chmod(0o755)
        atexit.register(shutil.rmtree, str(_BASE), True)
    return _BASE


def workdir(name: str) -> Path:
    """An empty directory at a path that stays the same for every test using `name`.

    Venvs checked by check_venv at the same path reuse the bytecode of pip (see check_env):
    `pip check` on a fresh venv costs 0.45 s here, 0.18 s with its bytecode cached.
    """
    path = base_dir() / name
    if path.exists():
        # Deleted at exit, not now: ext4 creates files several times slower for a while
        # after thousands were deleted (see DESIGN.md), which would slow the next build.
        graveyard = base_dir() / ".graveyard"
        graveyard.mkdir(exist_ok=True)
        path.rename(graveyard / f"{name}-{os.urandom(4).hex()}")
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path


def pycache() -> Path:
    """Where `pip check` in a venv writes pip's bytecode (see check_env)."""
    path = base_dir() / ".pycache"
    path.mkdir(exist_ok=True)
    return path


tool_copy = make_tool_repo  # another checkout of the tool


def tiny_wheels(repo: ToolRepo) -> None:
    """alpha 1.0 (needs beta>=1, console script alpha-cli), beta 1.0 and 2.0 (as the
    wheelhouse fixture, for repos made with tool_copy).
    """
    repo.add_wheel(WheelSpec("alpha", "1.0", requires=["beta>=1.0"], console_scripts={"alpha-cli": "alpha:main"},
                             files={"alpha.py": b"VERSION = '1.0'\ndef main():\n    print('alpha says hi')\n"}))
    repo.add_wheel(WheelSpec("beta", "1.0"))
    repo.add_wheel(WheelSpec("beta", "2.0"))


def bulky_wheel(repo: ToolRepo, name: str, files: int = 600, version: str = "1.0", size: int = 0) -> Path:
    """A wheel of `files` small modules (and `size` bytes of incompressible data): installing
    it takes long enough for a kill to land in the middle. Its content is unique to `name`.
    """
    module = name.replace("-", "_")
    body = {f"{module}/m{i}.py": f"X = {i}  # {name}\n".encode() for i in range(files)}
    body[f"{module}/__init__.py"] = f"VERSION = {version!r}\n".encode()
    if size:
        body[f"{module}/blob.bin"] = os.urandom(size)
    return repo.add_wheel(WheelSpec(name, version, files=body))


# -- the venv -------------------------------------------------------------------------------

def marker(venv_dir: Path) -> dict[str, Any] | None:
    """The marker's JSON, or None if there is none (or it is not JSON: that is a failure of
    invariant 1 when the caller expected one, which check_venv reports).
    """
    try:
        data: dict[str, Any] = json.loads((venv_dir / MARKER).read_bytes())
        return data
    except FileNotFoundError:
        return None


def has_marker(venv_dir: Path) -> bool:
    return os.path.lexists(venv_dir / MARKER)


def marked_packages(venv_dir: Path) -> dict[str, str]:
    """{name: version} of the requirements in the marker's spec, pip left out unless pinned
    by the test (our requirement sets never pin pip).
    """
    data = marker(venv_dir)
    assert data is not None, f"no marker in {venv_dir}"
    out = {}
    for req in data["spec"]["requirements"]:
        name, _, version = req.partition("==")
        name = name.split("[")[0]
        if name != "pip":
            out[name] = version
    return out


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_env(pip: bool = False) -> dict[str, str]:
    """The environment the venv's programs run in for a check: bytecode is never written
    into the venv (a check must not change what it checks). pip's own bytecode goes to a
    shared prefix (`pip check` costs 0.45 s compiling, 0.2 s without): safe for pip, whose
    one version has the same files everywhere, but not for the test packages, whose
    versions share sizes and may share mtime seconds (a stale .pyc would be trusted).
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "CROS_VENV_", "PYTEST_"))}
    if pip:
        env["PYTHONPYCACHEPREFIX"] = str(pycache())
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


_PROBE = r"""
import importlib, json, sys
from importlib import metadata
names = json.loads(sys.argv[1])
out = {"prefix": sys.prefix, "versions": {}, "dists": {}, "errors": []}
for name in names:
    try:
        out["versions"][name] = getattr(importlib.import_module(name.replace("-", "_")), "VERSION", None)
    except Exception as e:
        out["errors"].append(f"import {name}: {type(e).__name__}: {e}")
site = [p for p in sys.path if p.endswith("site-packages")]
for d in metadata.distributions(path=site):
    out["dists"][d.metadata["Name"]] = d.version
print(json.dumps(out))
"""


_VERIFIED: set[tuple[object, ...]] = set()


def _state(seen: Path) -> tuple[tuple[str, int, int, int], ...]:
    """Every entry under the venv with its size, mtime and inode."""
    out = []
    for dirpath, dirnames, filenames in os.walk(seen):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out.append((p, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(out))


def venv_problems(venv_dir: Path, packages: dict[str, str], scripts: dict[str, str] | None = None,
                  prefix: Sequence[str] = (), root: Path | None = None) -> list[str]:
    """What is wrong with the venv at `venv_dir` under invariant 1 (empty: it works).

    It has its marker; `bin/python` imports each of `packages` at its version
    (`VERSION` attribute and its installed metadata); the distributions in site-packages are
    exactly `packages` plus pip; `pip check` passes; each of `scripts` prints what it maps to;
    `sys.prefix` is the venv's real path. `prefix` runs the commands inside a mount namespace
    (nsenter ...), where `root` (/proc/PID/root) is how this process sees its files.

    A venv identical (every entry's size, mtime and inode) to one that passed these checks
    with the same arguments is not checked again: `pip check` alone costs 0.2-0.5 s.
    """
    seen = Path(str(root) + str(venv_dir)) if root is not None else venv_dir
    key = (str(venv_dir), str(root), tuple(sorted(packages.items())), tuple(sorted((scripts or {}).items())),
           _state(seen))
    if key in _VERIFIED:
        return []
    problems = []
    if not (seen / MARKER).is_file():
        problems.append("no marker")
    else:
        try:
            json.loads((seen / MARKER).read_bytes())
        except ValueError as e:
            problems.append(f"the marker is not JSON: {e}")
    py = str(venv_dir / "bin" / "python")
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": check_env()}
    # All at once: two cores.
    procs = [subprocess.Popen([*prefix, py, "-c", _PROBE, json.dumps(sorted(packages))], **pipe),  # type: ignore[call-overload]
             subprocess.Popen([*prefix, py, "-m", "pip", "check"], **{**pipe, "env": check_env(pip=True)})]  # type: ignore[call-overload]
    procs += [subprocess.Popen([*prefix, str(venv_dir / "bin" / script)], **pipe)  # type: ignore[call-overload]
              for script in (scripts or {})]
    outs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        outs.append((proc.returncode, out, err))
    (rc, out, err), (check_rc, check_out, check_err) = outs[:2]
    if rc != 0:
        return [*problems, f"bin/python failed ({rc}): {err.strip()[-500:]}"]
    info = json.loads(out)
    problems += info["errors"]
    real = os.path.realpath(venv_dir)  # a namespace's mounts do not move paths: the same string
    if info["prefix"] != real:
        problems.append(f"sys.prefix is {info['prefix']}, not {real}")
    for name, version in packages.items():
        if name in info["versions"] and info["versions"][name] != version:
            problems.append(f"{name}.VERSION is {info['versions'][name]}, not {version}")
    dists = {norm(k): v for k, v in info["dists"].items()}
    want = {norm(k): v for k, v in packages.items()}
    want.setdefault("pip", dists.get("pip", "?"))
    if dists != want:
        problems.append(f"installed distributions {sorted(dists.items())}, wanted {sorted(want.items())}")
    if check_rc != 0:
        problems.append(f"pip check: {(check_out + check_err).strip()[-500:]}")
    for (script, output), (run_rc, run_out, run_err) in zip((scripts or {}).items(), outs[2:]):
        if run_rc != 0 or run_out != output:
            problems.append(f"bin/{script}: exit {run_rc}, {run_out!r} {run_err.strip()[-300:]}")
    if not problems and _state(seen) == key[-1]:
        _VERIFIED.add(key)
    return problems


def check_venv(venv_dir: Path, packages: dict[str, str], scripts: dict[str, str] | None = None,
               prefix: Sequence[str] = (), root: Path | None = None) -> bool:
    """Invariant 1 for the venv at `venv_dir` built from `packages` ({name: version})."""
    return not venv_problems(venv_dir, packages, scripts, prefix, root)


def assert_venv(venv_dir: Path, packages: dict[str, str], scripts: dict[str, str] | None = None,
                faults: Any = None, prefix: Sequence[str] = (), root: Path | None = None) -> None:
    """check_venv, failing with the reasons; a venv with a marker that fails counts as broken."""
    problems = venv_problems(venv_dir, packages, scripts, prefix, root)
    if problems and faults is not None and (Path(str(root or "") + str(venv_dir)) / MARKER).exists():
        faults.broken += 1
    assert not problems, f"{venv_dir} does not work: {problems}"


def check_marked(venv_dir: Path, sets: Iterable[dict[str, str]], faults: Any, scripts: dict[str, str] | None = None,
                 prefix: Sequence[str] = (), root: Path | None = None) -> dict[str, str] | None:
    """Invariant 1 after a fault: if DIR has a marker, its spec is one of `sets` and the venv
    works. Returns the set it holds, or None if there is no marker.
    """
    seen = Path(str(root) + str(venv_dir)) if root is not None else venv_dir
    if not has_marker(seen):
        return None
    try:
        held = marked_packages(seen)
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        faults.broken += 1
        raise AssertionError(f"{venv_dir} has an unreadable marker: {e}") from None
    if held not in list(sets):
        faults.broken += 1
        raise AssertionError(f"{venv_dir}'s marker names {held}, none of {list(sets)}")
    assert_venv(venv_dir, held, scripts if "alpha" in held else None, faults, prefix, root)
    return held


def trash(venv_dir: Path) -> list[str]:
    """Moved-aside venvs of DIR (`.NAME.cros_venv-trash*` beside it)."""
    prefix = f".{venv_dir.name}{TRASH_INFIX}"
    with contextlib.suppress(FileNotFoundError):
        return sorted(n for n in os.listdir(venv_dir.parent) if n.startswith(prefix))
    return []


# -- output ---------------------------------------------------------------------------------

def assert_no_crash(result: subprocess.CompletedProcess[str] | tuple[int | None, str]) -> None:
    """Whatever happened, no traceback and no 'internal error' on stderr."""
    stderr = result.stderr if isinstance(result, subprocess.CompletedProcess) else result[1]
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    """create_venv succeeded: exit 0, and no traceback or 'internal error' on stderr."""
    assert_no_crash(result)
    assert result.returncode == 0, result.stderr


def assert_one_error(stderr: str, *needles: str) -> str:
    """Exactly one line, `create_venv: error: ...`, containing each of `needles`."""
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert lines[0].startswith("create_venv: error: "), stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# -- outside writes -------------------------------------------------------------------------

def _walk(root: Path, skip: set[str], skip_prefixes: tuple[str, ...]) -> dict[str, tuple[str, int, int]]:
    out: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        keep = []
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if p in skip or (name.startswith(skip_prefixes) and dirpath == str(root)):
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in keep + filenames:
            p = os.path.join(dirpath, name)
            if p in skip or (dirpath == str(root) and name.startswith(skip_prefixes)):
                continue
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                out[p] = ("dir", 0, 0)  # a directory's mtime moves with its entries: not a write
            else:
                out[p] = ("file" if stat.S_ISREG(st.st_mode) else "other", st.st_size, st.st_mtime_ns)
    return out


class Outside:
    """Invariant 3: a snapshot of DIR's parent and of the tool repo (and any `roots`),
    ignoring DIR, DIR.lock, the trash beside DIR and the cache. `changes()` lists what was
    added, removed or modified since the last snapshot.
    """

    def __init__(self, venv_dirs: Path | Sequence[Path], roots: Sequence[Path], cache: Path | None = None,
                 ignore: Sequence[Path] = (), root: Path | None = None) -> None:
        dirs = [venv_dirs] if isinstance(venv_dirs, Path) else list(venv_dirs)
        self.view = str(root) if root is not None else ""  # /proc/PID/root for a namespace
        self.roots = sorted({self.view + str(p) for p in [*(d.parent for d in dirs), *roots]})
        self.skip = {self.view + str(p) for d in dirs for p in (d, Path(str(d) + ".lock"))}
        self.skip |= {self.view + str(p) for p in ignore}
        if cache is not None:
            self.skip.add(self.view + str(cache))
        self.prefixes = tuple(f".{d.name}{TRASH_INFIX}" for d in dirs)
        self.before = self._snap()

    def _snap(self) -> dict[str, tuple[str, int, int]]:
        out: dict[str, tuple[str, int, int]] = {}
        for r in self.roots:
            out.update(_walk(Path(r), self.skip, self.prefixes))
        return out

    def reset(self) -> None:
        self.before = self._snap()

    def changes(self) -> list[str]:
        after = self._snap()
        changed = sorted(p for p in set(self.before) | set(after) if self.before.get(p) != after.get(p))
        self.before = after
        return [p[len(self.view):] for p in changed]


def watch(repo: ToolRepo, venv_dirs: Path | Sequence[Path], roots: Sequence[Path] = (),
          root: Path | None = None) -> Outside:
    """Outside for DIR(s) built by `repo`: its parent(s), the repo and `roots`, the cache
    excluded. The tool's own bytecode (cros_venv/__pycache__ in the repo, written by the
    first run of a checkout) is left out here; test_concurrency's
    test_checkouts_are_left_as_they_were checks that on its own.
    """
    return Outside(venv_dirs, [repo.root, *roots], cache=repo.cache,
                   ignore=[repo.root / "cros_venv" / "__pycache__"], root=root)


def assert_nothing_outside(watch: Outside, faults: Any) -> None:
    changed = watch.changes()
    faults.outside += len(changed)
    assert not changed, f"written outside DIR, DIR.lock, the trash and the cache: {changed}"


# -- processes ------------------------------------------------------------------------------

def start(repo: ToolRepo, *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = (),
          python: str = PYTHON) -> subprocess.Popen[str]:
    """create_venv as its own process group (the session leader: os.killpg(proc.pid, ...)
    reaches its workers too), run the way wrappers do: `PYTHON create_venv ARGS`.
    """
    return subprocess.Popen([*prefix, python, str(repo.root / "create_venv"), *args], env=env or repo.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        reap_group(proc)
        raise
    return proc.returncode, err


def reap_group(proc: subprocess.Popen[str]) -> None:
    """Kill whatever is left of create_venv's process group (orphaned workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()
        proc.communicate(timeout=10)


def group_alive(pgid: int) -> list[int]:
    """Pids still in process group `pgid` (zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def wait_group_gone(pgid: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = group_alive(pgid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def wait_stopped(pid: int, timeout: float = 60) -> bool:
    """Wait until `pid` is stopped (state T), e.g. by CROS_VENV_TEST_KILL=STEP:STOP."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("T", "t"):
            return True
        if state in ("Z", "X"):
            return False
        time.sleep(0.01)
    return False


@contextlib.contextmanager
def gate(path: Path) -> Iterator[tuple[str, ...]]:
    """A starting gate: commands started with the yielded prefix (flock -s GATE) wait until
    the `with` block exits, then all start at once. Use `waiters` to know they are lined up.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield ("flock", "-s", "-o", str(path))
    finally:
        os.close(fd)


def waiters(path: Path, count: int, timeout: float = 10) -> bool:
    """Wait until `count` processes are blocked on the flock of `path` (read from /proc/locks)."""
    ino = os.stat(path).st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/locks") as f:
            n = sum(1 for line in f if "->" in line and line.split()[-3].endswith(f":{ino}"))
        if n >= count:
            return True
        time.sleep(0.01)
    return False


# -- mount namespaces -----------------------------------------------------------------------

class Namespace:
    """A private mount namespace kept alive by a `cat` that waits on its stdin. Commands run
    in it through `prefix` (nsenter); this process sees its files under `root`
    (/proc/PID/root). Everything mounted in it disappears with it.
    """

    def __init__(self) -> None:
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
            pytest.skip("needs root, unshare and nsenter for a mount namespace")
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", "echo ready; exec cat"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            err = self.proc.communicate()[1]
            pytest.skip(f"unshare -m is not permitted here: {err.strip()}")
        self.pid = self.proc.pid
        self.prefix = ("nsenter", "-t", str(self.pid), "-m")
        self.root = Path(f"/proc/{self.pid}/root")
        probe = subprocess.run([*self.prefix, "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            self.close()
            pytest.skip(f"nsenter is not permitted here: {probe.stderr.strip()}")

    def sh(self, script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*self.prefix, "sh", "-ec", script, "sh", *args], capture_output=True, text=True,
                             timeout=60)
        if check and out.returncode != 0:
            self.close()
            pytest.skip(f"cannot set up the mount namespace ({script}): {out.stderr.strip()}")
        return out

    def tmpfs(self, mountpoint: Path, kib: int) -> None:
        self.sh('mount -t tmpfs -o "size=$2k,mode=0755" tmpfs "$1"', str(mountpoint), str(kib))

    def read_only(self, path: Path) -> None:
        """`path` becomes a read-only bind mount of itself (in this namespace only)."""
        self.sh('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"', str(path))

    def see(self, path: Path) -> Path:
        """`path` as seen inside the namespace, from this process."""
        return Path(str(self.root) + str(path))

    def free_kib(self, path: Path) -> int:
        st = os.statvfs(self.see(path))
        return st.f_bavail * st.f_frsize // 1024

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fill(path: Path) -> int:
    """Fill the file system holding `path` (a new file) to the last byte; returns bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
            block = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return written

