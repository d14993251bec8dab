"""Concurrency: 8 creators on one DIR, racing requirement sets, two checkouts sharing one
cache, `--prune-cache` during builds, and a stopped holder of DIR.lock (invariant 8 of
/work/CONTRACT.md, with 1-3 and 5 after every round).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ToolRepo, WheelSpec, snapshot
from tests.reliability.conftest import Faults
from tests.reliability.helpers import (
    assert_no_crash,
    assert_nothing_outside,
    assert_ok,
    assert_one_error,
    assert_venv,
    base_dir,
    bulky_wheel,
    finish,
    gate,
    marked_packages,
    marker,
    reap_group,
    start,
    tiny_wheels,
    tool_copy,
    trash,
    wait_stopped,
    waiters,
    watch,
    workdir,
)

pytestmark = pytest.mark.e2e

SCRIPTS = {"alpha-cli": "alpha says hi\n"}
SETS = [
    {"alpha": "1.0", "beta": "1.0"},
    {"beta": "2.0"},
    {"alpha": "1.0", "beta": "2.0", "crowd": "1.0"},
]


def scripts_for(packages: dict[str, str]) -> dict[str, str] | None:
    return SCRIPTS if "alpha" in packages else None


@dataclass
class Kit:
    repo: ToolRepo
    reqs: list[Path]  # one requirements file per entry of SETS


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Kit:
    repo = tool_copy(tmp_path_factory.mktemp("concurrency") / "infra_virtualenv", shared_cache)
    tiny_wheels(repo)
    bulky_wheel(repo, "crowd")
    reqs = []
    for n, packages in enumerate(SETS):
        reqs.append(repo.requirements(f"set{n}.txt", "".join(f"{k}=={v}\n" for k, v in packages.items())))
    return Kit(repo, reqs)


def race(repo: ToolRepo, venv_dir: Path, reqs: list[Path], extra: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    """Start one create_venv per entry of `reqs` behind a gate, release them together, and
    return (exit code, stderr) of each."""
    gate_file = base_dir() / f".gate-{os.urandom(4).hex()}"
    procs = []
    try:
        with gate(gate_file) as prefix:
            procs = [start(repo, *extra, str(venv_dir), str(r), prefix=prefix) for r in reqs]
            waiters(gate_file, len(procs))
        return [finish(p) for p in procs]
    finally:
        for p in procs:
            reap_group(p)
        gate_file.unlink()


def test_eight_creators_on_one_dir(kit: Kit, faults: Faults, slow: bool) -> None:
    """8 creators released at once: one builds, all exit 0, one working venv; on a new DIR
    (even rounds) and on an existing venv whose requirements changed (odd rounds).
    """
    repo = kit.repo
    venv_dir = Path()
    for i in range(12 if slow else 1):
        n = (i // 2) % len(SETS)
        if i % 2 == 0:
            venv_dir = workdir("concurrency") / "venv"  # a new DIR
        else:
            n = (n + 1) % len(SETS)  # the venv of the previous round, other requirements
        outside = watch(repo, venv_dir)
        outs = race(repo, venv_dir, [kit.reqs[n]] * 8, ("-v",))
        faults.round(8)
        faults.inject()
        for result in outs:
            assert_no_crash(result)
        assert [rc for rc, _ in outs] == [0] * 8, outs
        builders = sum(f"building {venv_dir}" in err for _, err in outs)
        assert builders == 1, f"{builders} of 8 creators built {venv_dir}"
        assert_venv(venv_dir, SETS[n], scripts_for(SETS[n]), faults)
        assert trash(venv_dir) == []
        assert_nothing_outside(outside, faults)


def test_waiters_outlive_a_killed_builder(kit: Kit, faults: Faults) -> None:
    """A rebuild stops itself mid-build holding DIR.lock (CROS_VENV_TEST_KILL=installed:STOP:
    a partial new venv in DIR, the old one in the trash) while 3 more creators of the same
    requirements wait for the lock; then the builder is SIGKILLed. The lock dies with it:
    one waiter builds, all 3 exit 0, one working venv, no trash left."""
    repo = kit.repo
    venv_dir = workdir("concurrency") / "venv"
    assert_ok(repo.run(str(venv_dir), str(kit.reqs[0])))
    outside = watch(repo, venv_dir)
    first = start(repo, str(venv_dir), str(kit.reqs[2]), env=repo.env(CROS_VENV_TEST_KILL="installed:STOP"))
    others: list[subprocess.Popen[str]] = []
    try:
        assert wait_stopped(first.pid), "the builder did not stop after `installed`"
        others = [start(repo, "-v", str(venv_dir), str(kit.reqs[2])) for _ in range(3)]
        time.sleep(0.3)  # let them reach the lock (the outcome must not depend on it)
        os.killpg(first.pid, signal.SIGKILL)
        faults.inject()
        rc, err = finish(first)
        assert rc == -signal.SIGKILL, err
        outs = [finish(p) for p in others]
        faults.round(3)
    finally:
        for p in [first, *others]:
            reap_group(p)
    for result in outs:
        assert_no_crash(result)
    assert [rc for rc, _ in outs] == [0] * 3, outs
    builders = sum(f"building {venv_dir}" in e for _, e in outs)
    assert builders == 1, f"{builders} of the 3 waiters built {venv_dir}"
    assert_venv(venv_dir, SETS[2], scripts_for(SETS[2]), faults)
    assert trash(venv_dir) == []
    assert_nothing_outside(outside, faults)


def test_racing_requirement_sets(kit: Kit, faults: Faults, slow: bool) -> None:
    """3 requirement sets x 3 creators each on one DIR: all exit 0 and the venv is exactly one
    of the sets (marker, site-packages and imports agree), never a mix."""
    repo = kit.repo
    for i in range(8 if slow else 1):
        venv_dir = workdir("concurrency") / "venv"
        if i % 2 == 0:  # start from an existing venv of one of the sets (odd rounds: a new DIR)
            out = repo.run(str(venv_dir), str(kit.reqs[i % len(SETS)]))
            assert_ok(out)
        outside = watch(repo, venv_dir)
        outs = race(repo, venv_dir, kit.reqs * 3)
        faults.round(9)
        faults.inject()
        for result in outs:
            assert_no_crash(result)
        assert [rc for rc, _ in outs] == [0] * 9, outs
        held = marked_packages(venv_dir)
        if held not in SETS:
            faults.broken += 1
        assert held in SETS, f"the venv holds {held}, none of the raced sets"
        assert_venv(venv_dir, held, scripts_for(held), faults)  # exactly that set on disk too
        assert trash(venv_dir) == []
        assert_nothing_outside(outside, faults)


def omega(repo: ToolRepo, who: str, mtime: int) -> Path:
    """omega 1.0 whose content says which checkout it came from; the same size and mtime in
    every checkout, so only its bytes tell them apart."""
    wheel = repo.add_wheel(WheelSpec("omega", "1.0", files={"omega.py": f"VERSION = '1.0'\nWHO = {who!r}\n".encode()}))
    os.utime(wheel, ns=(mtime, mtime))
    return wheel


def assert_from_checkout(venv_dir: Path, repo: ToolRepo, who: str, faults: Faults) -> None:
    """The venv is built from `repo`'s omega: its file content, pip.conf's find-links and the
    marker's built.wheel_dir all name that checkout."""
    assert_venv(venv_dir, {"omega": "1.0"}, None, faults)
    site = next((venv_dir / "lib").glob("python*/site-packages"))
    assert (site / "omega.py").read_text() == f"VERSION = '1.0'\nWHO = {who!r}\n", f"{venv_dir} has the other omega"
    conf = (venv_dir / "pip.conf").read_text()
    links = conf.split("find-links", 1)[1].split()
    assert str(repo.wheels) in links, conf
    assert not any(p.endswith("pip_packages") and p != str(repo.wheels) for p in links), conf
    data = marker(venv_dir)
    assert data is not None and data["built"]["wheel_dir"] == str(repo.wheels), data


