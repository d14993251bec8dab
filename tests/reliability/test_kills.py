"""Kills: SIGKILL at random points of a build (the whole process group, or the parent only,
orphaning its workers), SIGINT once and twice, SIGTERM, and a signal right after each step of
the pipeline (CROS_VENV_TEST_KILL=STEP[:SIG]) while an existing venv is rebuilt.

After every fault: invariant 1 (a venv with a marker works) and 3 (nothing written outside);
the next run without a fault exits 0 with exactly the requested packages (2) and leaves no
trash (5); SIGINT/SIGTERM put the old venv back (4). See /work/CONTRACT.md.

The tests share one tool checkout and one DIR (module scope): each starts from whatever
venv the previous one left, which is itself a realistic start.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cros_venv.build import STEPS
from tests.conftest import ToolRepo, snapshot
from tests.reliability.conftest import Faults
from tests.reliability.helpers import (
    Outside,
    assert_no_crash,
    assert_nothing_outside,
    assert_ok,
    assert_venv,
    bulky_wheel,
    check_marked,
    finish,
    has_marker,
    marked_packages,
    reap_group,
    start,
    tiny_wheels,
    tool_copy,
    trash,
    wait_group_gone,
    watch,
    workdir,
)

pytestmark = pytest.mark.e2e

SCRIPTS = {"alpha-cli": "alpha says hi\n"}
OLD = {"alpha": "1.0", "beta": "1.0"}
NEW = {"alpha": "1.0", "beta": "2.0"}


@dataclass
class Kit:
    repo: ToolRepo
    venv_dir: Path
    reqs: Path

    def write(self, packages: dict[str, str]) -> None:
        text = "".join(f"{name}=={version}\n" for name, version in packages.items())
        if not self.reqs.exists() or self.reqs.read_text() != text:
            self.reqs.write_text(text)

    def watch(self) -> Outside:
        return watch(self.repo, self.venv_dir)

    def held(self) -> dict[str, str] | None:
        """The set the marker names, if it is readable."""
        try:
            return marked_packages(self.venv_dir) if has_marker(self.venv_dir) else None
        except Exception:
            return None

    def ensure(self, packages: dict[str, str]) -> None:
        """DIR holds `packages` (a no-op when the previous test left it so)."""
        self.write(packages)
        out = self.repo.run(str(self.venv_dir), str(self.reqs))
        assert_no_crash(out)
        assert_ok(out)

    def clean_run(self, packages: dict[str, str], faults: Faults, outside: Outside | None = None) -> None:
        """Invariants 2 and 5 (and 3, given `outside`): a run without a fault exits 0, the venv
        works with exactly `packages`, and no trash is left beside it."""
        self.write(packages)
        out = self.repo.run(str(self.venv_dir), str(self.reqs))
        assert_no_crash(out)
        assert_ok(out)
        assert out.stderr == ""
        assert_venv(self.venv_dir, packages, SCRIPTS if "alpha" in packages else None, faults)
        left = trash(self.venv_dir)
        assert left == [], f"the run after the fault left trash beside {self.venv_dir}: {left}"
        if outside is not None:
            assert_nothing_outside(outside, faults)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Kit:
    repo = tool_copy(tmp_path_factory.mktemp("kills") / "infra_virtualenv", shared_cache)
    tiny_wheels(repo)
    return Kit(repo, workdir("kills") / "venv", repo.root / "requirements.txt")



def seeded() -> tuple[int, random.Random]:
    """A random seed, printed (a failing round can be replayed), and its generator."""
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"seed {seed}")
    return seed, random.Random(seed)

def test_random_sigkill(kit: Kit, faults: Faults, slow: bool) -> None:
    """SIGKILL 0-0.6 s into a rebuild that has a new wheel to unpack (so workers run), to the
    whole process group (even rounds) or only to the parent (odd rounds: its forked workers
    live on as orphans while the next run builds).
    """
    seed, rng = seeded()
    current = kit.held() or OLD
    kit.ensure(current)
    outside = kit.watch()
    for i in range(50 if slow else 5):
        target = "parent" if i % 2 else "group"
        name = f"bulk{seed}x{i}"
        bulky_wheel(kit.repo, name)  # unique content: not in the cache, so this build unpacks it
        want = {"alpha": "1.0", "beta": "2.0" if current.get("beta") == "1.0" else "1.0", name: "1.0"}
        kit.write(want)
        outside.reset()
        proc = start(kit.repo, str(kit.venv_dir), str(kit.reqs))
        killed = False
        try:
            proc.wait(timeout=rng.uniform(0, 0.6))
        except subprocess.TimeoutExpired:
            if target == "group":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            killed = True
            faults.inject()
        faults.round()
        try:
            rc, err = finish(proc)
            assert_no_crash((rc, err))
            assert rc in ((0, -signal.SIGKILL) if killed else (0,)), f"round {i} ({target}): {err}"
            check_marked(kit.venv_dir, [current, want], faults, SCRIPTS)  # invariant 1
            assert_nothing_outside(outside, faults)  # invariant 3
            kit.clean_run(want, faults, outside)  # invariants 2, 5 (orphans may still be running)
        finally:
            reap_group(proc)
        current = want


def signal_rounds(kit: Kit, faults: Faults, rounds: int, sig: signal.Signals, times: int, code: int) -> None:
    """Rebuilds interrupted at a random point (0.1-0.5 s in: Python's own start-up, where a
    Ctrl-C can only give a traceback, is over) by `sig` (`times` times, 0.05-0.2 s apart): to the
    whole process group for SIGINT (as a terminal's Ctrl-C), to create_venv alone for
    SIGTERM (as `kill PID`). Exit `code` (or death by the signal), or 0 if it had finished;
    with one signal the old venv is back as it was (or, once its marker was written, the new
    one is complete); with two, at least invariant 1. Then a clean run.
    """
    seed, rng = seeded()
    current = kit.held() or OLD
    kit.ensure(current)
    outside = kit.watch()
    for i in range(rounds):
        name = f"bulk{seed}x{i}"
        bulky_wheel(kit.repo, name)
        want = {"alpha": "1.0", "beta": "2.0" if current.get("beta") == "1.0" else "1.0", name: "1.0"}
        kit.write(want)
        before = snapshot(kit.venv_dir)
        outside.reset()
        proc = start(kit.repo, str(kit.venv_dir), str(kit.reqs))
        sent = 0
        try:
            try:
                proc.wait(timeout=rng.uniform(0.1, 0.5))
            except subprocess.TimeoutExpired:
                for n in range(times):
                    if n:
                        time.sleep(rng.uniform(0.05, 0.2))
                    if proc.poll() is not None:
                        break
                    (os.killpg if sig == signal.SIGINT else os.kill)(proc.pid, sig)
                    sent += 1
                    faults.inject()
            faults.round()
            rc, err = finish(proc)
            assert_no_crash((rc, err))
            if not sent:
                assert rc == 0, err
            else:  # exit 130/143, or death by the signal (which a shell reports as the same)
                assert rc in (0, code, -sig), f"exit {rc} after {sig.name}, not {code}: {err}"
            held = check_marked(kit.venv_dir, [current, want], faults, SCRIPTS)  # invariant 1
            if sent and times == 1 and rc != 0 and held != want:
                # Invariant 4: the old venv is back exactly as it was.
                assert held == current, f"after {sig.name} (exit {rc}) the old venv is gone: {err.strip()}"
                assert snapshot(kit.venv_dir) == before, f"after {sig.name} the old venv is not as it was"
            assert_nothing_outside(outside, faults)
            kit.clean_run(want, faults, outside)
        finally:
            reap_group(proc)
        current = want


@pytest.mark.parametrize("times", [1, 2], ids=["once", "twice"])
def test_random_sigint(kit: Kit, faults: Faults, slow: bool, times: int) -> None:
    signal_rounds(kit, faults, 20 if slow else 1, signal.SIGINT, times, 130)


def test_random_sigterm(kit: Kit, faults: Faults, slow: bool) -> None:
    signal_rounds(kit, faults, 20 if slow else 1, signal.SIGTERM, 1, 143)


HOOKS = [
    *(pytest.param(step, "KILL", id=f"{step}-KILL") for step in STEPS),
    *(pytest.param(step, "INT", id=f"{step}-INT") for step in ("wiped", "marked")),
    *(pytest.param(step, "TERM", id=f"{step}-TERM") for step in ("installed",)),
]
# Exit 130/143, or death by the signal (re-raised after putting the old venv back, as Unix
# tools do): a shell's $? is 130/143 for both.
CODES = {"KILL": (-signal.SIGKILL,), "INT": (130, -signal.SIGINT), "TERM": (143, -signal.SIGTERM)}


@pytest.mark.parametrize(("step", "sig"), HOOKS)
def test_signal_after_each_step_of_a_rebuild(kit: Kit, faults: Faults, step: str, sig: str) -> None:
    """An existing venv is rebuilt with changed requirements and create_venv gets `sig` right
    after `step`. KILL: invariant 1 now; the next run builds the new venv and removes the
    trash (even when it finds the venv up to date, after "marked"). INT/TERM: exit 130/143
    and the old venv back exactly as it was (or, from "marked" on, the new one complete).
    """
    old = kit.held() if kit.held() in (OLD, NEW) else OLD
    assert old is not None
    new = NEW if old == OLD else OLD
    kit.ensure(old)
    before = snapshot(kit.venv_dir)
    kit.write(new)
    outside = kit.watch()
    out = kit.repo.run(str(kit.venv_dir), str(kit.reqs), env=kit.repo.env(CROS_VENV_TEST_KILL=f"{step}:{sig}"))
    faults.round()
    faults.inject()
    assert_no_crash(out)
    assert out.returncode in CODES[sig], f"exit {out.returncode}, not {CODES[sig]} after {step}:{sig}: {out.stderr}"
    held = check_marked(kit.venv_dir, [old, new], faults, SCRIPTS)  # invariant 1
    assert_nothing_outside(outside, faults)  # invariant 3
    if sig != "KILL":
        if STEPS.index(step) >= STEPS.index("marked"):
            assert held == new, f"the marker was written before {sig}, yet the venv is {held}"
        else:
            assert held == old, f"{sig} after {step}: the old venv was not put back ({out.stderr.strip()})"
            assert snapshot(kit.venv_dir) == before, f"{sig} after {step}: the old venv is not as it was"
    left = trash(kit.venv_dir)
    kit.clean_run(new, faults, outside)  # invariants 2 and 5
    if step == "marked" and sig == "KILL":
        assert left, "a kill right after the marker should have left the old venv in the trash"


def test_kill_the_parent_while_its_workers_unpack(kit: Kit, faults: Faults) -> None:
    """SIGKILL to create_venv alone right after it took the lock for a build of a new DIR
    with a big new wheel: its forked workers are orphaned mid-unpack. They must not keep the
    next run from building, and (DESIGN.md: a worker leaves when its pipe closes) must go
    away; the next run builds the venv.
    """
    venv_dir = workdir("kills-orphans") / "venv"
    want = {"alpha": "1.0", "beta": "1.0", "huge": "1.0"}
    bulky_wheel(kit.repo, "huge", files=1000)
    kit.write(want)
    outside = watch(kit.repo, venv_dir)
    proc = start(kit.repo, str(venv_dir), str(kit.reqs), env=kit.repo.env(CROS_VENV_TEST_KILL="locked"))
    try:
        rc, err = finish(proc)
        faults.round()
        faults.inject()
        assert_no_crash((rc, err))
        assert rc == -signal.SIGKILL, err
        assert not has_marker(venv_dir)
        assert_nothing_outside(outside, faults)
        Kit(kit.repo, venv_dir, kit.reqs).clean_run(want, faults, outside)
        left = wait_group_gone(proc.pid)
        assert not left, f"orphaned workers {left} of a killed create_venv are still running"
    finally:
        reap_group(proc)
