"""bin/venv_gc: shared venvs and cached wheels unused for N days go; one in use never does."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ToolRepo, venv_python

pytestmark = pytest.mark.e2e

REQS = "alpha==1.0\nbeta==1.0\n"
DAY = 86400


@pytest.fixture
def repo(wheelhouse: ToolRepo, tmp_path: Path) -> ToolRepo:
    return ToolRepo(wheelhouse.root, tmp_path / "cache")


def shared(repo: ToolRepo, text: str = REQS, name: str = "requirements.txt") -> Path:
    result = repo.run(str(repo.requirements(name, text)))
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def age(link: Path, days: float) -> None:
    """Make the shared venv at `link` look last used `days` ago."""
    when = time.time() - days * DAY
    os.utime(link, (when, when), follow_symlinks=False)


def gc(repo: ToolRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return repo.command("venv_gc", *args)


def test_removes_what_is_old_and_keeps_what_is_recent(repo: ToolRepo) -> None:
    old = shared(repo, REQS, "a.txt")
    recent = shared(repo, "alpha==1.0\nbeta==2.0\n", "b.txt")
    old_real = Path(os.path.realpath(old))
    age(old, 40)
    result = gc(repo)
    assert result.returncode == 0, result.stderr
    assert f"removed shared venv {old_real}" in result.stdout
    assert "freed" in result.stdout.splitlines()[-1] and "1 venvs" in result.stdout.splitlines()[-1]
    assert not os.path.lexists(old) and not old_real.exists()
    assert venv_python(recent, "import beta; print(beta.VERSION)").stdout == "2.0\n"
    again = shared(repo, REQS, "a.txt")  # a request for it later builds it again
    assert again == old and venv_python(again, "import alpha").returncode == 0


def test_max_age_and_dry_run(repo: ToolRepo) -> None:
    link = shared(repo)
    real = Path(os.path.realpath(link))
    age(link, 10)
    assert "shared venv" not in gc(repo).stdout  # 30 days by default
    dry = gc(repo, "--max-age-days", "5", "--dry-run")
    assert dry.returncode == 0 and f"would remove shared venv {real}" in dry.stdout
    assert dry.stdout.splitlines()[-1].startswith("venv_gc: would free ")
    assert link.is_symlink() and real.is_dir()
    assert f"removed shared venv {real}" in gc(repo, "--max-age-days", "5").stdout
    assert not real.exists()


def test_a_venv_in_use_is_never_removed(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    proc = subprocess.Popen([PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), "-r", str(reqs), "--", "-c",
                             "import sys, time; print('ready', flush=True); sys.stdin.readline(); "
                             "import alpha, beta; print(alpha.VERSION)"],
                            env=repo.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        link = Path(repo.run(str(reqs)).stdout.strip())
        age(link, 100)
        result = gc(repo, "--max-age-days", "0")
        assert result.returncode == 0 and f"kept {link}: in use" in result.stdout
        assert os.path.isdir(os.path.realpath(link))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "1.0\n"
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert "removed shared venv" in gc(repo, "--max-age-days", "0").stdout  # now it is free


def test_a_replaced_venv_goes_at_any_age_and_wheels_by_age(repo: ToolRepo) -> None:
    link = shared(repo)
    old_real = Path(os.path.realpath(link))
    next(old_real.glob("lib/python*/site-packages/beta.py")).unlink()  # damaged: replaced beside it
    shared(repo)
    new_real = Path(os.path.realpath(link))
    assert new_real != old_real
    result = gc(repo)
    assert f"removed unused venv directory {old_real}" in result.stdout
    assert new_real.is_dir() and link.is_symlink()
    entries = list((repo.cache / "wheels").iterdir())
    for entry in entries:
        os.utime(entry, (time.time() - 40 * DAY,) * 2)
    result = gc(repo)
    assert f"{len(entries)} cache entries" in result.stdout.splitlines()[-1]
    # the venv's files are links to the removed entries: it still works
    assert venv_python(link, "import alpha, beta; print(beta.VERSION)").stdout == "1.0\n"


def test_gc_beside_live_wrappers_never_breaks_them(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    link = shared(repo)
    stop = threading.Event()
    removed: list[str] = []

    def collect() -> None:
        while not stop.is_set():
            if os.path.lexists(link):
                age(link, 100)
            removed.extend(line for line in gc(repo, "--max-age-days", "0").stdout.splitlines()
                           if line.startswith("removed shared venv"))

    collector = threading.Thread(target=collect)
    collector.start()
    results: list[subprocess.CompletedProcess[str]] = []
    deadline = time.monotonic() + 90
    try:
        # At least 12 runs, and on until GC has removed the venv at least twice: on a loaded machine a
        # dozen fast runs can all fall while one slow GC run waits its turn.
        while len(results) < 12 or (len(removed) < 2 and time.monotonic() < deadline):
            results.append(subprocess.run([PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), "-r",
                                           str(reqs), "--", "-c", "import alpha, beta; print(beta.VERSION)"],
                                          env=repo.env(), capture_output=True, text=True, timeout=120))
    finally:
        stop.set()
        collector.join()
    assert [(r.returncode, r.stdout) for r in results] == [(0, "1.0\n")] * len(results), [r.stderr for r in results]
    assert removed  # GC did remove the venv between (or beside) the runs


# -- found by an independent break-it session (round 10) -------------------------------------

def _python_venv(repo: ToolRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), *args], env=repo.env(),
                          capture_output=True, text=True, timeout=120)


def test_a_converted_spec_in_use_is_kept_and_every_removal_is_listed(repo: ToolRepo, tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text('# /// script\n# dependencies = ["alpha==1.0", "beta==1.0"]\n# ///\n'
                      "import os, beta; print(os.environ['CROS_VENV_SPEC_PATH'])\n")
    result = _python_venv(repo, str(script))
    assert result.returncode == 0, result.stderr
    spec = Path(result.stdout.strip())
    assert spec.parent == repo.cache / "specs"
    age(spec, 40)
    assert _python_venv(repo, str(script)).returncode == 0  # a use marks it used
    assert spec.lstat().st_mtime > time.time() - DAY
    age(spec, 40)  # used long ago (or by a program running for 40 days): its venv is still here
    result = gc(repo)
    assert result.returncode == 0 and spec.is_file(), result.stdout
    assert "converted spec" not in result.stdout
    link = next(p for p in (repo.cache / "venvs").iterdir() if p.is_symlink())
    age(link, 40)
    for old in [*(repo.cache / "venvs" / ".requests").iterdir(), *(repo.cache / "wheels").iterdir()]:
        age(old, 40)
    result = gc(repo)
    assert result.returncode == 0, result.stderr
    assert not spec.exists()
    lines = result.stdout.splitlines()
    for what in ("shared venv", "request file", "converted spec", "cache entry"):
        assert any(line.startswith(f"removed {what} ") and line.endswith("B)") for line in lines), (what, lines)
    assert f"removed converted spec {spec} (" in result.stdout


def test_permission_denied_is_told_as_such_not_as_in_use(repo: ToolRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    from cros_venv import gc as venv_gc

    link = shared(repo)
    real = os.path.realpath(link)
    age(link, 40)
    said: list[str] = []
    rename, open_ = os.rename, os.open

    def denied_rename(src: str, dst: str) -> None:
        if src == real:
            raise PermissionError(13, "Permission denied", src)
        rename(src, dst)

    monkeypatch.setattr(os, "rename", denied_rename)
    venv_gc.collect(str(repo.cache), 30, False, said.append)
    assert f"cannot remove shared venv {real}: Permission denied" in said
    assert not any("in use" in line for line in said) and os.path.isdir(real)

    def denied_open(path: str, flags: int, mode: int = 0o777) -> int:
        if path == real:
            raise PermissionError(13, "Permission denied", path)
        return open_(path, flags, mode)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "open", denied_open)
    (repo.cache / "venvs" / "x").symlink_to(os.path.relpath(real, repo.cache / "venvs"))  # a link again
    os.replace(repo.cache / "venvs" / "x", link)
    age(link, 40)
    said.clear()
    venv_gc.collect(str(repo.cache), 30, False, said.append)
    assert f"kept {link}: cannot open {real} to lock it: Permission denied" in said, said
    assert os.path.isdir(real)


def test_gc_twice_beside_a_running_program_keeps_its_spec(repo: ToolRepo, tmp_path: Path) -> None:
    """The first GC must not drop the request that tells the second the spec is in use: a
    nested python_venv of the running program reads that spec ($CROS_VENV_SPEC_PATH)."""
    script = tmp_path / "nest.py"
    flag = tmp_path / "go"
    script.write_text('# /// script\n# dependencies = ["alpha==1.0", "beta==1.0"]\n# ///\n'
                      "import os, subprocess, sys, time\nprint(os.environ['CROS_VENV_SPEC_PATH'], flush=True)\n"
                      f"while not os.path.exists({str(flag)!r}): time.sleep(0.05)\n"
                      f"sys.exit(subprocess.call([sys.argv[1], '-c', 'import beta']))\n")
    proc = subprocess.Popen([PYTHON, str(repo.root / "bin" / "python_venv"), str(script),
                             str(repo.root / "bin" / "python_venv")], env=repo.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        spec = Path(proc.stdout.readline().strip())
        for old in [spec, *(repo.cache / "venvs").iterdir(), *(repo.cache / "venvs" / ".requests").iterdir()]:
            age(old, 40)
        for _ in range(2):
            result = gc(repo)
            assert result.returncode == 0, result.stderr
            assert spec.is_file(), result.stdout
    finally:
        flag.touch()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_a_script_path_cannot_write_requirements_into_its_converted_spec(repo: ToolRepo, tmp_path: Path) -> None:
    """The converted spec's first line names its script: a newline in the directory's name
    must not become a requirement line, nor reach another script with the same block."""
    block = ('# /// script\n# dependencies = ["beta==1.0"]\n# ///\n'
             "import importlib.util as u, os; print(u.find_spec('alpha') is not None)\n")
    odd = tmp_path / "x\nalpha==1.0\n#"
    odd.mkdir()
    (odd / "s.py").write_text(block)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "s.py").write_text(block)
    for script in (odd / "s.py", clean / "s.py"):
        result = _python_venv(repo, str(script))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "False", script  # only beta: alpha was never asked for
    for spec in (repo.cache / "specs").iterdir():
        first, *rest = spec.read_text().splitlines()
        assert first.startswith("# python_venv: the spec of ") and rest == ["beta==1.0"], spec.read_text()


def test_the_leftovers_of_a_killed_gc_are_removed_by_the_next(repo: ToolRepo) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = repo.cache / "venvs" / f".gc-{dead.pid}-0a1b2c3d"
    (leftover / "lib").mkdir(parents=True)
    (leftover / "lib" / "x.py").write_text("x" * 1000)
    live = repo.cache / "venvs" / f".gc-{os.getpid()}-0a1b2c3d"  # a venv_gc still at work
    live.mkdir()
    result = gc(repo)
    assert result.returncode == 0, result.stderr
    assert not leftover.exists() and live.exists()
    assert f"removed leftover of a stopped venv_gc {leftover} (" in result.stdout


def test_bad_arguments_are_one_line(repo: ToolRepo) -> None:
    for args, says in ((["--bogus"], "unrecognized arguments: --bogus"),
                       (["--max-age-days", "-1"], "--max-age-days must be a number of days, 0 or more")):
        result = gc(repo, *args)
        assert result.returncode == 2 and result.stderr == f"venv_gc: error: {says}; see venv_gc --help\n"
