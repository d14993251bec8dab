"""install: a cache entry into site-packages by hard link, with RECORD, INSTALLER and scripts."""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import sys
from pathlib import Path

import pytest

from cros_venv.cache import Cache
from cros_venv.digest import file_sha256
from cros_venv.errors import BuildError
from cros_venv.install import Linker, install, record_row
from cros_venv.venv import Layout
from tests.conftest import WheelSpec, build_wheel


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Cache, Layout]:
    cache = Cache(str(tmp_path / "cache"))
    cache.ensure_dirs()
    return cache, Layout(str(tmp_path / "venv"), "3.11")


def entry_for(cache: Cache, tmp_path: Path, spec: WheelSpec) -> str:
    wheel = build_wheel(tmp_path, spec)
    return cache.unpack(str(wheel), file_sha256(str(wheel)))


def record(layout: Layout, dist_info: str) -> dict[str, tuple[str, str]]:
    with open(os.path.join(layout.site_packages, dist_info, "RECORD"), newline="") as f:
        return {row[0]: (row[1], row[2]) for row in csv.reader(f)}


def check_record(layout: Layout, rows: dict[str, tuple[str, str]]) -> None:
    """Every row but RECORD's own names an installed file with the right hash and size."""
    for path, (hash_, size) in rows.items():
        full = os.path.normpath(os.path.join(layout.site_packages, path))
        if path.endswith("/RECORD"):
            assert (hash_, size) == ("", "")
            continue
        data = Path(full).read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
        assert (hash_, size) == (f"sha256={digest}", str(len(data))), path


def test_links_files_and_rewrites_record(setup: tuple[Cache, Layout], tmp_path: Path) -> None:
    cache, layout = setup
    entry = entry_for(cache, tmp_path, WheelSpec("alpha", files={"alpha/__init__.py": b"X = 1\n"},
                                                console_scripts={"alpha-cli": "alpha:main"}))
    plan = install(entry, layout, requested=True, linker=Linker())
    src = os.path.join(entry, "alpha/__init__.py")
    dst = os.path.join(layout.site_packages, "alpha/__init__.py")
    assert os.path.samefile(src, dst)  # a hard link to the cache
    assert [(s[0], s[1]) for s in plan.scripts] == [("scripts", "alpha-cli")]
    script = Path(layout.bin, "alpha-cli").read_text()
    assert script.startswith(f"#!{layout.python}\n") and "from alpha import main" in script
    assert os.stat(os.path.join(layout.bin, "alpha-cli")).st_mode & 0o111
    rows = record(layout, "alpha-1.0.dist-info")
    assert set(rows) == {"alpha/__init__.py", "alpha-1.0.dist-info/METADATA", "alpha-1.0.dist-info/WHEEL",
                         "alpha-1.0.dist-info/INSTALLER", "alpha-1.0.dist-info/REQUESTED",
                         "alpha-1.0.dist-info/entry_points.txt", "alpha-1.0.dist-info/RECORD",
                         "../../../bin/alpha-cli"}
    check_record(layout, rows)
    assert Path(layout.site_packages, "alpha-1.0.dist-info/INSTALLER").read_text() == "cros_venv\n"


def test_data_directories_go_to_their_schemes(setup: tuple[Cache, Layout], tmp_path: Path) -> None:
    cache, layout = setup
    entry = entry_for(cache, tmp_path, WheelSpec("beta", files={
        "beta.py": b"",
        "beta-1.0.data/scripts/beta-tool": b"#!python\nprint('tool')\n",
        "beta-1.0.data/purelib/beta_extra.py": b"E = 1\n",
        "beta-1.0.data/headers/beta.h": b"int beta;\n",
        "beta-1.0.data/data/share/beta/readme": b"hi\n",
    }))
    install(entry, layout, requested=False, linker=Linker())
    tool = Path(layout.bin, "beta-tool").read_text()
    assert tool.startswith(f"#!{layout.python}\n")
    assert Path(layout.site_packages, "beta_extra.py").read_text() == "E = 1\n"
    assert Path(layout.include, "beta", "beta.h").exists()
    assert Path(layout.root, "share/beta/readme").read_text() == "hi\n"
    rows = record(layout, "beta-1.0.dist-info")
    assert "beta-1.0.dist-info/REQUESTED" not in rows
    assert {"../../../bin/beta-tool", "beta_extra.py", "../../../include/site/python3.11/beta/beta.h",
            "../../../share/beta/readme"} <= set(rows)
    check_record(layout, rows)


