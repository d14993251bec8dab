"""cros_venv/fs.py: each function gives what os / os.path give, on the same inputs."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pytest

from cros_venv import fs

PATHS = ["", ".", "..", "/", "//", "///", "a", "a/", "a//b", "/a/b/", "/a/./b/../c", "//a/b", "///a/b", "a/../..",
         "../a/../../b", "/../..", "./a/.", "a/b/c/../../..", "/a/b/..", "é/ü", "sp ace/-x", "\udcff/x", "a/b//"]


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_pure_functions_match_os_path(path: str) -> None:
    assert fs.normpath(path) == os.path.normpath(path)
    assert fs._normpath(path) == posixpath.normpath(path)  # the fallback for 3.9 and 3.10 too
    assert fs.split(path) == os.path.split(path)
    assert fs.dirname(path) == os.path.dirname(path)
    assert fs.basename(path) == os.path.basename(path)
    assert fs.isabs(path) == os.path.isabs(path)
    assert fs.abspath(path) == os.path.abspath(path)
    assert fs.fsencode(path) == os.fsencode(path)
    assert fs.fsdecode(os.fsencode(path)) == path


@pytest.mark.parametrize("parts", [("a", "b"), ("a/", "b"), ("a", "/b", "c"), ("", "b"), ("/", "b"), ("a", ""),
                                   ("a", "", "b"), ("a//", "b/")], ids=repr)
def test_join_matches_os_path(parts: tuple[str, ...]) -> None:
    assert fs.join(*parts) == os.path.join(*parts)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Directories, files and symlinks of every kind: relative, absolute, chained, to a
    parent, dangling, looping; the current directory inside it."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "file").write_text("x")
    (tmp_path / "rel").symlink_to("real")
    (tmp_path / "abs").symlink_to(tmp_path / "real")
    (tmp_path / "chain").symlink_to("rel/sub")
    (tmp_path / "real" / "sub" / "up").symlink_to("../..")
    (tmp_path / "dangling").symlink_to("nowhere/at/all")
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "self").symlink_to("self")
    (tmp_path / "tofile").symlink_to("real/file")
    monkeypatch.chdir(tmp_path / "real")
    return tmp_path


REAL_CASES = ["rel", "abs", "chain", "chain/up", "chain/up/rel/sub", "rel/../abs", "dangling", "dangling/x",
              "tofile", "tofile/x", "missing/../rel", "rel/sub/../../chain", "loop1", "loop1/x", "self", "real//sub/",
              ".", "..", "sub", "sub/up", "file"]


@pytest.mark.parametrize("case", REAL_CASES)
def test_realpath_matches_os_path(tree: Path, case: str) -> None:
    for path in (str(tree / case), case):  # absolute, and relative to the current directory (real/)
        assert fs.realpath(path) == os.path.realpath(path), path


@pytest.mark.parametrize("case", REAL_CASES)
def test_file_tests_match_os_path(tree: Path, case: str) -> None:
    path = str(tree / case)
    assert fs.exists(path) == os.path.exists(path)
    assert fs.lexists(path) == os.path.lexists(path)
    assert fs.isfile(path) == os.path.isfile(path)
    assert fs.isdir(path) == os.path.isdir(path)


def test_getenv_is_the_environment_at_start() -> None:
    assert fs.getenv("PATH") == os.environ.get("PATH")
    assert fs.getenv("CROS_VENV_SURELY_NOT_SET") is None


def test_a_path_with_a_nul_byte_is_not_there() -> None:
    assert not fs.exists("a\0b") and not fs.lexists("a\0b") and not fs.isfile("a\0b") and not fs.isdir("a\0b")


@pytest.mark.parametrize("case", ["rel/../file", "chain/up/real/file", "real/file", "file", "tofile", "sub/../file",
                                  "dangling", "rel//file"])
def test_file_path_names_the_file_open_reads(tree: Path, case: str) -> None:
    """Its directory resolved as the kernel resolves it, its own name kept."""
    path = fs.file_path(case)
    assert fs.isabs(path) and fs.basename(path) == os.path.basename(case)
    assert os.path.dirname(path) == os.path.realpath(os.path.dirname(case) or ".")
    if os.path.lexists(case):
        assert os.lstat(path) == os.lstat(case)
    assert fs.file_path("/dev/stdin") == "/dev/stdin"
