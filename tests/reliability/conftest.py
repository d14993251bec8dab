"""The fault-injection suite's bookkeeping: every test counts the rounds it ran, the faults it
injected, the broken venvs it saw (a venv with a marker that does not work) and the files
written outside DIR, DIR.lock, the trash and the cache. Under `--slow` the totals are written
to docs/RELIABILITY.md at the end of the session.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from tests.conftest import REPO, ToolRepo

if TYPE_CHECKING:
    from tests.reliability._common_b import Runner


@dataclass
class Faults:
    """Counters for one test; summed per area into docs/RELIABILITY.md by a --slow run."""

    area: str
    rounds: int = 0
    injected: int = 0
    broken: int = 0  # venvs with a marker that did not work: must stay 0
    outside: int = 0  # files written outside DIR, DIR.lock, trash and cache: must stay 0
    notes: list[str] = field(default_factory=list)

    def round(self, n: int = 1) -> None:
        self.rounds += n

    def inject(self, n: int = 1) -> None:
        self.injected += n


@pytest.fixture
def runner(wheelhouse: ToolRepo, tmp_path: Path) -> Runner:
    """create_venv runs of the wheelhouse's tool checkout, checked for crashes."""
    from tests.reliability._common_b import Runner  # it uses Faults, from here

    return Runner(wheelhouse, tmp_path)


@pytest.fixture
def reqs(wheelhouse: ToolRepo) -> Path:
    """The base requirements (alpha and beta) in the wheelhouse's checkout."""
    from tests.reliability._common_b import BASE_REQS

    return wheelhouse.requirements("requirements.txt", BASE_REQS)


AREAS = """
What each area does (`tests/reliability/test_AREA.py`):
- **kills**: SIGKILL at random moments of a build (50 rounds; the process group, or the
  parent alone leaving its workers), SIGINT once and twice, SIGTERM, and every signal right
  after each step of the build (`CROS_VENV_TEST_KILL`); then the next run must work.
- **concurrency**: 8 creators released at once, racing requirement sets, waiters outliving a
  killed builder, two checkouts sharing one cache, `--prune-cache` during builds, a
  SIGSTOPped lock holder (exit 3).
- **disk**: a full disk mid-build and exactly at the marker (tmpfs in a mount namespace),
  read-only venv, parent and cache (bind mounts), another user, HOME unset, TMPDIR missing.
- **wheels**: truncated, empty, CRC-corrupt, traversal, symlink and duplicate members, a
  lying zip bomb, lying METADATA, wheels changed in place (size and mtime restored), tampered
  against `--hash`, edits through a venv's hard links, damaged cache entries.
- **paths**: spaces, unicode, a leading `-`, `..`, symlinked parents, DIR a symlink or a
  file, missing parents, shebangs over 127 bytes, planted symlinks (lock, marker, trash),
  requirements from pipes and FIFOs, moved, copied and damaged venvs.
- **environment**: hostile PIP_*, PYTHON* and VIRTUALENV_* variables and config files, a
  fake `python3` first on PATH, umask 077, LC_ALL=C, HOME unset, a bad TMPDIR, non-Python
  `--python`, bad lock timeouts, no network at all.
"""

_TOTALS: dict[str, Faults] = {}
_STARTED = time.time()


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Iterator[Faults]:
    """Count what this test did; the area is the test module's name (test_kills -> kills)."""
    area = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    f = Faults(area)
    yield f
    total = _TOTALS.setdefault(area, Faults(area))
    total.rounds += f.rounds
    total.injected += f.injected
    total.broken += f.broken
    total.outside += f.outside
    assert f.broken == 0, f"{f.broken} broken venvs"
    assert f.outside == 0, f"{f.outside} files written outside"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.config.getoption("--slow") or not _TOTALS:
        return
    rows = [f"| {t.area} | {t.rounds} | {t.injected} | {t.broken} | {t.outside} |" for t in sorted(
        _TOTALS.values(), key=lambda t: t.area)]
    total = Faults("all", *(sum(getattr(t, k) for t in _TOTALS.values()) for k in (
        "rounds", "injected", "broken", "outside")))
    passed = session.testscollected - session.testsfailed
    text = f"""# Reliability: the fault-injection suite

`bin/run_tests --slow tests/reliability` runs the long loops of `tests/reliability/` (the
default `bin/run_tests` runs a short version of each) and rewrites this file. A round is one
create_venv run under a fault; a broken venv is one that has its marker but does not work;
a file outside is one written anywhere but DIR, `DIR.lock`, the trash beside DIR and the cache.

Last run: {time.strftime("%Y-%m-%d %H:%M", time.localtime(_STARTED))}, {time.time() - _STARTED:.0f} s,
Python {platform.python_version()} ({os.path.realpath(sys.executable)}), {os.cpu_count()} cores,
{passed} of {session.testscollected} tests passed (exit status {int(exitstatus)}).

| area | rounds | faults injected | broken venvs | files written outside |
|---|---|---|---|---|
{chr(10).join(rows)}
| **all** | **{total.rounds}** | **{total.injected}** | **{total.broken}** | **{total.outside}** |
{AREAS}"""
    (REPO / "docs").mkdir(exist_ok=True)
    (REPO / "docs" / "RELIABILITY.md").write_text(text)
