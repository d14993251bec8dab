"""Every cache and remembered fact, each input changed in turn: the remembered result is not used.

One section per row of DESIGN.md's table "What each memory depends on" (the rows "resolution"
and "interpreter probe": tests/test_resolution.py and tests/test_interpreter.py). A memory that
is unreadable, truncated or of another shape is made again, never trusted and never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from cros_venv import __version__, fastpath, install, marker, skeleton, store, toolchain
from cros_venv.cache import Cache
from cros_venv.digest import Hashed, file_sha256, stamp
from cros_venv.extract import LEGACY_MANIFEST, MANIFEST
from cros_venv.fastpath import read_regular
from cros_venv.names import DIRS_FILE, MARKER, TRASH_SUFFIX
from cros_venv.sources import Sources
from cros_venv.spec import Spec
from tests.conftest import WheelSpec, build_wheel, chmod_round_trip, replace_by_rename, rewrite_keeping_size_and_mtime

PYTHON = os.path.realpath(sys.executable)


# -- the marker's no-op key (fastpath) ------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A venv directory with a marker key for one requirements file and one wheel."""
    home = tmp_path / "pip_packages"
    home.mkdir()
    monkeypatch.setattr(fastpath, "WHEEL_DIR", str(home))
    wheel = home / "alpha-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    req = tmp_path / "requirements.txt"
    req.write_bytes(b"alpha==1.0\n")
    inc = tmp_path / "included.txt"
    inc.write_bytes(b"# included\n")
    venv = tmp_path / "venv"
    for d in ("bin", "lib"):
        (venv / d).mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "lib" / "pkg").mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / DIRS_FILE).write_bytes(b"bin\nlib\nlib/pkg")
    key = fastpath.make_key("1", PYTHON, [str(req)], [(str(req), req.read_bytes()), (str(inc), inc.read_bytes())],
                            [str(home)], [str(wheel)])
    key = fastpath.venv_key(key, str(venv), [str(venv / "pyvenv.cfg")])
    (venv / MARKER).write_bytes(marker.render(Spec.build({}, [], {}), key, {}))
    return {"venv": venv, "req": req, "inc": inc, "wheel": wheel, "home": home}


def noop(world: dict[str, Path], version: str = "1", python: str | None = None) -> bool:
    return fastpath.up_to_date(str(world["venv"]), [str(world["req"])], python, version)


def test_the_no_op_key_matches_an_unchanged_world(world: dict[str, Path]) -> None:
    assert noop(world)
    assert noop(world)  # reading it changed nothing


