"""Helpers for test_wheels, test_paths and test_environment (the contract in /work/CONTRACT.md).

- `Runner`: runs create_venv for a test with a private TMPDIR and HOME (both watched, so a
  temp file or a config file left there counts as written outside) and checks what every
  run must satisfy: no traceback, no "internal error", silent on success.
- `expect_error`: exit code, one `create_venv: error:` line per problem, naming what it must.
- `check_venv`: contract item 1 (the venv works: imports at the pinned versions, the
  dependency check `pip check` makes, console scripts, `sys.prefix`), counting a venv that
  has a marker but does not work in `faults.broken`.
- `tree_state`: a byte-for-byte picture of a directory (mode, size, mtime, content).
- `Outside`: what was written outside DIR, DIR.lock, the trash beside DIR and the cache.
- wheel builders that lie: raw zips with any header value, bombs, unsafe members.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from tests.conftest import PYTHON, ToolRepo, WheelSpec, build_wheel
from tests.reliability.conftest import Faults

MARKER = ".cros_venv.json"
TRASH = ".cros_venv-trash"
OWN = "_test_own"  # a directory of the test's own files (not watched by Outside)
ERROR_PREFIX = "create_venv: error: "
BASE_REQS = "alpha==1.0\nbeta==1.0\n"
BASE_PKGS = {"alpha": "1.0", "beta": "1.0"}


def slow_only(case: str, cases: Iterable[str], slow: bool) -> None:
    """Skip `case` in the default run if it is one of `cases` (they run under --slow)."""
    import pytest

    if case in cases and not slow:
        pytest.skip("runs under --slow")


def sha256_file(path: Path | str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# -- running create_venv -------------------------------------------------------------------------


@dataclass
class Runner:
    """create_venv of `repo` for one test, with a private, watched TMPDIR and HOME."""

    repo: ToolRepo
    tmp: Path  # the test's tmp_path

    def __post_init__(self) -> None:
        (self.tmp / "tmpdir").mkdir(exist_ok=True)
        (self.tmp / "home").mkdir(exist_ok=True)
        self.own.mkdir(exist_ok=True)

    @property
    def own(self) -> Path:
        """Where the test keeps its own files (scratch wheels, measurements): not watched."""
        return self.tmp / OWN

    def env(self, drop: Iterable[str] = (), **extra: str) -> dict[str, str]:
        env = self.repo.env(TMPDIR=str(self.tmp / "tmpdir"), HOME=str(self.tmp / "home"))
        env.pop("XDG_CACHE_HOME", None)
        env.pop("XDG_CONFIG_HOME", None)
        for name in drop:
            env.pop(name, None)
        env.update(extra)
        return env

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None,
            input: str | None = None, prefix: Sequence[str] = (), python: str | None = PYTHON,
            script: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`PYTHON create_venv ARGS` (python=None: `./create_venv ARGS`, the sh polyglot)."""
        script = script or str(self.repo.root / "create_venv")
        cmd = [*prefix, *([python] if python else []), script, *args]
        result = subprocess.run(
            cmd, env=self.env() if env is None else env, cwd=cwd, timeout=timeout,
            input=input, stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True, encoding="utf-8", errors="surrogateescape",
        )
        assert_clean_output(result)
        return result


def assert_clean_output(result: subprocess.CompletedProcess[str]) -> None:
    """What holds for every run: no traceback, no internal error; silent when it succeeds."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    if result.returncode == 0:
        assert result.stderr == "", f"exit 0 but stderr: {result.stderr!r}"


def expect_error(result: subprocess.CompletedProcess[str], codes: Iterable[int], names: Iterable[str] = (),
                 lines: int | None = 1) -> list[str]:
    """Exit code in `codes`; every stderr line is `create_venv: error: ...`; exactly `lines`
    lines (None: at least one); each of `names` appears in the message.
    """
    codes = set(codes)
    out = result.stderr.splitlines()
    assert result.returncode in codes, f"exit {result.returncode}, expected {sorted(codes)}: {result.stderr!r}"
    assert out, "no error message"
    assert all(line.startswith(ERROR_PREFIX) for line in out), result.stderr
    if lines is not None:
        assert len(out) == lines, f"{len(out)} lines, expected {lines}: {result.stderr!r}"
    for name in names:
        assert name in result.stderr, f"{name!r} not named in {result.stderr!r}"
    return out


# -- is the venv working? -------------------------------------------------------------------------

_CHECK = r"""
import importlib, importlib.metadata as md, json, os, re, sys
want = json.loads(sys.argv[1])
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
prefix = os.path.realpath(sys.prefix)
site = [p for p in sys.path if p.endswith("site-packages") and os.path.realpath(p).startswith(prefix)]
dists = {}
tokens = {}
for d in md.distributions(path=site):
    dists[canon(d.metadata["Name"])] = d.version