def test_two_checkouts_share_one_cache(tmp_path: Path, shared_cache: Path, faults: Faults, slow: bool) -> None:
    """Two checkouts of the tool, one CROS_VENV_CACHE, and in each an omega-1.0 wheel of the
    same size and mtime but other bytes. Building alternately (each its own DIR, and one DIR
    they take turns on, from one requirements file outside both): every venv holds the
    omega of the checkout whose create_venv built it."""
    mtime = 1_600_000_000_000_000_000
    a = tool_copy(tmp_path / "a" / "infra_virtualenv", shared_cache)
    b = tool_copy(tmp_path / "b" / "infra_virtualenv", shared_cache)
    wa, wb = omega(a, "A", mtime), omega(b, "B", mtime)
    assert wa.stat().st_size == wb.stat().st_size and wa.read_bytes() != wb.read_bytes()
    dep = workdir("concurrency-checkouts")
    reqs = dep / "requirements.txt"
    reqs.write_text("omega==1.0\n")
    dirs = {"A": dep / "venv-a", "B": dep / "venv-b", "shared": dep / "venv"}
    repos = {"A": a, "B": b}
    # B's first build is of a new DIR right after A resolved the same requirements file;
    # then B takes over the DIR A built.
    turns = [("A", "shared"), ("B", "B"), ("B", "shared")]
    if slow:
        turns += [("A", "A"), ("A", "shared"), ("B", "shared"), ("B", "B"), ("A", "shared"), ("A", "A")] * 3
    for who, where in turns:
        repo, venv_dir = repos[who], dirs[where]
        outside = watch(repo, venv_dir, roots=[a.root, b.root])
        out = repo.run(str(venv_dir), str(reqs))
        faults.round()
        assert_no_crash(out)
        assert_ok(out)
        assert_from_checkout(venv_dir, repo, who, faults)
        assert trash(venv_dir) == []
        assert_nothing_outside(outside, faults)
    if not slow:
        return
    # Both at once, each on its own DIR.
    procs = [start(repo, str(dirs[who]), str(reqs)) for who, repo in (("B", b), ("A", a))]
    try:
        outs = [finish(p) for p in procs]
    finally:
        for p in procs:
            reap_group(p)
    assert [rc for rc, _ in outs] == [0, 0], outs
    assert_from_checkout(dirs["A"], a, "A", faults)
    assert_from_checkout(dirs["B"], b, "B", faults)


