"""Fixtures: real tiny wheels, a private copy of the tool's repo, and a runner for create_venv."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cros_venv import toolchain  # noqa: E402

# The interpreter running the tests, as a real path (not the test venv's symlink).
PYTHON = os.path.realpath(sys.executable)
TOOL_WHEELS = (*toolchain.LIBRARIES, *toolchain.VIRTUALENV, toolchain.PIP, toolchain.TOMLI)
OTHER_PYTHONS = sorted(
    str(p) for p in Path("/root/.pyenv/versions").glob("3.*/bin/python3")
    if p.parent.parent.name.split(".")[1].isdigit() and 9 <= int(p.parent.parent.name.split(".")[1]) <= 13
) if Path("/root/.pyenv/versions").is_dir() else []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: builds real venvs with create_venv")
    # A suite started in the background (`bin/run_tests &`, nohup, some CI runners) inherits
    # SIGINT ignored, and so would every create_venv it starts: the Ctrl-C tests would then
    # see their SIGINT ignored, as it should be. Children get the default disposition, as
    # a terminal's foreground job has.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


@dataclass
class WheelSpec:
    name: str
    version: str = "1.0"
    tag: str = "py3-none-any"
    requires: list[str] = field(default_factory=list)
    extras: dict[str, list[str]] = field(default_factory=dict)
    requires_python: str | None = None
    files: dict[str, bytes] | None = None
    console_scripts: dict[str, str] = field(default_factory=dict)
    wheel_version: str = "1.0"


def build_wheel(directory: Path, spec: WheelSpec) -> Path:
    """Write a real, valid wheel (RECORD with hashes) and return its path."""
    dist = spec.name.replace("-", "_")
    dist_info = f"{dist}-{spec.version}.dist-info"
    files = dict(spec.files) if spec.files is not None else {
        f"{dist.lower()}.py": f"NAME = {spec.name!r}\nVERSION = {spec.version!r}\n".encode(),
    }
    meta = ["Metadata-Version: 2.1", f"Name: {spec.name}", f"Version: {spec.version}"]
    if spec.requires_python:
        meta.append(f"Requires-Python: {spec.requires_python}")
    meta += [f"Requires-Dist: {r}" for r in spec.requires]
    for extra, reqs in spec.extras.items():
        meta.append(f"Provides-Extra: {extra}")
        meta += [f'Requires-Dist: {r} ; extra == "{extra}"' for r in reqs]
    files[f"{dist_info}/METADATA"] = ("\n".join(meta) + "\n\n").encode()
    pure = "true" if spec.tag.endswith("-none-any") else "false"
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: {spec.wheel_version}\nGenerator: cros_venv-tests\nRoot-Is-Purelib: {pure}\nTag: {spec.tag}\n"
    ).encode()
    if spec.console_scripts:
        body = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in spec.console_scripts.items())
        files[f"{dist_info}/entry_points.txt"] = body.encode()
    record = io.StringIO()
    for path, data in files.items():
        record.write(f"{path},{_record_hash(data)},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    files[f"{dist_info}/RECORD"] = record.getvalue().encode()
    out = directory / f"{dist}-{spec.version}-{spec.tag}.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if "/scripts/" in path else 0o644) << 16
            zf.writestr(info, data)
    return out


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass
class ToolRepo:
    """A private copy of this repo (code + the tool's own wheels) that tests may change."""

    root: Path
    cache: Path

    @property
    def wheels(self) -> Path:
        return self.root / "pip_packages"

    def add_wheel(self, spec: WheelSpec) -> Path:
        return build_wheel(self.wheels, spec)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CROS_VENV_", "PIP_"))}
        env.update(CROS_VENV_CACHE=str(self.cache), PIP_CONFIG_FILE=os.devnull)
        env.update(extra)
        return env

    def run(self, *args: str, python: str = PYTHON, env: dict[str, str] | None = None,
            timeout: float = 120, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, python, str(self.root / "create_venv"), *args],
            env=env or self.env(), capture_output=True, text=True, timeout=timeout,
        )

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [PYTHON, "-I", "-S", str(self.root / "create_venv"), *args],
            env=env or self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def command(self, name: str, *args: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run bin/NAME of this copy with the test interpreter."""
        return subprocess.run([PYTHON, str(self.root / "bin" / name), *args], env=env or self.env(),
                              capture_output=True, text=True, timeout=300, cwd=cwd)

    def requirements(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: the tool's wheels and virtualenv's template are made once."""
    return tmp_path_factory.mktemp("cache")


@functools.cache
def wheel_source() -> Path:
    """Where tool repos hard-link the tool's wheels from: this checkout's pip_packages/, or,
    with tests running in parallel (pytest-xdist), a copy per worker. A new hard link moves
    an inode's ctime, which every cache keys on: one worker's links would make another's
    up-to-date venvs look stale.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return REPO / "pip_packages"
    copy = Path(tempfile.mkdtemp(prefix=f"wheels-{worker}-", dir=os.environ.get("PYTEST_DEBUG_TEMPROOT")))
    for name in TOOL_WHEELS:
        shutil.copy2(REPO / "pip_packages" / name, copy / name)
    return copy


def make_tool_repo(root: Path, cache: Path) -> ToolRepo:
    """A checkout of the tool at `root` (its code and its own wheels) using the cache `cache`."""
    (root / "pip_packages").mkdir(parents=True)
    shutil.copy2(REPO / "create_venv", root / "create_venv")
    shutil.copytree(REPO / "cros_venv", root / "cros_venv", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "bin", root / "bin", symlinks=True, ignore=shutil.ignore_patterns("run_tests"))
    for name in TOOL_WHEELS:
        link_or_copy(wheel_source() / name, root / "pip_packages" / name)
    return ToolRepo(root, cache)


@pytest.fixture
def tool_repo(tmp_path: Path, shared_cache: Path) -> ToolRepo:
    return make_tool_repo(tmp_path / "infra_virtualenv", shared_cache)


@pytest.fixture
def wheelhouse(tool_repo: ToolRepo) -> ToolRepo:
    """The tool repo with a few tiny wheels: alpha (needs beta>=1), beta, gamma (extra 'fast')."""
    tool_repo.add_wheel(WheelSpec("alpha", "1.0", requires=["beta>=1.0"],
                                  console_scripts={"alpha-cli": "alpha:main"},
                                  files={"alpha.py": b"VERSION = '1.0'\ndef main():\n    print('alpha says hi')\n"}))
    tool_repo.add_wheel(WheelSpec("beta", "1.0"))
    tool_repo.add_wheel(WheelSpec("beta", "2.0"))
    tool_repo.add_wheel(WheelSpec("gamma", "1.0", extras={"fast": ["delta==1.0"]}))
    tool_repo.add_wheel(WheelSpec("delta", "1.0"))
    return tool_repo


@pytest.fixture
def built(wheelhouse: ToolRepo) -> Iterator[tuple[ToolRepo, Path, Path]]:
    """A venv built from alpha/beta, with its requirements file."""
    reqs = wheelhouse.requirements("requirements.txt", "alpha==1.0\nbeta==1.0\n")
    venv_dir = wheelhouse.root.parent / "venv"
    result = wheelhouse.run(str(venv_dir), str(reqs))
    assert result.returncode == 0, result.stderr
    yield wheelhouse, venv_dir, reqs


OLD_SET = "installer==0.7.0\n"  # for builds in this process: wheels of the tool's own pip_packages/
NEW_SET = "installer==0.7.0\npackaging==26.3\n"


@dataclass
class InProcess:
    """build.create run in the test's own process, from the tool's own pip_packages/ and the
    session's cache: a test may replace a step of build.BUILD or catch the checkpoints.
    A warm build of OLD_SET takes ~0.1 s.
    """

    tmp_path: Path
    reports: list[str] = field(default_factory=list)

    def requirements(self, text: str, name: str = "requirements.txt") -> Path:
        path = self.tmp_path / name
        path.write_text(text)
        return path

    def create(self, venv_dir: Path, reqs: Path, compile: bool = False) -> str:
        from cros_venv import build

        return build.create(build.Request(str(venv_dir), (str(reqs),), compile=compile), self.reports.append)


@pytest.fixture
def in_process(tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> InProcess:
    monkeypatch.setenv("CROS_VENV_CACHE", str(shared_cache))
    monkeypatch.delenv("CROS_VENV_TEST_KILL", raising=False)
    return InProcess(tmp_path)


def contents(directory: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every path under `directory` with its kind, bytes (or link target) and mode: to prove a
    tree is back byte for byte. An absent directory has no contents.
    """
    out: dict[str, tuple[str, bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, directory)
            mode = os.lstat(path).st_mode
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path), mode)
            elif os.path.isdir(path):
                out[rel] = ("dir", b"", mode)
            else:
                out[rel] = ("file", Path(path).read_bytes(), mode)
    return out


