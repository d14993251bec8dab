"""venv: signing, configuring and watching a venv, and what makes a venv whole (what a marker
alone cannot prove).
"""

from __future__ import annotations

import configparser
import csv
import os
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from cros_venv import venv
from cros_venv.digest import record_hash
from cros_venv.errors import BuildError
from cros_venv.names import DIRS_FILE, SIGN
from cros_venv.venv import Layout

WHEEL_DIR = "/checkout/pip_packages"


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


def whole_venv(root: Path) -> tuple[Layout, list[str], venv.Survey]:
    """A venv as a build leaves it (one package, with a module and a script, and
    virtualenv's .pth), a minute old; returns its layout, its dist-info directories and its
    survey, what the marker records.
    """
    layout = Layout(str(root), "3.11")
    venv.start(layout)
    site = Path(layout.site_packages)
    (site / "alpha").mkdir(parents=True)
    (site / "alpha" / "__init__.py").write_text("X = 1\n")
    (site / "_virtualenv.pth").write_text("import _virtualenv\n")
    (site / "alpha-1.0.dist-info").mkdir()
    Path(layout.bin).mkdir()
    Path(layout.python).symlink_to(sys.executable)
    Path(layout.bin, "alpha-cli").write_text("#!/venv/bin/python\n")
    Path(layout.bin, "activate").write_text("# activate\n")
    with open(site / "alpha-1.0.dist-info" / "RECORD", "w", newline="") as f:
        csv.writer(f).writerows([["alpha/__init__.py", record_hash(b"X = 1\n"), "6"],
                                 ["../../../bin/alpha-cli", record_hash(b"#!/venv/bin/python\n"), "19"],
                                 ["alpha-1.0.dist-info/RECORD", "", ""]])
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    venv.configure(layout, [WHEEL_DIR], "cros_venv = 1\n")
    venv.watch(layout, {str(site / "alpha"), str(site / "alpha-1.0.dist-info"), layout.bin}, {str(site / "alpha")})
    age(root)
    return layout, ["alpha-1.0.dist-info"], venv.survey(layout)


def age(root: Path, seconds: int = 60) -> None:
    """Set every file's mtime back: a change now is later than the build by more than the
    file system clock's tick."""
    then = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (then, then), follow_symlinks=False)


def same_size(path: Path, data: bytes) -> None:
    assert len(data) == path.stat().st_size
    path.write_bytes(data)


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
    pytest.param(lambda r: (r / "pip.conf").unlink(), "pip.conf is missing", id="pip-conf-gone"),
    pytest.param(lambda r: (r / DIRS_FILE).unlink(), ".cros_venv.dirs is missing",
                 id="dirs-list-gone"),
    pytest.param(lambda r: (r / DIRS_FILE).write_bytes(b""), "its .cros_venv.dirs is not as written",
                 id="dirs-list-emptied"),
    pytest.param(lambda r: (r / RECORD).unlink(), "{root}/" + RECORD + " is missing or unreadable", id="record-gone"),
    pytest.param(lambda r: (r / RECORD).write_bytes(b"\xff\xfe"), "{root}/" + RECORD + " is missing or unreadable",
                 id="record-not-utf8"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/alpha/__init__.py").unlink(),
                 "alpha/__init__.py of alpha-1.0.dist-info is missing", id="module-gone"),
    pytest.param(lambda r: (r / "bin/alpha-cli").unlink(), "bin/alpha-cli is missing", id="script-gone"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/alpha/__init__.py").write_text("X = 22\n"),
                 "alpha/__init__.py of alpha-1.0.dist-info was replaced (7 bytes, not 6)", id="module-replaced"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/zeta-2.dist-info").mkdir(),
                 "it has packages its requirements do not name (zeta-2.dist-info)", id="package-added"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/old.egg-info").mkdir(),
                 "it has packages its requirements do not name (old.egg-info)", id="egg-info-added"),
    pytest.param(lambda r: same_size(r / DIRS_FILE, b"\n".join(sorted((r / DIRS_FILE).read_bytes().split(b"\n"),
                                                                      reverse=True))),
                 "its .cros_venv.dirs is not as written", id="dirs-list-reordered"),
    pytest.param(lambda r: (r / DIRS_FILE).write_bytes(b"bin"), "its .cros_venv.dirs is not as written",
                 id="dirs-list-shortened-to-bin"),
    pytest.param(lambda r: same_size(r / "lib/python3.11/site-packages/alpha/__init__.py", b"X = 2\n"),
                 "alpha/__init__.py of alpha-1.0.dist-info was changed after the build", id="module-same-size"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/alpha/__init__.py").unlink() or (
                 r / "lib/python3.11/site-packages/alpha/__init__.py").write_text("X = 3\n"),
                 "alpha/__init__.py of alpha-1.0.dist-info was changed after the build", id="module-new-file"),
    pytest.param(lambda r: same_size(r / "bin/alpha-cli", b"#!/evil/bin/python\n"),
                 "its bin/alpha-cli was changed after the build", id="script-same-size"),
    pytest.param(lambda r: same_size(r / RECORD, (r / RECORD).read_bytes().replace(b"X", b"Y")),
                 "alpha-1.0.dist-info/RECORD of alpha-1.0.dist-info was changed after the build",
                 id="record-same-size"),
    pytest.param(lambda r: same_size(r / "bin/activate", b"# ACTIVATE\n"), "its bin/activate was changed after the build",
                 id="activate-same-size"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/evil.pth").write_text("import os\n"),
                 "its site-packages has what no package installed (evil.pth)", id="pth-added"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/stray.py").write_text(""),
                 "its site-packages has what no package installed (stray.py)", id="module-added"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/_virtualenv.pth").unlink(),
                 "its site-packages lost _virtualenv.pth", id="virtualenv-pth-gone"),
    pytest.param(lambda r: (r / "lib/python3.11/site-packages/_virtualenv.pth").write_text("import evil\n"),
                 "its site-packages/_virtualenv.pth was changed after the build", id="virtualenv-pth-edited"),
    pytest.param(lambda r: (r / "bin/pyvenv.cfg").write_text("include-system-site-packages = true\n"),
                 "it has files the build did not make (bin/pyvenv.cfg)", id="bin-file-added"),
    pytest.param(lambda r: (r / "notes.txt").write_text(""), "it has files the build did not make (notes.txt)",
                 id="top-level-file-added"),
]