def test_checkouts_are_left_as_they_were(tmp_path: Path, shared_cache: Path, faults: Faults) -> None:
    """Invariant 3 for the tool's own checkout: a first build, a no-op and a rebuild write
    nothing into it but Python's bytecode of the tool itself (`cros_venv/__pycache__`,
    git-ignored; a read-only checkout works without it), as for any Python program."""
    repo = tool_copy(tmp_path / "infra_virtualenv", shared_cache)
    tiny_wheels(repo)
    dep = workdir("concurrency-untouched")
    reqs = dep / "requirements.txt"
    before = snapshot(repo.root)
    for text in ("beta==1.0\n", "beta==1.0\n", "beta==2.0\n"):
        reqs.write_text(text)
        out = repo.run(str(dep / "venv"), str(reqs))
        faults.round()
        assert_no_crash(out)
        assert_ok(out)
    after = snapshot(repo.root)
    bytecode = {"cros_venv", "cros_venv/__pycache__"}
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p)
                     and p not in bytecode and not p.startswith("cros_venv/__pycache__/"))
    assert any(p.startswith("cros_venv/__pycache__/") for p in after)  # the exemption is real
    faults.outside += len(changed)
    assert not changed, f"create_venv wrote into its own checkout: {changed}"


def test_prune_cache_during_builds(tmp_path: Path, shared_cache: Path, faults: Faults, slow: bool) -> None:
    """`create_venv --prune-cache --max-age 0` in a loop while builds run (new DIRs and
    rebuilds, two at a time): every build and every prune exits 0, every venv works."""
    # A copy of the shared cache (hard links: its template and resolutions are reused), since
    # pruning the shared one would make every later test's build cold.
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache, cache, symlinks=True, copy_function=os.link)
    repo = tool_copy(tmp_path / "infra_virtualenv", cache)
    tiny_wheels(repo)
    reqs = [repo.requirements(f"set{n}.txt", "".join(f"{k}=={v}\n" for k, v in s.items()))
            for n, s in enumerate(SETS[:2])]
    stop = threading.Event()
    prunes: list[subprocess.CompletedProcess[str]] = []

    def prune_loop() -> None:
        while not stop.is_set():
            prunes.append(repo.run("--prune-cache", "--max-age", "0"))

    pruner = threading.Thread(target=prune_loop)
    pruner.start()
    try:
        base = workdir("concurrency-prune")
        for i in range(10 if slow else 1):
            dirs = [base / "venv", base / f"other{i}"]  # a rebuild (from the second round on), a new DIR
            procs = [start(repo, str(d), str(reqs[(i + k) % 2])) for k, d in enumerate(dirs)]
            try:
                outs = [finish(p) for p in procs]
            finally:
                for p in procs:
                    reap_group(p)
            faults.round(2)
            faults.inject()
            for result in outs:
                assert_no_crash(result)
            assert [rc for rc, _ in outs] == [0, 0], outs
            for k, d in enumerate(dirs):
                want = SETS[(i + k) % 2]
                assert_venv(d, want, scripts_for(want), faults)
    finally:
        stop.set()
        pruner.join()
    assert prunes, "no prune ran"
    for out in prunes:
        assert_no_crash(out)
        assert_ok(out)
    removed = [int(m.group(1)) for out in prunes for m in [re.search(r"removed (\d+)", out.stderr)] if m]
    assert sum(removed) > 0, "no prune removed anything: the loop did not overlap the builds"