# Changes to a file that keep its size and mtime: each cache's key must still see them.

def rewrite_keeping_size_and_mtime(path: Path, data: bytes | None = None) -> None:
    """What `cp -p` over the file, or `touch -r`, leaves: same inode, size and mtime, other bytes."""
    st = path.stat()
    old = path.read_bytes()
    new = data if data is not None else bytes(b ^ 1 for b in old)
    assert len(new) == len(old)
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.write(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_ino == st.st_ino and path.stat().st_mtime_ns == st.st_mtime_ns


def replace_by_rename(path: Path) -> None:
    """What `rsync -a` leaves: same bytes, size and mtime, another inode."""
    st = path.stat()
    tmp = path.with_name(path.name + ".tmp")
    shutil.copy2(path, tmp)
    os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def chmod_round_trip(path: Path) -> None:
    """Only the ctime changes."""
    mode = path.stat().st_mode
    path.chmod(0o600)
    path.chmod(mode & 0o7777)


def venv_python(venv_dir: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv_dir / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60)


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every path under `directory` with its size and mtime: to prove nothing changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, directory)] = (st.st_size, st.st_mtime_ns)
    return out


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="run the long fault-injection loops (tests/reliability) and write docs/RELIABILITY.md")


@pytest.fixture(scope="session")
def slow(request: pytest.FixtureRequest) -> bool:
    """True under `bin/run_tests --slow`: long loops run their full number of rounds."""
    return bool(request.config.getoption("--slow"))


@contextlib.contextmanager
def no_hang(seconds: float = 30.0) -> Iterator[None]:
    """Fail if the block runs for `seconds` (a hang guard for inputs that once took
    quadratic time, far above what the block needs: not a timing assertion).
    """
    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"did not finish within {seconds} s: a hang (quadratic work?)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