@pytest.mark.parametrize(("damage", "reason"), DAMAGE)
def test_intact_names_what_is_missing_from_a_marked_venv(tmp_path: Path, damage: Callable[[Path], object],
                                                        reason: str) -> None:
    root = tmp_path / "venv"
    layout, dist_infos, built = whole_venv(root)
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], built) is None
    damage(root)
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], built) == reason.format(root=root)


def test_a_file_rewritten_with_the_same_bytes_is_intact(tmp_path: Path) -> None:
    """Written after the build, so its sha256 is checked against RECORD: it matches."""
    root = tmp_path / "venv"
    layout, dist_infos, built = whole_venv(root)
    module = root / "lib/python3.11/site-packages/alpha/__init__.py"
    module.unlink()
    module.write_text("X = 1\n")
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], built) is None


def test_bytecode_written_after_the_build_is_intact(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    layout, dist_infos, built = whole_venv(root)
    (root / "lib/python3.11/site-packages/alpha/__pycache__/__init__.cpython-311.pyc").write_bytes(b"pyc")
    (root / "lib/python3.11/site-packages/__pycache__/_virtualenv.cpython-311.pyc").write_bytes(b"pyc")
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], built) is None


def test_the_survey_round_trips_through_the_marker_json(tmp_path: Path) -> None:
    _, _, built = whole_venv(tmp_path / "venv")
    assert venv.Survey.from_json(built.to_json()) == built
    assert "_virtualenv.pth" in built.site_packages and "bin/activate" in built.files
    broken: list[object] = [{**built.to_json(), "settled_ns": "1"}, {**built.to_json(), "site_packages": [1]}, [],
                            {k: v for k, v in built.to_json().items() if k != "dirs_file"}]
    for broken_one in broken:
        assert venv.Survey.from_json(broken_one) is None


def test_intact_checks_what_bin_python_runs_and_the_files_virtualenv_made(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    layout, dist_infos, built = whole_venv(root)
    python = os.path.realpath(sys.executable)
    files = built.files
    assert "bin/python" in files and "pyvenv.cfg" in files and ".cros_venv.json" not in files
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], built, python=python) is None
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], built, python="/other/python3") == (
        f"its bin/python runs {python}, not /other/python3")
    (root / "bin/alpha-cli").rename(root / "bin/alpha-cli.bak")
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], built, python=python) in (
        "bin/alpha-cli is missing", "../../../bin/alpha-cli of alpha-1.0.dist-info is missing")
    (root / "bin/alpha-cli.bak").rename(root / "bin/alpha-cli")
    (root / ".gitignore").write_text("*\n")
    age(root)
    built = venv.survey(layout)
    (root / ".gitignore").unlink()
    assert venv.intact(layout, dist_infos, [WHEEL_DIR], built, python=python) == ".gitignore is missing"


def test_a_venv_configured_for_another_checkout_is_not_intact(tmp_path: Path) -> None:
    """Its pip.conf installs from the other checkout's wheels."""
    layout, dist_infos, built = whole_venv(tmp_path / "venv")
    assert venv.intact(layout, dist_infos, ["/other/pip_packages"], built) == "its pip.conf was changed"
