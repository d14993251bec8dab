"""fastpath: the no-op key, read without a JSON parser, and what invalidates it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cros_venv import fastpath, spec


@pytest.fixture
def world(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "wheels").mkdir()
    wheel = tmp_path / "wheels" / "alpha-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    req = tmp_path / "requirements.txt"
    req.write_bytes(b"alpha==1.0\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    key = fastpath.make_key("1", os.path.realpath(sys.executable), [str(req)], [(str(req), req.read_bytes())],
                            [str(tmp_path / "wheels")], [str(wheel)])
    (venv / fastpath.DIRS_FILE).write_bytes(b"bin")
    key = fastpath.venv_key(key, str(venv), [])
    (venv / fastpath.MARKER_NAME).write_bytes(spec.marker_bytes(spec.Spec.build({}, [], {}), key, {"x": "y"}))
    return {"venv": str(venv), "req": str(req), "wheel": str(wheel), "key": key}


def test_sha256_matches_hashlib() -> None:
    assert fastpath.sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_key_is_found_in_the_json_marker(world: dict[str, str]) -> None:
    assert fastpath.read_key(world["venv"]) == world["key"]
    assert set(world["key"]) <= set("0123456789abcdef:= cvtolpyrgqsdwhimn.1")


def test_up_to_date_when_nothing_changed(world: dict[str, str]) -> None:
    assert fastpath.up_to_date([world["venv"], world["req"]], "1")


@pytest.mark.parametrize("change", ["content", "wheel-touched", "wheel-added", "marker-gone", "python-gone"])
def test_changes_are_noticed(world: dict[str, str], change: str) -> None:
    if change == "content":
        Path(world["req"]).write_bytes(b"alpha==1.1\n")
    elif change == "wheel-touched":
        os.utime(world["wheel"], ns=(1, 1))
    elif change == "wheel-added":
        Path(world["wheel"]).with_name("beta-1.0-py3-none-any.whl").write_bytes(b"x")
        os.utime(Path(world["wheel"]).parent, ns=(2, 2))
    elif change == "marker-gone":
        os.unlink(Path(world["venv"]) / fastpath.MARKER_NAME)
    elif change == "python-gone":
        os.unlink(Path(world["venv"]) / "bin" / "python")
    assert not fastpath.up_to_date([world["venv"], world["req"]], "1")


def test_other_arguments_interpreter_or_tool_version_miss(world: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_bytes(b"alpha==1.0\n")
    assert not fastpath.up_to_date([world["venv"], str(other)], "1")
    assert not fastpath.up_to_date([world["venv"], world["req"]], "2")
    assert not fastpath.up_to_date([world["venv"], world["req"], "--python", "/bin/sh"], "1")


@pytest.mark.parametrize("argv", [[], ["dir"], ["-v", "d", "r"], ["--help"], ["d", "r", "--python"], ["--compile", "d", "r"]])
def test_anything_but_a_plain_command_line_takes_the_full_path(argv: list[str]) -> None:
    assert fastpath.parse_simple_args(argv) is None


def test_parse_simple_args() -> None:
    assert fastpath.parse_simple_args(["d", "r1", "r2", "--python=/p"]) == ("d", ["r1", "r2"], "/p")
    assert fastpath.parse_simple_args(["--python", "p", "d", "r"]) == ("d", ["r"], "p")


def test_resolve_python_searches_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "mypython"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"/nonexistent:{tmp_path}")
    assert fastpath.resolve_python("mypython") == str(exe)
    assert fastpath.resolve_python(None) == os.path.realpath(sys.executable)


def test_no_op_check_imports_nothing_heavy() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from cros_venv import __main__, fastpath; "
            "fastpath.up_to_date(['/nonexistent', 'r'], '1'); "
            "bad = {'json', 're', 'typing', 'argparse', 'hashlib', 'packaging', 'enum'} & set(sys.modules); "
            "print(sorted(bad))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(Path(__file__).parent.parent)],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_python_wrapper_script_is_resolved_to_the_binary_it_runs(tmp_path: Path) -> None:
    """pyenv's shims and other wrappers: the caches key on the binary, asked for once per
    run; a process the wrapper leaves behind (holding its stdout) does not keep us waiting.
    """
    real = os.path.realpath(sys.executable)
    wrapper = tmp_path / "python3"
    wrapper.write_text(f"#!/bin/sh\n(sleep 100) &\nexec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    code = "from cros_venv import fastpath; import sys; print(fastpath.resolve_python(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(wrapper)], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(fastpath.__file__))))
    assert out.stdout.strip() == real, out.stderr
    junk = tmp_path / "junk"
    junk.write_text("#!/bin/sh\necho not a path\n")
    junk.chmod(0o755)
    assert fastpath.resolve_python(str(junk)) == str(junk)  # it did not say: the probe will refuse it