CHANGES: dict[str, Callable[[dict[str, Path]], object]] = {
    "requirements-bytes": lambda w: w["req"].write_bytes(b"alpha==1.1\n"),
    "requirements-bytes-same-size-and-mtime": lambda w: rewrite_keeping_size_and_mtime(w["req"], b"alpha==1.2\n"),
    "included-file-bytes": lambda w: w["inc"].write_bytes(b"beta==1.0\n"),
    "included-file-gone": lambda w: w["inc"].unlink(),
    "wheel-bytes-same-size-and-mtime": lambda w: rewrite_keeping_size_and_mtime(w["wheel"]),
    "wheel-replaced-by-rename": lambda w: replace_by_rename(w["wheel"]),
    "wheel-ctime-only": lambda w: chmod_round_trip(w["wheel"]),
    "wheel-gone": lambda w: w["wheel"].unlink(),
    "wheel-added-beside": lambda w: (w["home"] / "beta-1.0-py3-none-any.whl").write_bytes(b"x"),
    "venv-replaced-by-a-copy": lambda w: w["venv"].rename(w["venv"].with_name("moved")) or w["venv"].with_name("moved").rename(
        w["venv"].with_name("other")) or shutil.copytree(w["venv"].with_name("other"), w["venv"], symlinks=True),
    "venv-lib-changed": lambda w: (w["venv"] / "lib" / "x").mkdir(),
    "venv-package-dir-changed": lambda w: (w["venv"] / "lib" / "pkg" / "x").touch(),
    "venv-dirs-list-gone": lambda w: (w["venv"] / DIRS_FILE).unlink(),
    "venv-dirs-list-shortened": lambda w: (w["venv"] / DIRS_FILE).write_bytes(b"bin\nlib"),
    "venv-dirs-list-same-size-and-mtime": lambda w: rewrite_keeping_size_and_mtime(w["venv"] / DIRS_FILE,
                                                                                   b"lib\nbin\nlib/pkg"),
    "venv-pyvenv-cfg-gone": lambda w: (w["venv"] / "pyvenv.cfg").unlink(),
    "venv-pyvenv-cfg-edited": lambda w: (w["venv"] / "pyvenv.cfg").write_text("home = /elsewhere\n"),
    "marker-cut-short": lambda w: (w["venv"] / MARKER).write_bytes(
        (w["venv"] / MARKER).read_bytes()[:-3]),
    "venv-bin-entry-added": lambda w: (w["venv"] / "bin" / "pip").write_text(""),
    "venv-python-gone": lambda w: (w["venv"] / "bin" / "python").unlink(),
    "marker-gone": lambda w: (w["venv"] / MARKER).unlink(),
    "trash-left-beside": lambda w: (w["venv"].parent / f".venv{TRASH_SUFFIX}").mkdir(),
    "tool-code-replaced": lambda w: None,  # see below: the package directory's mtime
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_input_of_the_no_op_key(world: dict[str, Path], change: str, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    if change == "tool-code-replaced":
        package = tmp_path / "package"
        package.mkdir()
        monkeypatch.setattr(fastpath, "_PACKAGE", str(package))  # another mtime than the key's
    else:
        CHANGES[change](world)
    assert not noop(world)


def test_the_no_op_key_covers_interpreter_tool_and_checkout(world: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert not noop(world, version="2")
    assert not noop(world, python="/bin/sh")
    other_checkout = tmp_path / "other" / "pip_packages"
    other_checkout.mkdir(parents=True)
    monkeypatch.setattr(fastpath, "WHEEL_DIR", str(other_checkout))
    assert not noop(world)


def test_the_interpreter_stamp_covers_ctime(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_bytes(b"#!/bin/sh\n")
    before = fastpath._stat_token("py", str(python))
    chmod_round_trip(python)
    assert fastpath._stat_token("py", str(python)) != before


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_the_no_op_path_never_opens_what_is_not_a_regular_file(world: dict[str, Path], kind: str) -> None:
    """A FIFO would block it, a pipe would be consumed before the parser reads it."""
    world["req"].unlink()
    if kind == "fifo":
        os.mkfifo(world["req"])
    else:
        world["req"].mkdir()
    assert read_regular(str(world["req"])) is None
    assert not noop(world)  # and did not hang


def test_sources_read_each_file_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:
        with open(fifo, "wb") as f:
            f.write(b"alpha==1.0\n")
        os._exit(0)
    sources = Sources()
    assert sources.read(str(fifo)) == b"alpha==1.0\n"
    assert sources.read(str(fifo)) == b"alpha==1.0\n"  # from memory: a second open would block
    os.waitpid(pid, 0)


# -- the stat index of wheel hashes ---------------------------------------------------------


@pytest.mark.parametrize("change", ["bytes-same-size-and-mtime", "replaced-by-rename", "ctime-only", "corrupt-index"])
def test_each_input_of_the_stat_index(tmp_path: Path, change: str) -> None:
    cache = Cache(str(tmp_path / "cache"))
    cache.ensure_dirs()
    wheel = build_wheel(tmp_path, WheelSpec("alpha"))
    assert cache.stat_index.hashes([str(wheel)]) == {str(wheel): file_sha256(str(wheel))}
    assert cache.stat_index.known([str(wheel)]) == {str(wheel): file_sha256(str(wheel))}
    if change == "bytes-same-size-and-mtime":
        rewrite_keeping_size_and_mtime(wheel)
    elif change == "replaced-by-rename":
        replace_by_rename(wheel)
    elif change == "ctime-only":
        chmod_round_trip(wheel)
    else:
        Path(cache.stat_index.path(str(tmp_path))).write_text('{"alpha-1.0-py3-none-any.whl": [1, 2]}')
    assert cache.stat_index.known([str(wheel)]) == {}
    assert cache.stat_index.hashes([str(wheel)]) == {str(wheel): file_sha256(str(wheel))}


def test_hash_checking_ignores_the_stat_index(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "cache"))
    cache.ensure_dirs()
    wheel = build_wheel(tmp_path, WheelSpec("alpha"))
    cache.stat_index.record({str(wheel): Hashed("f" * 64, stamp(wheel.stat()))})
    assert cache.stat_index.hashes([str(wheel)]) == {str(wheel): "f" * 64}  # what the index says...
    # ...and the bytes
    assert cache.stat_index.hashes([str(wheel)], trust_index=False) == {str(wheel): file_sha256(str(wheel))}


# -- unpacked wheels (cache entries) --------------------------------------------------------


@pytest.fixture
def entry(tmp_path: Path) -> tuple[Cache, Path]:
    cache = Cache(str(tmp_path / "cache"))
    cache.ensure_dirs()
    wheel = build_wheel(tmp_path, WheelSpec("alpha", files={"alpha/__init__.py": b"X = 1\n", "alpha/b.py": b""}))
    path = Path(cache.unpack(str(wheel), file_sha256(str(wheel))))
    assert cache.intact(str(path))
    return cache, path


def edit_in_place(path: Path, data: bytes) -> None:
    """What an editor writing through a hard link does (as root, read-only bits do not stop it),
    a moment after the entry was made (mtimes move in clock ticks of a few ms).
    """
    time.sleep(0.02)
    with open(path, "r+b") as f:
        f.truncate()
        f.write(data)


ENTRY_DAMAGE: dict[str, Callable[[Path], object]] = {
    "edited-same-size": lambda e: edit_in_place(e / "alpha/__init__.py", b"X = 2\n"),
    "appended": lambda e: edit_in_place(e / "alpha/__init__.py", b"X = 1\n#\n"),
    "truncated": lambda e: edit_in_place(e / "alpha/__init__.py", b""),
    "deleted": lambda e: (e / "alpha/b.py").unlink(),
    "manifest-gone": lambda e: remove(e / MANIFEST, e / LEGACY_MANIFEST),
    "manifest-corrupt": lambda e: [(e / m).write_text("[1, 2") for m in (MANIFEST, LEGACY_MANIFEST)],
    "manifest-other-shape": lambda e: ((e / MANIFEST).write_bytes(store.dumps({"alpha/b.py": "x"})),
                                       remove(e / LEGACY_MANIFEST)),
    "manifest-byte-flipped": lambda e: (flip_byte(e / MANIFEST, -3), remove(e / LEGACY_MANIFEST)),
}


def remove(*paths: Path) -> int:
    for path in paths:
        path.unlink()
    return len(paths)


def flip_byte(path: Path, at: int) -> int:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    return path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["new", "legacy"])
def test_an_entry_shared_with_an_earlier_version_is_read_by_either_manifest(entry: tuple[Cache, Path],
                                                                            which: str) -> None:
    """Earlier versions read only the JSON manifest and set aside entries without it; this
    one reads the JSON manifest when its own is missing: neither unpacks the other's
    entries again (two checkouts of different versions share ~/.cache/cros_venv)."""
    cache, path = entry
    (path / (LEGACY_MANIFEST if which == "new" else MANIFEST)).unlink()
    assert cache.intact(str(path))
    edit_in_place(path / "alpha/__init__.py", b"X = 2\n")
    assert not cache.intact(str(path))  # and the files are checked against it all the same


@pytest.mark.parametrize("damage", sorted(ENTRY_DAMAGE))
def test_a_changed_cache_entry_is_not_intact(entry: tuple[Cache, Path], damage: str) -> None:
    cache, path = entry
    ENTRY_DAMAGE[damage](path)
    assert not cache.intact(str(path))
    cache.set_aside(str(path))
    assert not path.exists() and not [n for n in os.listdir(cache.wheels) if n.startswith(".tmp-")]


def test_entry_files_are_read_only(entry: tuple[Cache, Path]) -> None:
    _, path = entry
    assert (path / "alpha/__init__.py").stat().st_mode & 0o222 == 0


# -- install plans --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    "not json", '{"format": 3}', '{"format": 3, "dist_info": "a-1.dist-info", "files": [["purelib", "../../x", "a", "", ""]], "scripts": []}',
    '{"format": 3, "dist_info": "a-1.dist-info", "files": [["nowhere", "a.py", "a.py", "", ""]], "scripts": []}',
    '{"format": 3, "dist_info": "a-1.dist-info", "files": [["purelib", "/etc/x", "a.py", "", ""]], "scripts": []}',
    '{"format": 3, "dist_info": "../a", "files": [], "scripts": []}',
    '{"format": 2, "dist_info": "a-1.dist-info", "files": [], "scripts": []}',
], ids=["not-json", "missing-fields", "dotdot", "bad-scheme", "absolute", "bad-dist-info", "old-format"])
def test_a_plan_file_of_another_shape_is_made_again(tmp_path: Path, bad: str) -> None:
    cache = Cache(str(tmp_path / "cache"))
    cache.ensure_dirs()
    wheel = build_wheel(tmp_path, WheelSpec("alpha"))
    sha = file_sha256(str(wheel))
    path = cache.unpack(str(wheel), sha)
    plans = tmp_path / "cache" / "plans"
    good = install.plan_for(path, str(plans), sha, lambda: None)
    (plan_file,) = plans.iterdir()
    assert sha in plan_file.name and "installer-" in plan_file.name  # keyed on the bytes and the code
    plan_file.write_bytes(b"not marshal" if bad == "not json" else store.dumps(json.loads(bad)))
    assert install.Plan.from_json(json.loads(bad) if bad != "not json" else None) is None
    assert install.plan_for(path, str(plans), sha, lambda: None) == good