HOLDER = r"""
import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\n".encode())
print("held", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
signal.pause()
"""


@pytest.mark.parametrize("holder", ["helper", "create_venv"])
def test_a_stopped_lock_holder(kit: Kit, faults: Faults, holder: str) -> None:
    """DIR.lock held by a stopped process (a helper holding the flock, or a create_venv that
    stopped itself right after locking, CROS_VENV_TEST_KILL=locked:STOP): another create_venv
    with --lock-timeout 1 exits 3 with one line naming DIR.lock and the holder's pid. After
    SIGKILL (the helper) or SIGCONT (the stopped build finishes), the next run works."""
    repo = kit.repo
    venv_dir = workdir("concurrency") / "venv"
    out = repo.run(str(venv_dir), str(kit.reqs[0]))
    assert_ok(out)
    lock = Path(str(venv_dir) + ".lock")
    outside = watch(repo, venv_dir)
    if holder == "helper":
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    else:
        proc = start(repo, str(venv_dir), str(kit.reqs[1]), env=repo.env(CROS_VENV_TEST_KILL="locked:STOP"))
    try:
        assert wait_stopped(proc.pid), "the lock holder did not stop"
        faults.inject()
        before = snapshot(venv_dir)
        waiting = repo.run("--lock-timeout", "1", str(venv_dir), str(kit.reqs[2]))
        faults.round()
        assert waiting.returncode == 3, waiting.stderr
        assert_one_error(waiting.stderr, str(lock), str(proc.pid))
        assert snapshot(venv_dir) == before  # the waiter changed nothing
        if holder == "create_venv":
            os.kill(proc.pid, signal.SIGCONT)
            rc, err = finish(proc)
            assert_no_crash((rc, err))
            assert rc == 0, err
            want = 1  # the next run asks for what the resumed build made
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            want = 2
        out = repo.run("--lock-timeout", "30", str(venv_dir), str(kit.reqs[want]))
        assert_no_crash(out)
        assert_ok(out)
        assert_venv(venv_dir, SETS[want], scripts_for(SETS[want]), faults)
        assert trash(venv_dir) == []
        assert_nothing_outside(outside, faults)
    finally:
        reap_group(proc)
