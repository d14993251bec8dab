"""venv: who may wipe a directory, moving a venv aside and back, the trash, and what makes a
venv whole (what a marker alone cannot prove).
"""

from __future__ import annotations

import configparser
import csv
import errno
import hashlib
import os
import sys
from pathlib import Path
from typing import Callable

import pytest

from cros_venv import venv
from cros_venv.errors import BuildError, InputError
from cros_venv.names import DIRS_FILE, INSIDE_TRASH, MARKER, SIGN
from cros_venv.venv import Layout
from tests.conftest import contents

WHEEL_DIR = "/checkout/pip_packages"


def make_ours(root: Path) -> Path:
    """A directory as create_venv leaves a venv: signed first, marked last, files, a nested
    directory and a symlink out (never followed).
    """
    venv.start(Layout(str(root), "3.11"))
    (root / "bin").mkdir()
    (root / "bin" / "python").symlink_to(sys.executable)
    (root / "lib" / "pkg").mkdir(parents=True)
    (root / "lib" / "pkg" / "m.py").write_bytes(b"X = 1\n")
    (root / MARKER).write_bytes(b'{"noop": "cv2",\n "spec": {}\n}\n')
    return root


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return make_ours(tmp_path / "venv")


def a_partial_build(root: Path) -> None:
    """What a build interrupted half way leaves in DIR: the owner file and some files, no marker."""
    venv.start(Layout(str(root), "3.11"))
    (root / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (root / "lib" / "python3.11" / "site-packages" / "new.py").write_bytes(b"NEW = 1\n")


@pytest.fixture
def unmovable(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Make a directory refuse to be renamed, as a mount point does (EBUSY)."""
    rename = os.rename

    def refuse_for(root: Path) -> None:
        def fake(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            if os.fspath(src) == str(root):
                raise OSError(errno.EBUSY, "Device or resource busy", os.fspath(src))
            rename(src, dst)

        monkeypatch.setattr(os, "rename", fake)

    return refuse_for


# -- ownership ------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "ours"), [
    pytest.param(lambda d: (d / MARKER).write_text("{}"), True, id="marker"),
    pytest.param(lambda d: (d / SIGN).write_text(""), True, id="owner-file"),
    pytest.param(lambda d: (d / INSIDE_TRASH).mkdir(), True, id="old-venv-set-aside-inside"),
    pytest.param(lambda d: None, True, id="empty"),
    pytest.param(lambda d: (d / "main.py").write_text("precious"), False, id="someone-elses-file"),
    pytest.param(lambda d: (d / "pyvenv.cfg").write_text("home = /usr\n"), False, id="another-tools-venv"),
])
def test_only_a_directory_create_venv_made_or_an_empty_one_is_ours(tmp_path: Path, make: Callable[[Path], object],
                                                                    ours: bool) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    make(directory)
    assert venv.is_ours(str(directory)) is ours


def test_a_missing_directory_is_not_ours_but_may_be_created(tmp_path: Path) -> None:
    assert not venv.is_ours(str(tmp_path / "missing"))
    venv.check_replaceable(str(tmp_path / "missing"))


NOT_REPLACEABLE = [
    pytest.param(lambda p: (p.mkdir(), (p / "main.py").write_text("precious")), "was not made by create_venv",
                 id="someone-elses-directory"),
    pytest.param(lambda p: p.write_text("precious"), "exists and is not a directory", id="a-file"),
    pytest.param(lambda p: (make_ours(p.with_name("target")), p.symlink_to(p.with_name("target"))),
                 "exists and is not a directory", id="a-symlink-to-a-venv"),
]


@pytest.mark.parametrize(("make", "message"), NOT_REPLACEABLE)
def test_what_is_not_ours_is_refused_and_left_untouched(tmp_path: Path, make: Callable[[Path], object],
                                                        message: str) -> None:
    path = tmp_path / "venv"
    make(path)
    before = contents(tmp_path)
    for refuse in (venv.check_replaceable, venv.wipe):
        with pytest.raises(InputError) as info:
            refuse(str(path))
        (problem,) = info.value.problems
        assert problem.startswith(f"{path} ") and message in problem
    assert contents(tmp_path) == before


# -- wipe and restore -----------------------------------------------------------------------


def test_wiping_a_missing_directory_leaves_nothing_to_put_back(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    wiped = venv.wipe(str(root))
    assert (wiped.in_place, wiped.aside) == (False, None)
    a_partial_build(root)
    assert wiped.restore()
    assert not root.exists() and not venv.has_trash(str(root))


def test_an_empty_directory_is_built_in_place_and_emptied_again(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    root.mkdir()
    wiped = venv.wipe(str(root))
    assert (wiped.in_place, wiped.aside) == (True, None)
    assert root.is_dir()
    a_partial_build(root)
    assert wiped.restore()
    assert set(os.listdir(root)) <= {SIGN}  # nothing of the build but the owner file: still ours
    assert not venv.has_trash(str(root))


def test_a_venv_is_moved_whole_into_the_trash_beside_it(old: Path) -> None:
    before = contents(old)
    wiped = venv.wipe(str(old))
    assert not os.path.lexists(old) and not wiped.in_place
    assert wiped.aside is not None and os.path.dirname(wiped.aside) == venv.trash_dir(str(old))
    assert contents(Path(wiped.aside)) == before
    assert venv.has_trash(str(old))


def test_a_venv_that_cannot_be_moved_is_set_aside_inside_itself(old: Path,
                                                                unmovable: Callable[[Path], None]) -> None:
    """A mount point: its contents go into DIR/.cros_venv-old, but the owner file stays (a
    build killed now leaves a DIR that is still ours).
    """
    before = contents(old)
    unmovable(old)
    wiped = venv.wipe(str(old))
    assert wiped.in_place and wiped.aside == str(old / INSIDE_TRASH)
    assert sorted(os.listdir(old)) == sorted([SIGN, INSIDE_TRASH])
    assert contents(old / INSIDE_TRASH) == {k: v for k, v in before.items() if k != SIGN}
    assert venv.is_ours(str(old)) and venv.has_trash(str(old))
    assert not os.path.lexists(venv.trash_dir(str(old)))


def test_an_old_venv_left_inside_by_a_killed_build_is_replaced(old: Path, unmovable: Callable[[Path], None]) -> None:
    (old / INSIDE_TRASH).mkdir()
    (old / INSIDE_TRASH / "stale.py").write_text("from a venv replaced since")
    unmovable(old)
    wiped = venv.wipe(str(old))
    assert wiped.aside is not None and not os.path.lexists(os.path.join(wiped.aside, "stale.py"))
    assert os.path.exists(os.path.join(wiped.aside, MARKER))


@pytest.mark.parametrize("movable", [True, False], ids=["moved-beside", "set-aside-inside"])
def test_restore_puts_the_old_venv_back_byte_for_byte(old: Path, unmovable: Callable[[Path], None],
                                                      movable: bool) -> None:
    before = contents(old)
    if not movable:
        unmovable(old)
    wiped = venv.wipe(str(old))
    a_partial_build(old)
    assert wiped.restore()
    assert contents(old) == before
    assert not venv.has_trash(str(old))


def test_restore_says_so_when_the_old_venv_cannot_be_put_back(old: Path) -> None:
    wiped = venv.wipe(str(old))
    assert wiped.aside is not None
    os.rename(wiped.aside, old.with_name("taken-away"))  # e.g. removed by hand meanwhile
    a_partial_build(old)
    assert not wiped.restore()


# -- the trash ------------------------------------------------------------------------------


def test_the_trash_of_a_venv_is_one_hidden_name_beside_it() -> None:
    """One name (the no-op check looks for leftovers with one lstat); CONTRACT.md lets
    create_venv write there.
    """
    assert venv.trash_dir("/work/repo/.venv") == "/work/repo/..venv.cros_venv-trash"
    assert venv.trash_dir("/work/repo/venv") == "/work/repo/.venv.cros_venv-trash"


TRASH = [
    pytest.param(lambda d: None, False, id="none"),
    pytest.param(lambda d: (d.parent / ".venv.cros_venv-trash" / "x").mkdir(parents=True), True, id="beside"),
    pytest.param(lambda d: (d / INSIDE_TRASH).mkdir(), True, id="inside"),
    pytest.param(lambda d: (d.parent / ".venv.cros_venv-trash-1a2b").mkdir(), True, id="legacy-name"),
    pytest.param(lambda d: (d.parent / ".venv.cros_venv-trash").symlink_to("/nonexistent"), True,
                 id="dangling-symlink"),
    pytest.param(lambda d: (d.parent / ".venv2.cros_venv-trash").mkdir(), False, id="another-venvs-trash"),
    pytest.param(lambda d: (d.parent / ".venv2.cros_venv-trash-1a2b").mkdir(), False, id="another-venvs-legacy"),
]


@pytest.mark.parametrize(("make", "expected"), TRASH)
def test_leftover_trash_is_seen_and_emptied(old: Path, make: Callable[[Path], object], expected: bool) -> None:
    make(old)
    others = {n for n in os.listdir(old.parent) if n.startswith(".venv2")}
    before = {k: v for k, v in contents(old).items() if not k.startswith(INSIDE_TRASH)}
    assert venv.has_trash(str(old)) is expected
    venv.empty_trash(str(old))
    assert not venv.has_trash(str(old))
    assert {n for n in os.listdir(old.parent) if n.startswith(".venv2")} == others  # not ours to empty
    assert contents(old) == before  # the venv itself is untouched


@pytest.mark.parametrize("name", [".venv.cros_venv-trash", ".venv.cros_venv-trash-x"], ids=["trash", "legacy-trash"])
def test_a_trash_name_planted_as_a_symlink_is_unlinked_not_followed(old: Path, name: str) -> None:
    victim = old.parent / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "precious.txt").write_text("keep")
    before = contents(victim)
    (old.parent / name).symlink_to(victim)
    assert venv.has_trash(str(old))
    venv.empty_trash(str(old))
    assert not os.path.lexists(old.parent / name)
    assert contents(victim) == before


def test_emptying_the_trash_never_follows_links_out_of_an_old_venv(old: Path) -> None:
    victim = old.parent / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    (old / "lib" / "link-out").symlink_to(victim)
    venv.wipe(str(old))
    venv.empty_trash(str(old))
    assert not venv.has_trash(str(old))
    assert (victim / "precious.txt").read_text() == "keep"


# -- start, configure, watch ----------------------------------------------------------------


def test_start_signs_the_directory_through_no_planted_symlink(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    root.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (root / SIGN).symlink_to(victim)
    venv.start(Layout(str(root), "3.11"))
    assert not (root / SIGN).is_symlink() and "create_venv" in (root / SIGN).read_text()
    assert victim.read_text() == "precious"


def test_start_where_no_directory_can_be_made_is_a_build_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(BuildError, match=r"cannot create .*/file/venv: Not a directory"):
        venv.start(Layout(str(tmp_path / "file" / "venv"), "3.11"))


def test_configure_writes_an_offline_pip_conf_and_appends_provenance(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "venv"), "3.11")
    venv.start(layout)
    cfg = tmp_path / "venv" / "pyvenv.cfg"
    cfg.write_text("home = /usr/bin\n")
    venv.configure(layout, ["/a/pip_packages", "/b/more wheels"], "cros_venv = 1.2\n")
    assert cfg.read_text() == "home = /usr/bin\ncros_venv = 1.2\n"
    conf = configparser.ConfigParser()  # as pip reads it
    conf.read(tmp_path / "venv" / "pip.conf")
    assert conf.getboolean("global", "no-index")
    assert conf.get("global", "find-links").split("\n") == ["", "/a/pip_packages", "/b/more wheels"]


def test_watch_lists_every_directory_a_wheel_wrote_to_and_premakes_pycache(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "venv"), "3.11")
    site = Path(layout.site_packages)
    placed = [site / "pkg" / "sub", site / "pkg", Path(layout.root, "share", "pkg", "data"), Path(layout.bin)]
    for d in placed:
        d.mkdir(parents=True, exist_ok=True)
    (site / "pkg" / "__pycache__").mkdir()  # already there: fine
    venv.watch(layout, {str(d) for d in placed}, {str(site / "pkg"), str(site / "pkg" / "sub")})
    assert (tmp_path / "venv" / DIRS_FILE).read_bytes().split(b"\n") == [
        b"bin", b"lib/python3.11/site-packages", b"lib/python3.11/site-packages/pkg",
        b"lib/python3.11/site-packages/pkg/sub", b"share", b"share/pkg", b"share/pkg/data"]
    assert {p.parent for p in Path(layout.root).rglob("__pycache__")} == {site, site / "pkg", site / "pkg" / "sub"}


# -- intact ---------------------------------------------------------------------------------


def whole_venv(root: Path) -> tuple[Layout, list[str], str]:
    """A venv as a build leaves it (one package, with a module and a script); returns its
    layout, its dist-info directories and pyvenv.cfg's sha256, what the marker records.
    """
    layout = Layout(str(root), "3.11")
    venv.start(layout)
    site = Path(layout.site_packages)
    (site / "alpha").mkdir(parents=True)
    (site / "alpha" / "__init__.py").write_text("X = 1\n")
    (site / "alpha-1.0.dist-info").mkdir()
    Path(layout.bin).mkdir()
    Path(layout.python).symlink_to(sys.executable)
    Path(layout.bin, "alpha-cli").write_text("#!/venv/bin/python\n")
    with open(site / "alpha-1.0.dist-info" / "RECORD", "w", newline="") as f:
        csv.writer(f).writerows([["alpha/__init__.py", "sha256=x", "6"], ["../../../bin/alpha-cli", "", ""],
                                 ["alpha-1.0.dist-info/RECORD", "", ""]])
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    venv.configure(layout, [WHEEL_DIR], "cros_venv = 1\n")
    venv.watch(layout, {str(site / "alpha"), str(site / "alpha-1.0.dist-info"), layout.bin}, {str(site / "alpha")})
    return layout, ["alpha-1.0.dist-info"], hashlib.sha256((root / "pyvenv.cfg").read_bytes()).hexdigest()


RECORD = "lib/python3.11/site-packages/alpha-1.0.dist-info/RECORD"
DAMAGE = [
    pytest.param(lambda r: (r / "bin/python").unlink(), "{root}/bin/python is missing", id="python-gone"),
    pytest.param(lambda r: (r / "bin/python").unlink() or (r / "bin/python").symlink_to("/nonexistent"),
                 "{root}/bin/python is missing", id="python-dangling"),
    pytest.param(lambda r: (r / "pyvenv.cfg").unlink(), "{root}/pyvenv.cfg is missing", id="pyvenv-cfg-gone"),
    pytest.param(lambda r: (r / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n"),
                 "its pyvenv.cfg was changed", id="pyvenv-cfg-edited"),
    pytest.param(lambda r: (r / "pip.conf").write_text("[global]\nindex-url = https://example.com\n"),
                 "its pip.conf was changed", id="pip-conf-edited"),
    pytest.param(lambda r: (r / "pip.conf").unlink(), "{root}/pip.conf is missing or unreadable", id="pip-conf-gone"),
    pytest.param(lambda r: (r / DIRS_FILE).unlink(), "{root}/.cros_venv.dirs is missing or unreadable",
                 id="dirs-list-gone"),
    pytest.param(lambda r: (r / DIRS_FILE).write_bytes(b""), "its .cros_venv.dirs is not as written",
                 id="dirs-list-emptied"),
    pytest.param(lambda r: (r / RECORD).unlink(), "{root}/" + RECORD + " is missing or unreadable", id="record-gone"),
    pytest.param(lambda r: (r / RECORD).write_bytes(b"\xff\xfe"), "{root}/" + RECORD + " is missing or unreadable",
                 id="record-not-utf8"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/alpha/__init__.py").unlink(),
                 "alpha/__init__.py of alpha-1.0.dist-info is missing", id="module-gone"),
    pytest.param(lambda r: (r / "bin/alpha-cli").unlink(), "../../../bin/alpha-cli of alpha-1.0.dist-info is missing",
                 id="script-gone"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/alpha/__init__.py").write_text("X = 22\n"),
                 "alpha/__init__.py of alpha-1.0.dist-info was replaced (7 bytes, not 6)", id="module-replaced"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/zeta-2.dist-info").mkdir(),
                 "it has packages its requirements do not name (zeta-2.dist-info)", id="package-added"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/old.egg-info").mkdir(),
                 "it has packages its requirements do not name (old.egg-info)", id="egg-info-added"),
]


@pytest.mark.parametrize(("damage", "reason"), DAMAGE)
def test_intact_names_what_is_missing_from_a_marked_venv(tmp_path: Path, damage: Callable[[Path], object],
                                                        reason: str) -> None:
    root = tmp_path / "venv"
    layout, dist_infos, pyvenv_cfg = whole_venv(root)
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], pyvenv_cfg) is None
    damage(root)
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], pyvenv_cfg) == reason.format(root=root)


def test_intact_checks_what_bin_python_runs_and_the_files_virtualenv_made(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    layout, dist_infos, pyvenv_cfg = whole_venv(root)
    python = os.path.realpath(sys.executable)
    files = venv.built_files(layout)
    assert "bin/python" in files and "pyvenv.cfg" in files and ".cros_venv.json" not in files
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], pyvenv_cfg, python=python, files=files) is None
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], pyvenv_cfg, python="/other/python3", files=files) == (
        f"its bin/python runs {python}, not /other/python3")
    (root / "bin/alpha-cli").rename(root / "bin/alpha-cli.bak")
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], pyvenv_cfg, python=python, files=files) in (
        "bin/alpha-cli is missing", "../../../bin/alpha-cli of alpha-1.0.dist-info is missing")
    (root / "bin/alpha-cli.bak").rename(root / "bin/alpha-cli")
    (root / ".gitignore").write_text("*\n")
    files = venv.built_files(layout)
    (root / ".gitignore").unlink()
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], pyvenv_cfg, python=python, files=files) == (
        ".gitignore is missing")


def test_a_venv_configured_for_another_checkout_is_not_intact(tmp_path: Path) -> None:
    """Its pip.conf installs from the other checkout's wheels."""
    layout, dist_infos, pyvenv_cfg = whole_venv(tmp_path / "venv")
    assert venv.intact(layout, dist_infos, ["/other/pip_packages"], pyvenv_cfg) == "its pip.conf was changed"
