"""replace: who may wipe a directory, moving a venv aside and back, the trash."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Callable

import pytest

from cros_venv import replace, venv
from cros_venv.errors import InputError
from cros_venv.names import INSIDE_TRASH, MARKER, SIGN
from cros_venv.venv import Layout
from tests.conftest import contents


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
    assert replace.is_ours(str(directory)) is ours


def test_a_missing_directory_is_not_ours_but_may_be_created(tmp_path: Path) -> None:
    assert not replace.is_ours(str(tmp_path / "missing"))
    replace.check_replaceable(str(tmp_path / "missing"))


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
    for refuse in (replace.check_replaceable, replace.wipe):
        with pytest.raises(InputError) as info:
            refuse(str(path))
        (problem,) = info.value.problems
        assert problem.startswith(f"{path} ") and message in problem
    assert contents(tmp_path) == before


# -- wipe and restore -----------------------------------------------------------------------


def test_wiping_a_missing_directory_leaves_nothing_to_put_back(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    wiped = replace.wipe(str(root))
    assert (wiped.in_place, wiped.aside) == (False, None)
    a_partial_build(root)
    assert wiped.restore()
    assert not root.exists() and not replace.has_trash(str(root))


def test_an_empty_directory_is_built_in_place_and_emptied_again(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    root.mkdir()
    wiped = replace.wipe(str(root))
    assert (wiped.in_place, wiped.aside) == (True, None)
    assert root.is_dir()
    a_partial_build(root)
    assert wiped.restore()
    assert set(os.listdir(root)) <= {SIGN}  # nothing of the build but the owner file: still ours
    assert not replace.has_trash(str(root))


def test_a_venv_is_moved_whole_into_the_trash_beside_it(old: Path) -> None:
    before = contents(old)
    wiped = replace.wipe(str(old))
    assert not os.path.lexists(old) and not wiped.in_place
    assert wiped.aside is not None and os.path.dirname(wiped.aside) == replace.trash_dir(str(old))
    assert contents(Path(wiped.aside)) == before
    assert replace.has_trash(str(old))


def test_a_venv_that_cannot_be_moved_is_set_aside_inside_itself(old: Path,
                                                                unmovable: Callable[[Path], None]) -> None:
    """A mount point: its contents go into DIR/.cros_venv-old, but the owner file stays (a
    build killed now leaves a DIR that is still ours).
    """
    before = contents(old)
    unmovable(old)
    wiped = replace.wipe(str(old))
    assert wiped.in_place and wiped.aside == str(old / INSIDE_TRASH)
    assert sorted(os.listdir(old)) == sorted([SIGN, INSIDE_TRASH])
    assert contents(old / INSIDE_TRASH) == {k: v for k, v in before.items() if k != SIGN}
    assert replace.is_ours(str(old)) and replace.has_trash(str(old))
    assert not os.path.lexists(replace.trash_dir(str(old)))


def test_an_old_venv_left_inside_by_a_killed_build_is_replaced(old: Path, unmovable: Callable[[Path], None]) -> None:
    (old / INSIDE_TRASH).mkdir()
    (old / INSIDE_TRASH / "stale.py").write_text("from a venv replaced since")
    unmovable(old)
    wiped = replace.wipe(str(old))
    assert wiped.aside is not None and not os.path.lexists(os.path.join(wiped.aside, "stale.py"))
    assert os.path.exists(os.path.join(wiped.aside, MARKER))


@pytest.mark.parametrize("movable", [True, False], ids=["moved-beside", "set-aside-inside"])
def test_restore_puts_the_old_venv_back_byte_for_byte(old: Path, unmovable: Callable[[Path], None],
                                                      movable: bool) -> None:
    before = contents(old)
    if not movable:
        unmovable(old)
    wiped = replace.wipe(str(old))
    a_partial_build(old)
    assert wiped.restore()
    assert contents(old) == before
    assert not replace.has_trash(str(old))


def test_restore_says_so_when_the_old_venv_cannot_be_put_back(old: Path) -> None:
    wiped = replace.wipe(str(old))
    assert wiped.aside is not None
    os.rename(wiped.aside, old.with_name("taken-away"))  # e.g. removed by hand meanwhile
    a_partial_build(old)
    assert not wiped.restore()


# -- the trash ------------------------------------------------------------------------------


def test_the_trash_of_a_venv_is_one_hidden_name_beside_it() -> None:
    """One name (the no-op check looks for leftovers with one lstat); CONTRACT.md lets
    create_venv write there.
    """
    assert replace.trash_dir("/work/repo/.venv") == "/work/repo/..venv.cros_venv-trash"
    assert replace.trash_dir("/work/repo/venv") == "/work/repo/.venv.cros_venv-trash"


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
    assert replace.has_trash(str(old)) is expected
    replace.empty_trash(str(old))
    assert not replace.has_trash(str(old))
    assert {n for n in os.listdir(old.parent) if n.startswith(".venv2")} == others  # not ours to empty
    assert contents(old) == before  # the venv itself is untouched


@pytest.mark.parametrize("name", [".venv.cros_venv-trash", ".venv.cros_venv-trash-x"], ids=["trash", "legacy-trash"])
def test_a_trash_name_planted_as_a_symlink_is_unlinked_not_followed(old: Path, name: str) -> None:
    victim = old.parent / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "precious.txt").write_text("keep")
    before = contents(victim)
    (old.parent / name).symlink_to(victim)
    assert replace.has_trash(str(old))
    replace.empty_trash(str(old))
    assert not os.path.lexists(old.parent / name)
    assert contents(victim) == before


def test_emptying_the_trash_never_follows_links_out_of_an_old_venv(old: Path) -> None:
    victim = old.parent / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    (old / "lib" / "link-out").symlink_to(victim)
    replace.wipe(str(old))
    replace.empty_trash(str(old))
    assert not replace.has_trash(str(old))
    assert (victim / "precious.txt").read_text() == "keep"
