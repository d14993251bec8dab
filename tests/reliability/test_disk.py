"""Disk: a full disk mid-build and exactly when the marker is written (a small tmpfs in a
private mount namespace), read-only venv / parent / cache (read-only bind mounts; and user
nobody), HOME unset and TMPDIR missing (invariants 4, 10 and 11 of /work/CONTRACT.md, with
1-3 after every fault).

create_venv runs inside the namespace through nsenter (helpers.Namespace); this process
sees the namespace's files under /proc/PID/root. The tool repo and the cache stay on the
normal disk: only DIR's parent is the tmpfs (so wheels are copied into DIR, not linked).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import PYTHON, ToolRepo, snapshot
from tests.reliability.conftest import Faults
from tests.reliability.helpers import (
    Namespace,
    assert_no_crash,
    assert_nothing_outside,
    assert_ok,
    assert_one_error,
    assert_venv,
    base_dir,
    bulky_wheel,
    fill,
    finish,
    marked_packages,
    marker,
    reap_group,
    start,
    tiny_wheels,
    tool_copy,
    trash,
    wait_stopped,
    watch,
    workdir,
)

pytestmark = pytest.mark.e2e

SCRIPTS = {"alpha-cli": "alpha says hi\n"}
OLD = {"alpha": "1.0", "beta": "1.0"}


@dataclass
class Kit:
    repo: ToolRepo
    reqs: Path

    def write(self, packages: dict[str, str], comment: str = "") -> None:
        self.reqs.write_text(comment + "".join(f"{k}=={v}\n" for k, v in packages.items()))


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Kit:
    repo = tool_copy(tmp_path_factory.mktemp("disk") / "infra_virtualenv", shared_cache)
    tiny_wheels(repo)
    bulky_wheel(repo, "heavy", files=20, size=4 << 20)  # 4 MiB that does not compress
    return Kit(repo, repo.root / "requirements.txt")


@pytest.fixture
def ns() -> Iterator[Namespace]:
    space = Namespace()
    try:
        yield space
    finally:
        space.close()


def run_in(ns: Namespace, repo: ToolRepo, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return repo.run(*args, env=env, prefix=ns.prefix)


def assert_put_back(ns: Namespace, venv_dir: Path, before: dict[str, tuple[int, int]], stderr: str,
                    faults: Faults) -> None:
    """Invariant 4 after a failed build: the old venv is back as it was, marker included."""
    seen = ns.see(venv_dir)
    held = marked_packages(seen) if (seen / ".cros_venv.json").exists() else None
    assert held == OLD, f"the old venv was not put back (DIR holds {held}, trash {trash(seen)}); {stderr.strip()}"
    assert snapshot(seen) == before, "the old venv is not as it was"
    assert trash(seen) == []
    assert_venv(venv_dir, OLD, SCRIPTS, faults, prefix=ns.prefix, root=ns.root)


def old_venv_on_tmpfs(kit: Kit, ns: Namespace) -> tuple[Path, Path]:
    """(a 64 MiB tmpfs, the venv of OLD built on it) in the namespace."""
    mnt = workdir("disk") / "mnt"
    mnt.mkdir()
    venv_dir = mnt / "venv"
    ns.tmpfs(mnt, 64 << 10)
    kit.write(OLD)
    assert_ok(run_in(ns, kit.repo, str(venv_dir), str(kit.reqs)))
    return mnt, venv_dir


def test_full_disk_mid_build(kit: Kit, ns: Namespace, faults: Faults) -> None:
    """DIR's parent is a tmpfs with room for the old venv but not for it and the new one: the
    rebuild fills the disk, exits 1 with one line, and puts the old venv back as it was.
    With room again, the next run builds the new venv."""
    mnt, venv_dir = old_venv_on_tmpfs(kit, ns)
    used = (64 << 10) - ns.free_kib(mnt)
    ns.sh('mount -o "remount,size=$2k" "$1"', str(mnt), str(used + 1536))  # 1.5 MiB free: "heavy" needs 4
    new = {**OLD, "heavy": "1.0"}
    kit.write(new)
    before = snapshot(ns.see(venv_dir))
    outside = watch(kit.repo, venv_dir, root=ns.root)
    out = run_in(ns, kit.repo, str(venv_dir), str(kit.reqs))
    faults.round()
    faults.inject()
    assert out.returncode == 1, out.stderr
    assert_one_error(out.stderr)
    assert_nothing_outside(outside, faults)
    assert_put_back(ns, venv_dir, before, out.stderr, faults)
    ns.sh('mount -o remount,size=65536k "$1"', str(mnt))
    out = run_in(ns, kit.repo, str(venv_dir), str(kit.reqs))
    assert_no_crash(out)
    assert_ok(out)
    assert_venv(venv_dir, new, SCRIPTS, faults, prefix=ns.prefix, root=ns.root)
    assert trash(ns.see(venv_dir)) == []


def test_disk_full_when_the_marker_is_written(kit: Kit, ns: Namespace, faults: Faults) -> None:
    """The rebuild stops itself right after the `configured` step (CROS_VENV_TEST_KILL=
    configured:STOP); the test fills the tmpfs to the last byte and lets it go on: writing
    the marker fails. Exit 1, one line, the old venv back as it was; after the filler is
    removed, the next run builds the new venv."""
    mnt, venv_dir = old_venv_on_tmpfs(kit, ns)
    new = {"alpha": "1.0", "beta": "2.0"}
    kit.write(new)
    before = snapshot(ns.see(venv_dir))
    filler = mnt / "filler"
    outside = watch(kit.repo, venv_dir, root=ns.root)
    proc = start(kit.repo, str(venv_dir), str(kit.reqs), env=kit.repo.env(CROS_VENV_TEST_KILL="configured:STOP"),
                 prefix=ns.prefix)
    try:
        assert wait_stopped(proc.pid), "create_venv did not stop after `configured`"
        assert fill(ns.see(filler)) > 0
        os.kill(proc.pid, signal.SIGCONT)
        rc, err = finish(proc)
    finally:
        reap_group(proc)
    faults.round()
    faults.inject()
    assert rc == 1, err
    assert_one_error(err)
    changed = [p for p in outside.changes() if p != str(filler)]
    faults.outside += len(changed)
    assert not changed, changed
    assert_put_back(ns, venv_dir, before, err, faults)
    ns.see(filler).unlink()
    out = run_in(ns, kit.repo, str(venv_dir), str(kit.reqs))
    assert_no_crash(out)
    assert_ok(out)
    assert_venv(venv_dir, new, SCRIPTS, faults, prefix=ns.prefix, root=ns.root)
    assert trash(ns.see(venv_dir)) == []


def state(venv_dir: Path) -> tuple[dict[str, tuple[int, int]], object]:
    """The venv's files (but its marker) and the spec in its marker."""
    files = snapshot(venv_dir)
    files.pop(".cros_venv.json", None)
    data = marker(venv_dir)
    return files, data and data["spec"]


