"""fastpath: the no-op key and what invalidates it."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from cros_venv import fastpath, marker, spec
from cros_venv.names import DIRS_FILE, MARKER
from tests.conftest import rewrite_keeping_size_and_mtime

PYTHON = os.path.realpath(sys.executable)


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
    (venv / DIRS_FILE).write_bytes(b"bin")
    key = fastpath.venv_key(key, str(venv), [])
    (venv / MARKER).write_bytes(marker.render(spec.Spec.build({}, [], {}), key, {"x": "y"}))
    return {"venv": str(venv), "req": str(req), "wheel": str(wheel), "key": key}


def test_key_is_found_in_the_json_marker(world: dict[str, str]) -> None:
    assert marker.read_key(world["venv"]) == world["key"]
    assert set(world["key"]) <= set("0123456789abcdef:= cvtolpyrgqsdwhimnx.1")


def test_up_to_date_when_nothing_changed(world: dict[str, str]) -> None:
    assert fastpath.up_to_date(world["venv"], [world["req"]], None, "1")


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
        os.unlink(Path(world["venv"]) / MARKER)
    elif change == "python-gone":
        os.unlink(Path(world["venv"]) / "bin" / "python")
    assert not fastpath.up_to_date(world["venv"], [world["req"]], None, "1")


def test_other_arguments_interpreter_or_tool_version_miss(world: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_bytes(b"alpha==1.0\n")
    assert not fastpath.up_to_date(world["venv"], [str(other)], None, "1")
    assert not fastpath.up_to_date(world["venv"], [world["req"]], None, "2")
    assert not fastpath.up_to_date(world["venv"], [world["req"]], "/bin/sh", "1")


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_small_file_is_kept_whole_a_large_one_as_its_digest(tmp_path: Path, size: str) -> None:
    """The no-op check imports no sha256 module for a small requirements file: its bytes are
    in the key. Either way, other bytes of the same size and mtime are noticed."""
    req = tmp_path / "requirements.txt"
    data = b"alpha==1.0\n" if size == "small" else b"# padding\n" * (fastpath.SMALL_FILE // 10) + b"alpha==1.0\n"
    req.write_bytes(data)
    key = fastpath.make_key("1", PYTHON, [str(req)], [(str(req), data)], [], [])
    path_hex = os.fsencode(str(req)).hex()
    if size == "small":
        assert f" reqhex={path_hex}:{data.hex()}" in key
    else:
        assert len(data) > fastpath.SMALL_FILE and f" req={path_hex}:{hashlib.sha256(data).hexdigest()}" in key
    assert fastpath.key_matches(key, "1", PYTHON, [str(req)])
    rewrite_keeping_size_and_mtime(req, data.replace(b"1.0", b"2.0"))
    assert not fastpath.key_matches(key, "1", PYTHON, [str(req)])
    req.write_bytes(data)
    assert fastpath.key_matches(key, "1", PYTHON, [str(req)])
    req.write_bytes(data + b"x" * fastpath.SMALL_FILE)  # across the threshold: another kind of token
    assert not fastpath.key_matches(key, "1", PYTHON, [str(req)])