# -- skeleton templates ---------------------------------------------------------------------


def test_each_input_of_the_template_key(tmp_path: Path) -> None:
    python = tmp_path / "python3"
    python.write_bytes(b"x")
    templates = skeleton.Templates(str(tmp_path / "skeletons"))
    base = templates.path_for(str(python), "venv-id")
    assert templates.path_for(str(python), "venv-id") == base
    assert templates.path_for(str(python), "other-virtualenv-or-tool") != base
    chmod_round_trip(python)
    assert templates.path_for(str(python), "venv-id") != base


def test_the_virtualenv_id_is_its_wheels_bytes_and_the_tool(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "cache"))
    cache.ensure_dirs()
    ident = toolchain.virtualenv_id(cache)
    assert ident.split(",") == [__version__, *(file_sha256(toolchain.wheel_path(w))
                                                         for w in toolchain.VIRTUALENV)]


@pytest.mark.parametrize("damage", ["file-deleted", "file-changed", "manifest-gone", "placeholder-gone",
                                    "nul-in-a-name", "name-not-a-str", "legacy-manifest-only"])
def test_a_damaged_template_is_refused_before_anything_is_copied(tmp_path: Path, damage: str) -> None:
    template = tmp_path / "t"
    (template / "venv" / "bin").mkdir(parents=True)
    (template / "venv" / "bin" / "activate").write_text(f"VIRTUAL_ENV={template}/venv\n")
    (template / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    templates = skeleton.Templates(str(tmp_path))
    final = tmp_path / "final"
    templates.commit(str(template), str(final))
    skeleton.instantiate(str(final), str(tmp_path / "ok"))
    assert (tmp_path / "ok" / "bin" / "activate").read_text() == f"VIRTUAL_ENV={tmp_path / 'ok'}\n"
    if damage == "file-deleted":
        (final / "venv" / "pyvenv.cfg").unlink()
    elif damage == "file-changed":
        (final / "venv" / "bin" / "activate").write_text("echo hi\n")
    elif damage == "manifest-gone":
        (final / skeleton.MANIFEST_FILE).unlink()
        (final / skeleton.LEGACY_MANIFEST_FILE).unlink()
    elif damage in ("nul-in-a-name", "name-not-a-str"):  # a manifest of the right checksum but odd data
        (final / skeleton.LEGACY_MANIFEST_FILE).unlink()
        odd: dict[Any, int] = {"pyvenv\0.cfg": 9} if damage == "nul-in-a-name" else {3: 9}
        (final / skeleton.MANIFEST_FILE).write_bytes(store.dumps(odd))
    elif damage == "legacy-manifest-only":  # made by an earlier version: read, and still checked
        (final / skeleton.MANIFEST_FILE).unlink()
        (final / "venv" / "bin" / "activate").write_text("echo hi\n")
    else:
        (final / skeleton.PLACEHOLDER_FILE).unlink()
    with pytest.raises(skeleton.TemplateDamaged):
        skeleton.instantiate(str(final), str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()