@pytest.mark.parametrize("what", ["venv", "parent", "cache"])
def test_read_only(kit: Kit, ns: Namespace, faults: Faults, what: str) -> None:
    """A built venv whose requirements got a harmless edit (a comment: the no-op key is
    stale, the spec matches), then DIR / its parent / the cache made read-only (a read-only
    bind mount): exit 0 and nothing changed (but the marker's no-op key, which a writable
    DIR may refresh). A real change that needs a build: it fails (exit 1, or 2: nothing
    changed) with one line naming the path that cannot be written (CROS_VENV_CACHE for the
    cache), the old venv untouched."""
    venv_dir = workdir("disk-ro") / "venv"
    kit.write(OLD)
    out = kit.repo.run(str(venv_dir), str(kit.reqs))
    assert_ok(out)
    kit.write(OLD, comment="# a harmless edit\n")
    target = {"venv": venv_dir, "parent": venv_dir.parent, "cache": kit.repo.cache}[what]
    ns.read_only(target)
    before = state(venv_dir)
    outside = watch(kit.repo, venv_dir, root=ns.root)
    out = run_in(ns, kit.repo, str(venv_dir), str(kit.reqs))
    faults.round()
    faults.inject()
    assert_no_crash(out)
    assert (out.returncode, out.stderr) == (0, ""), f"read-only {what}: an up-to-date venv: {out.stderr}"
    assert state(venv_dir) == before, f"read-only {what}: the up-to-date venv was changed"
    assert_nothing_outside(outside, faults)
    # A build that cannot write (with a wheel the cache does not have yet).
    name = f"fresh{os.urandom(3).hex()}"
    bulky_wheel(kit.repo, name, files=3)
    kit.write({**OLD, name: "1.0"})
    outside.reset()
    out = run_in(ns, kit.repo, str(venv_dir), str(kit.reqs))
    faults.round()
    assert out.returncode in (1, 2), f"read-only {what}: exit {out.returncode}: {out.stderr}"
    assert_one_error(out.stderr, {"venv": str(venv_dir), "parent": str(venv_dir.parent),
                                  "cache": "CROS_VENV_CACHE"}[what])
    assert state(venv_dir) == before, f"read-only {what}: the old venv was changed by a build that failed"
    assert_nothing_outside(outside, faults)