def test_later_wheels_overwrite_shared_files(setup: tuple[Cache, Layout], tmp_path: Path) -> None:
    cache, layout = setup
    linker = Linker()
    install(entry_for(cache, tmp_path, WheelSpec("one", files={"shared/x.py": b"1\n"})), layout, True, linker)
    install(entry_for(cache, tmp_path, WheelSpec("two", files={"shared/x.py": b"2\n"})), layout, True, linker)
    assert Path(layout.site_packages, "shared/x.py").read_text() == "2\n"


def test_copies_when_hard_links_are_refused(setup: tuple[Cache, Layout], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, layout = setup
    entry = entry_for(cache, tmp_path, WheelSpec("alpha"))

    def refuse(src: str, dst: str, **kwargs: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    linker = Linker()
    install(entry, layout, True, linker)
    assert linker.copy
    dst = os.path.join(layout.site_packages, "alpha.py")
    assert not os.path.samefile(os.path.join(entry, "alpha.py"), dst) and Path(dst).read_text().startswith("NAME")


@pytest.mark.parametrize("bad", ["wheel-version", "data-scheme"])
def test_refuses_bad_wheels(setup: tuple[Cache, Layout], tmp_path: Path, bad: str) -> None:
    cache, layout = setup
    spec = WheelSpec("alpha", wheel_version="2.0") if bad == "wheel-version" else \
        WheelSpec("alpha", files={"alpha-1.0.data/nowhere/x": b""})
    with pytest.raises(BuildError, match="Wheel-Version 2.0|not in a valid .data subdirectory"):
        install(entry_for(cache, tmp_path, spec), layout, True, Linker())


@pytest.mark.parametrize("fields", [
    ("pkg/mod.py", "sha256=abc", "12"), ("a,b.py", "", ""), ('quote"d.py', "x", "1"), ("line\nbreak", "", ""),
    ("cr\rx", "", ""), ("", "", ""), (" spaced ", "sha256=-_", "0"), ("é/ü.py", "", "3"), ('",\n', ",", '"'),
])
def test_record_rows_are_what_csv_writes(fields: tuple[str, str, str]) -> None:
    """As csv.writer writes them (a carriage return quoted, as from Python 3.13 on), and
    read back whole by csv.reader."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    if sys.version_info >= (3, 13) or not any("\r" in f for f in fields):
        assert record_row(fields) == out.getvalue()
    assert next(csv.reader(io.StringIO(record_row(fields), newline=""))) == list(fields)


def test_a_plain_data_script_after_a_console_script_is_linked(setup: tuple[Cache, Layout], tmp_path: Path) -> None:
    """A launcher written into bin/ first, then a `.data/scripts` file that is linked
    there (not `#!python`, e.g. ruff's binary): the link needs bin/'s descriptor, which
    writing the launcher had not opened (a KeyError for every such venv)."""
    cache, layout = setup
    linker = Linker()
    try:
        install(entry_for(cache, tmp_path, WheelSpec("alpha", console_scripts={"alpha-cli": "alpha:main"})),
                layout, True, linker)
        install(entry_for(cache, tmp_path, WheelSpec("tool", files={
            "tool.py": b"", "tool-1.0.data/scripts/tool-bin": b"#!/bin/sh\necho tool\n"})), layout, True, linker)
    finally:
        linker.close()
    assert Path(layout.bin, "tool-bin").read_bytes() == b"#!/bin/sh\necho tool\n"
    assert Path(layout.bin, "alpha-cli").exists()
