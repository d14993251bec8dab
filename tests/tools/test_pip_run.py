"""pip_run: why pip found or built no wheel, told from the ends of real pip runs."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import pytest

REAL_PIP = {  # the ends of real pip runs (pip 23.2, PyPI, 2026): what `why` reads
    "headers": ("      src/lxml/etree.c:275:12: fatal error: longintrepr.h: No such file or directory\n"
                "      compilation terminated.\n      error: Command '['gcc', '-c', 'src/lxml/etree.c']' returned "
                "non-zero exit status 1.\n      [end of output]\n  ERROR: Failed building wheel for lxml\n"
                "Failed to build lxml\nERROR: Failed to build one or more wheels\n"),
    "compiler": ("      building 'psutil._psutil_linux' extension\n      error: [Errno 2] No such file or directory: "
                 "'gcc'\n      [end of output]\n  note: This error originates from a subprocess, and is likely "
                 "not a problem with pip.\n  ERROR: Failed building wheel for psutil\n"),
    "dev-packages": ("      Error: Please make sure the libxml2 and libxslt development packages are installed.\n"
                     "      [end of output]\n"),
    "version": ("ERROR: Could not find a version that satisfies the requirement six==99.0 (from versions: 1.15.0, "
                "1.16.0, 1.17.0)\nERROR: No matching distribution found for six==99.0\n"),
    "project": ("ERROR: Could not find a version that satisfies the requirement nosuch==1.0 (from versions: none)\n"
                "ERROR: No matching distribution found for nosuch==1.0\n"),
    "unknown": ("      error: something odd\n      [end of output]\n  ERROR: Failed building wheel for x\n"
                "ERROR: Failed to build one or more wheels\n"),
    "nothing": "",
}
REASONS = {
    "headers": "building one from its sdist needs C headers that are not installed (longintrepr.h)",
    "compiler": "building one from its sdist needs a compiler that is not installed (gcc)",
    "dev-packages": "needs the libxml2 and libxslt development headers, which are not installed",
    "version": "no such version on the index (its newest: 1.15.0, 1.16.0, 1.17.0); pin one of its versions",
    "project": "x is not on the index (no such project, or no version for this Python); check the name",
    "unknown": "pip failed: error: something odd",
    "nothing": "pip failed: no output",
}


@pytest.mark.parametrize("case", sorted(REAL_PIP))
def test_why_pip_found_or_built_no_wheel(case: str) -> None:
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from cros_venv.reqlines import Pin
    from cros_venv.tools import pip_run, targets

    pin = Pin(canonicalize_name("x"), Version("1.0"), frozenset(), None, frozenset(), "r.txt:1")
    reason = pip_run.why(pin, targets.declared("3.11", "manylinux_2_17_x86_64"), REAL_PIP[case])
    assert REASONS[case] in reason and "\n" not in reason


def test_a_scratch_dir_is_removed_even_when_sigterm_comes_while_removing_it(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """vendor_wheels unwinds SIGTERM like Ctrl-C; one that came in the middle of the removal
    (or between mkdtemp and the `try`) left the directory behind (a CI flake)."""
    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    real = shutil.rmtree

    def rmtree(path: str, ignore_errors: bool = False) -> None:
        # To this thread: under pytest-xdist the process has other threads, which a signal to
        # the process may reach (vendor_wheels has one thread, and holds it there).
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # held while removing: delivered after
        real(path, ignore_errors=ignore_errors)

    from cros_venv.tools import pip_run

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(shutil, "rmtree", rmtree)  # pip_run calls shutil.rmtree
    old = signal.signal(signal.SIGTERM, interrupted)
    try:
        with pytest.raises(KeyboardInterrupt), pip_run.scratch_dir() as made:
            assert os.path.isdir(made) and os.path.basename(made).startswith("vendor_wheels-log-")
    finally:
        signal.signal(signal.SIGTERM, old)
    assert list(tmp_path.iterdir()) == []