problems = []
for name, version in want.items():
    if dists.get(canon(name)) != version:
        problems.append(f"{name}: installed {dists.get(canon(name))}, pinned {version}")
    try:
        mod = importlib.import_module(name.replace("-", "_"))
        tokens[name] = getattr(mod, "TOKEN", None)
        v = getattr(mod, "VERSION", version)
        if v != version:
            problems.append(f"{name}: module says VERSION {v}, pinned {version}")
    except Exception as e:
        problems.append(f"import {name}: {type(e).__name__}: {e}")
# pip check's question: is every declared dependency installed at a fitting version?
from pip._vendor.packaging.requirements import Requirement
for d in md.distributions(path=site):
    for text in d.requires or []:
        r = Requirement(text)
        if r.marker is not None and not r.marker.evaluate({"extra": ""}):
            continue
        have = dists.get(canon(r.name))
        if have is None or not r.specifier.contains(have, prereleases=True):
            problems.append(f"{d.metadata['Name']} needs {r}, has {have}")
print(json.dumps({"prefix": os.path.realpath(sys.prefix), "dists": dists, "tokens": tokens, "problems": problems}))
"""


def clean_env() -> dict[str, str]:
    """An environment for running things inside a venv: nothing of the test run's."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}


def venv_problems(venv_dir: Path, packages: dict[str, str], pip_check: bool = False,
                  scripts: bool = True, tokens: dict[str, str | None] | None = None) -> list[str]:
    """Why the venv at `venv_dir` does not work as built from `packages` (empty: it works).

    Exactly the pinned packages (and pip) are installed, each imports at its pinned version,
    every declared dependency is satisfied, `sys.prefix` is DIR, alpha's console script runs.
    """
    problems: list[str] = []
    python = venv_dir / "bin" / "python"
    try:
        out = subprocess.run([str(python), "-c", _CHECK, json.dumps(packages)], capture_output=True, text=True,
                             timeout=60, env=clean_env(), errors="replace")
    except OSError as e:
        return [f"cannot run {python}: {e}"]
    if out.returncode != 0:
        return [f"{python} failed: {out.stderr.strip()[-400:]}"]
    data = json.loads(out.stdout)
    problems += data["problems"]
    if tokens is not None:
        tokens.update(data["tokens"])
    if data["prefix"] != os.path.realpath(venv_dir):
        problems.append(f"sys.prefix is {data['prefix']}, not {os.path.realpath(venv_dir)}")
    extra = set(data["dists"]) - {n.lower() for n in packages} - {"pip"}
    if extra or "pip" not in data["dists"]:
        problems.append(f"installed: {sorted(data['dists'])}, asked for {sorted(packages)} and pip")
    if scripts and "alpha" in packages:
        try:
            cli = subprocess.run([str(venv_dir / "bin" / "alpha-cli")], capture_output=True, text=True, timeout=60,
                                 env=clean_env(), errors="replace")
            if (cli.returncode, cli.stdout) != (0, "alpha says hi\n"):
                problems.append(f"alpha-cli: exit {cli.returncode}, {cli.stdout!r} {cli.stderr.strip()[-300:]!r}")
        except OSError as e:
            problems.append(f"alpha-cli: {e}")
    if pip_check:
        check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120,
                               env=clean_env(), errors="replace")
        if check.returncode != 0:
            problems.append(f"pip check: {check.stdout.strip()} {check.stderr.strip()[-300:]}")
    return problems


def check_venv(faults: Faults, venv_dir: Path, packages: dict[str, str], pip_check: bool = False,
               scripts: bool = True) -> dict[str, str | None]:
    """Contract item 1: the venv has its marker and works; a marker on a venv that does not
    work is counted as a broken venv. Returns each package module's TOKEN (see token_wheel).
    """
    has_marker = (venv_dir / MARKER).is_file()
    tokens: dict[str, str | None] = {}
    problems = venv_problems(venv_dir, packages, pip_check, scripts, tokens)
    if has_marker and problems:
        faults.broken += 1
        faults.notes.append(f"broken venv {venv_dir}: {problems}")
    assert has_marker, f"{venv_dir} has no marker"
    assert not problems, f"{venv_dir} has a marker but does not work: {problems}"
    return tokens