def as_nobody() -> None:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_nobody_finds_the_venv_up_to_date(faults: Faults, shared_cache: Path) -> None:
    """A venv, its parent and the cache made by root, readable by all; user nobody runs the
    same create_venv after a harmless edit of the requirements: exit 0, nothing changed. A
    real change: it fails (exit 1 or 2) with one line naming a path it cannot write."""
    python = "/usr/bin/python3.11"
    if os.geteuid() != 0 or not os.access(python, os.X_OK):
        pytest.skip("needs root and a system python3.11 that nobody can run")
    home = workdir("disk-nobody")
    cache = home / "cache"
    shutil.copytree(shared_cache, cache, symlinks=True, copy_function=os.link)  # warm, and readable by all
    repo = tool_copy(home / "infra_virtualenv", cache)
    tiny_wheels(repo)
    for d in [home, *home.rglob("*")]:
        if d.is_dir() and not d.is_symlink():
            d.chmod(0o755)
    reqs = repo.requirements("requirements.txt", "alpha==1.0\nbeta==1.0\n")
    venv_dir = home / "venv"
    out = repo.run(str(venv_dir), str(reqs), python=python)
    assert_ok(out)
    reqs.write_text("# a harmless edit\nalpha==1.0\nbeta==1.0\n")
    before = state(venv_dir)
    outside = watch(repo, venv_dir)
    env = repo.env()
    env.pop("HOME", None)
    result = subprocess.run([python, str(repo.root / "create_venv"), str(venv_dir), str(reqs)], env=env,
                            capture_output=True, text=True, timeout=120, preexec_fn=as_nobody, cwd="/")
    faults.round()
    faults.inject()
    assert_no_crash(result)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert state(venv_dir) == before
    reqs.write_text("alpha==1.0\nbeta==2.0\n")
    outside.reset()
    result = subprocess.run([python, str(repo.root / "create_venv"), str(venv_dir), str(reqs)], env=env,
                            capture_output=True, text=True, timeout=120, preexec_fn=as_nobody, cwd="/")
    faults.round()
    assert result.returncode == 2, result.stderr  # bad input (whose venv it is), not a failed build
    line = assert_one_error(result.stderr)
    assert any(p in line for p in (str(venv_dir.parent), str(cache), "CROS_VENV_CACHE")), line
    assert "not writable by this user" in line or "CROS_VENV_CACHE" in line, line
    assert state(venv_dir) == before
    assert_nothing_outside(outside, faults)


def test_no_home_and_a_missing_tmpdir(faults: Faults, shared_cache: Path, tmp_path: Path) -> None:
    """HOME unset and TMPDIR naming a missing directory: a build that runs virtualenv (no
    template in the cache) and unpacks a new wheel works, and so do a no-op and a rebuild."""
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache, cache, symlinks=True, copy_function=os.link,
                    ignore=lambda d, names: ["skeletons"] if Path(d) == shared_cache else [])
    repo = tool_copy(tmp_path / "infra_virtualenv", cache)
    tiny_wheels(repo)
    bulky_wheel(repo, "lonely", files=50)
    env = repo.env(TMPDIR=str(base_dir() / "no-such-dir" / "tmp"))
    env.pop("HOME", None)
    venv_dir = workdir("disk-env") / "venv"
    reqs = repo.requirements("requirements.txt", "alpha==1.0\nbeta==1.0\nlonely==1.0\n")
    outside = watch(repo, venv_dir)
    for text, packages in (("alpha==1.0\nbeta==1.0\nlonely==1.0\n", {**OLD, "lonely": "1.0"}),
                           (None, {**OLD, "lonely": "1.0"}),
                           ("alpha==1.0\nbeta==2.0\n", {"alpha": "1.0", "beta": "2.0"})):
        if text is not None:
            reqs.write_text(text)
            outside.reset()
        out = repo.run(str(venv_dir), str(reqs), env=env, python=PYTHON)
        faults.round()
        assert_no_crash(out)
        assert_ok(out)
        assert_venv(venv_dir, packages, SCRIPTS, faults)
        assert trash(venv_dir) == []
        assert_nothing_outside(outside, faults)
    assert not (base_dir() / "no-such-dir").exists()


def test_a_venv_its_owner_made_read_only_is_bad_input(faults: Faults, shared_cache: Path) -> None:
    """User nobody builds a venv, then `chmod -R a-w` it; a change that needs a rebuild is
    exit 2 with one line saying it is not writable by this user (it was exit 1, "cannot
    move the old venv aside", with no hint: found by a break-it session), the venv as it was."""
    python = "/usr/bin/python3.11"
    if os.geteuid() != 0 or not os.access(python, os.X_OK):
        pytest.skip("needs root and a system python3.11 that nobody can run")
    home = workdir("disk-nobody-ro")
    cache = home / "cache"
    shutil.copytree(shared_cache, cache, symlinks=True, copy_function=shutil.copy2)
    repo = tool_copy(home / "infra_virtualenv", cache)
    tiny_wheels(repo)
    for p in [home, *home.rglob("*")]:
        os.lchown(p, 65534, 65534)
    reqs = repo.requirements("requirements.txt", "alpha==1.0\nbeta==1.0\n")
    venv_dir = home / "venv"
    env = repo.env()
    env.pop("HOME", None)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, str(repo.root / "create_venv"), str(venv_dir), str(reqs)], env=env,
                              capture_output=True, text=True, timeout=120, preexec_fn=as_nobody, cwd="/")

    assert_ok(run())
    subprocess.run(["chmod", "-R", "a-w", str(venv_dir)], check=True)
    try:
        reqs.write_text("alpha==1.0\nbeta==2.0\n")
        before = state(venv_dir)
        result = run()
        faults.round()
        faults.inject()
        assert_no_crash(result)
        assert result.returncode == 2, result.stderr
        line = assert_one_error(result.stderr, str(venv_dir))
        assert "not writable by this user" in line, line
        assert state(venv_dir) == before
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(venv_dir)], check=True)
