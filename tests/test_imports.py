"""What the no-op check and a warm build import, measured with `python -X importtime`.

Starting Python costs ~10 ms and every module imported on these paths adds to each run of
every wrapper script. The lists below are the whole of it: a module new on a path fails
the test, which says what it costs; a module no longer imported fails it too (take it out
of the list, so the list stays the truth). Standard-library modules are listed by their
top-level name; what they import in turn, on the interpreter running the tests, is
allowed with them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ToolRepo

# The no-op check (fastpath.up_to_date, from __main__): nothing beyond the interpreter's
# start but these.
NOOP_OURS = {"cros_venv", "cros_venv.__main__", "cros_venv.fastpath", "cros_venv.marker", "cros_venv.names",
             "cros_venv.locate", "cros_venv.fs"}
# Nothing from the standard library. Not os (cros_venv/fs.py does its part on the builtin
# posix module: 0.9-2.4 ms saved), not __future__ (annotations are quoted: 0.1-0.3 ms), not
# a sha256 module (a small requirements file's bytes are in the key: ~0.3 ms, a dlopen).
NOOP_STDLIB: set[str] = set()

# A warm build: every wheel unpacked and planned, the skeleton template made; a new DIR.
WARM_OURS = NOOP_OURS | {
    "cros_venv.cli", "cros_venv.errors", "cros_venv.build", "cros_venv.context", "cros_venv.steps",
    "cros_venv.prefetch", "cros_venv.cache", "cros_venv.unpacker", "cros_venv.toolchain", "cros_venv.venv",
    "cros_venv.replace", "cros_venv.install", "cros_venv.sources", "cros_venv.digest", "cros_venv.lock", "cros_venv.spec", "cros_venv.resolution",
    "cros_venv.skeleton", "cros_venv.install_all", "cros_venv.procs",
    "cros_venv.lite", "cros_venv.store",
    "cros_venv.extract",  # for its MANIFEST name and the unpacking a cold build does (~1 ms: struct, zlib)
}
# Not signal, typing, contextlib, json, re, csv, shutil or base64: with what they import in
# turn (enum, functools, collections, ...) they cost ~14 ms, more than the rest of a warm
# build's imports together (cros_venv/lite.py, store.py, marker.dumps, install.record_row).
WARM_STDLIB = NOOP_STDLIB | {"__future__", "_sha2", "_sha256",  # _sha2 (3.12+) or _sha256: sha256 without hashlib
                            "os", "time", "errno", "fcntl", "stat", "select", "struct", "zlib", "binascii", "marshal", "_operator"}


def _imported(argv: list[str], env: dict[str, str] | None = None) -> dict[str, int]:
    """Every module `argv` (a Python command line) imports, with its cumulative µs."""
    result = subprocess.run([PYTHON, "-X", "importtime", *argv], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            found[name.strip()] = int(cumulative)
    return found


@pytest.fixture(scope="module")
def startup() -> set[str]:
    return set(_imported(["-I", "-S", "-c", "pass"]))


def _with_dependencies(stdlib: set[str], startup: set[str]) -> set[str]:
    if not stdlib:
        return set()
    code = f"for m in {sorted(stdlib)!r}:\n try: __import__(m)\n except ImportError: pass"  # _sha2 is 3.12+
    return set(_imported(["-I", "-S", "-c", code])) - startup


def _compare(found: dict[str, int], ours: set[str], stdlib: set[str], startup: set[str], path: str) -> None:
    allowed = ours | _with_dependencies(stdlib, startup) | startup
    new = {m: us for m, us in found.items() if m not in allowed and m.split(".")[0] not in stdlib}
    assert not new, (f"new on the {path} path: " + ", ".join(f"{m} ({us / 1000:.1f} ms)" for m, us in
                                                             sorted(new.items(), key=lambda kv: -kv[1]))
                     + "; import it where it is used, or add it to the list in tests/test_imports.py saying why")
    tops = {m.split(".")[0] for m in found}
    gone = sorted({m for m in ours if m not in found} | {m for m in stdlib if m not in tops and m[0] != "_"})
    assert not gone, f"no longer imported on the {path} path: {gone}; take them out of tests/test_imports.py"


def test_the_no_op_check_imports_only_its_own_modules(built: tuple[ToolRepo, Path, Path], startup: set[str]) -> None:
    repo, venv_dir, reqs = built
    found = _imported(["-I", "-S", str(repo.root / "create_venv"), str(venv_dir), str(reqs)], env=repo.env())
    _compare(found, NOOP_OURS, NOOP_STDLIB, startup, "no-op")


def test_a_warm_build_imports_only_what_it_uses(built: tuple[ToolRepo, Path, Path], startup: set[str]) -> None:
    repo, _, reqs = built
    found = _imported(["-I", "-S", str(repo.root / "create_venv"), str(repo.root.parent / "warm"), str(reqs)],
                      env=repo.env())
    assert "virtualenv" not in found and "packaging" not in found  # it was warm: nothing made or resolved
    _compare(found, WARM_OURS, WARM_STDLIB, startup, "warm build")
