"""locate: the interpreter a build is for, by its real path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cros_venv import locate


def test_resolve_python_searches_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "mypython"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"/nonexistent:{tmp_path}")
    assert locate.resolve_python("mypython") == str(exe)
    assert locate.resolve_python(None) == os.path.realpath(sys.executable)


def test_a_python_wrapper_script_is_resolved_to_the_binary_it_runs(tmp_path: Path) -> None:
    """pyenv's shims and other wrappers: the caches key on the binary, asked for once per
    run; a process the wrapper leaves behind (holding its stdout) does not keep us waiting.
    """
    real = os.path.realpath(sys.executable)
    wrapper = tmp_path / "python3"
    wrapper.write_text(f"#!/bin/sh\n(sleep 100) &\nexec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    code = "from cros_venv import locate; import sys; print(locate.resolve_python(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(wrapper)], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(locate.__file__))))
    assert out.stdout.strip() == real, out.stderr
    junk = tmp_path / "junk"
    junk.write_text("#!/bin/sh\necho not a path\n")
    junk.chmod(0o755)
    assert locate.resolve_python(str(junk)) == str(junk)  # it did not say: the probe will refuse it