def marker_wheels(venv_dir: Path) -> dict[str, str]:
    """{wheel filename: sha256} from the venv's marker."""
    data = json.loads((venv_dir / MARKER).read_text())
    return {w["filename"]: w["sha256"] for w in data["spec"]["wheels"]}


def site_packages(venv_dir: Path) -> Path:
    found = list(venv_dir.glob("lib/python3.*/site-packages"))
    assert len(found) == 1, found
    return found[0]


# -- pictures of directories ----------------------------------------------------------------------


def tree_state(directory: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under `directory`: type, mode, size, mtime and content (sha256 or link).

    Two equal states mean the tree is the same byte for byte.
    """
    out: dict[str, tuple[Any, ...]] = {}
    if not os.path.lexists(directory):
        return out
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, directory)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode)
            else:
                out[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, sha256_file(p))
    return out


def diff_states(before: Mapping[str, tuple[Any, ...]], after: Mapping[str, tuple[Any, ...]]) -> list[str]:
    changes = [f"removed {p}" for p in sorted(set(before) - set(after))]
    changes += [f"added {p}" for p in sorted(set(after) - set(before))]
    changes += [f"changed {p}: {before[p]} -> {after[p]}" for p in sorted(set(before) & set(after))
                if before[p] != after[p]]
    return changes


def assert_same_tree(before: dict[str, tuple[Any, ...]], directory: Path, what: str = "the old venv") -> None:
    changes = diff_states(before, tree_state(directory))
    assert not changes, f"{what} at {directory} changed: {changes[:10]} ({len(changes)} changes)"


def _stat_tree(root: Path, skip: Callable[[str], bool]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [n for n in dirnames if not skip(os.path.join(dirpath, n))]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if skip(p):
                continue
            st = os.lstat(p)
            # a directory's own mtime changes when an allowed entry (DIR, DIR.lock) appears in it
            is_dir = stat.S_ISDIR(st.st_mode)
            out[p] = (st.st_mode, 0 if is_dir else st.st_size, 0 if is_dir else st.st_mtime_ns)
    return out


@dataclass
class Outside:
    """Contract item 3: nothing is written outside DIR, DIR.lock, the trash beside DIR and the
    cache. Watches `roots` (here the parent of DIR, which holds the repo, TMPDIR and HOME);
    the tool's own bytecode in the repo's cros_venv/__pycache__ is tolerated.
    """

    faults: Faults
    roots: list[Path]
    venvs: list[Path]  # the DIRs of this test (as given; their real paths count too)
    mine: list[Path] = field(default_factory=list)  # files the test itself changes
    before: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rebase()

    def allowed(self, path: str) -> bool:
        if f"{os.sep}cros_venv{os.sep}__pycache__" in path + os.sep or f"{os.sep}{OWN}" in path:
            return True
        if any(path == str(m) for m in self.mine):
            return True
        for v in self.venvs:
            for d in {os.path.abspath(v), os.path.realpath(v)}:
                if path == d or path.startswith(d + os.sep) or path == d + ".lock":
                    return True
                parent, name = os.path.split(d)
                if os.path.dirname(path) == parent and os.path.basename(path).startswith(f".{name}{TRASH}"):
                    return True
        return False

    def _snap(self) -> dict[str, tuple[int, int, int]]:
        out: dict[str, tuple[int, int, int]] = {}
        for root in self.roots:
            if os.path.lexists(root):
                out.update(_stat_tree(root, self.allowed))
        return out

    def rebase(self) -> None:
        """Take the picture now (after the test's own changes)."""
        self.before = self._snap()

    def check(self) -> None:
        """Count and report what changed outside since the picture."""
        changes = diff_states(self.before, self._snap())
        if changes:
            self.faults.outside += len(changes)
            self.faults.notes.append(f"written outside: {changes}")
        assert not changes, f"written outside DIR, DIR.lock, trash and cache: {changes[:10]}"


# -- wheels, honest and not -----------------------------------------------------------------------


def wheel_members(spec: WheelSpec, scratch: Path) -> dict[str, bytes]:
    """The members build_wheel would write for `spec` (RECORD included), in order."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = build_wheel(scratch, spec)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    path.unlink()
    return members


def record_for(members: dict[str, bytes], dist_info: str) -> bytes:
    """A RECORD listing `members` (as build_wheel writes it)."""
    import base64

    out = io.StringIO()
    for name, data in members.items():
        if name == f"{dist_info}/RECORD":
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
        out.write(f"{name},sha256={digest},{len(data)}\n")
    out.write(f"{dist_info}/RECORD,,\n")
    return out.getvalue().encode()


@dataclass
class Member:
    """One zip member, every header field of which may lie."""

    name: str
    data: bytes = b""
    mode: int = 0o100644
    method: int = zipfile.ZIP_DEFLATED
    raw: bytes | None = None  # the compressed bytes as stored (default: deflate(data))
    crc: int | None = None  # default: crc32(data)
    size: int | None = None  # uncompressed size claimed (default: len(data))


def raw_zip(members: Sequence[Member]) -> bytes:
    """A zip written field by field, so that any header can lie."""
    out = io.BytesIO()
    central = io.BytesIO()
    dos_time, dos_date = 0, (40 << 9) | (1 << 5) | 1  # 2020-01-01 00:00
    for m in members:
        name = m.name.encode()
        if m.raw is not None:
            raw = m.raw
        elif m.method == zipfile.ZIP_DEFLATED:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw = c.compress(m.data) + c.flush()
        else:
            raw = m.data
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        size = len(m.data) if m.size is None else m.size
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, m.method, dos_time, dos_date,
                              crc, len(raw), size, len(name), 0))
        out.write(name)
        out.write(raw)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, 0, m.method, dos_time, dos_date,
                                  crc, len(raw), size, len(name), 0, 0, 0, 0, (m.mode & 0xFFFF) << 16, offset))
        central.write(name)
    cd = central.getvalue()
    cd_offset = out.tell()
    out.write(cd)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), cd_offset, 0))
    return out.getvalue()


def zeros_deflated(mib: int) -> bytes:
    """A raw deflate stream that inflates to `mib` MiB of zeros (made without inflating it)."""
    chunk = b"\0" * (1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every MiB
    return block * mib + c.flush(zlib.Z_FINISH)


@functools.cache
def zeros_crc(mib: int) -> int:
    crc = 0
    chunk = b"\0" * (1 << 20)
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return crc


def write_wheel(directory: Path, filename: str, data: bytes) -> Path:
    path = directory / filename
    path.write_bytes(data)
    return path


def same_size_variant(name: str, size: int, scratch: Path) -> tuple[bytes, str]:
    """The bytes of a valid wheel `name` 1.0 exactly `size` bytes long, and the token its
    module carries (`TOKEN = '...'`), different from any earlier one.
    """
    for i in range(5000):
        token = hashlib.sha256(f"{scratch}:{i}".encode()).hexdigest()[:24]
        spec = WheelSpec(name, "1.0", files={f"{name}.py": f"VERSION = '1.0'\nTOKEN = '{token}'\n".encode()})
        scratch.mkdir(parents=True, exist_ok=True)
        path = build_wheel(scratch, spec)
        data = path.read_bytes()
        path.unlink()
        if len(data) == size:
            return data, token
    raise AssertionError(f"no variant of {name} of {size} bytes")


def token_wheel(directory: Path, name: str, token: str, version: str = "1.0") -> Path:
    """A valid wheel whose module carries VERSION and TOKEN (a distinct sha256 per token)."""
    return build_wheel(directory, WheelSpec(
        name, version, files={f"{name}.py": f"VERSION = '{version}'\nTOKEN = '{token}'\n".encode()}))


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to a new file and rename it over `path` (a new inode: rsync's way)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def cache_file_for(cache: Path, installed: Path) -> Path | None:
    """The file in the cache's unpacked wheels that `installed` is a hard link of."""
    st = installed.stat()
    for dirpath, _, filenames in os.walk(cache / "wheels"):
        for name in filenames:
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            if (s.st_ino, s.st_dev) == (st.st_ino, st.st_dev):
                return Path(p)
    return None


def drop_tree(path: Path) -> None:
    """Remove a tree even if it was made read-only."""
    def onerror(func: Any, p: str, exc: Any) -> None:
        os.chmod(os.path.dirname(p), 0o755)
        func(p)
    if os.path.lexists(path):
        shutil.rmtree(path, onerror=onerror)


# -- measuring a run -------------------------------------------------------------------------------

# Runs a command under a file size limit and writes, for its whole process tree once reaped,
# the largest resident set (KiB) and the bytes passed to write() (/proc's wchar: a child's
# counts are added to its parent's when it is reaped). Python ignores SIGXFSZ, so a write
# past the limit fails with EFBIG ("File too large") instead of killing the writer.
MEASURE = r"""
import resource, subprocess, sys
out, fsize = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
def wchar():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])
before = wchar()
rc = subprocess.call(sys.argv[3:])
written = wchar() - before
with open(out, "w") as f:
    f.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {written}")
sys.exit(rc if rc >= 0 else 128 - rc)
"""
