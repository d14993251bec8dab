"""Paths (CONTRACT.md items 1-6 and 9): odd venv directories, planted symlinks, odd
requirements files and pipes, moved, copied and damaged venvs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import OTHER_PYTHONS, ToolRepo
from tests.reliability._common_b import (
    BASE_PKGS,
    BASE_REQS,
    MARKER,
    Outside,
    Runner,
    assert_same_tree,
    check_venv,
    clean_env,
    expect_error,
    site_packages,
    slow_only,
    tree_state,
)
from tests.reliability.conftest import Faults

pytestmark = pytest.mark.e2e



def activated_env(venv_dir: Path) -> str:
    """$VIRTUAL_ENV after sourcing DIR/bin/activate in sh, and the prefix of `python` then."""
    out = subprocess.run(["sh", "-c", '. "$1/bin/activate" && printf "%s\\n" "$VIRTUAL_ENV" && '
                          'python -c "import sys; print(sys.prefix)"', "sh", str(venv_dir)],
                         capture_output=True, text=True, env=clean_env(), timeout=60, errors="surrogateescape")
    assert out.returncode == 0, out.stderr
    return out.stdout


def assert_activates(venv_dir: Path) -> None:
    """bin/activate names this venv (not where it was made) and puts its python first."""
    lines = activated_env(venv_dir).splitlines()
    assert len(lines) == 2, lines
    assert os.path.realpath(lines[0]) == os.path.realpath(venv_dir), f"activate names {lines[0]}"
    assert os.path.realpath(lines[1]) == os.path.realpath(venv_dir), f"python in the activated venv: {lines[1]}"


def build_and_recheck(runner: Runner, faults: Faults, venv_arg: str, venv_dir: Path, reqs: Path,
                      cwd: Path | None = None, args: tuple[str, ...] = ()) -> None:
    """Build, check it works, run again: up to date, nothing touched."""
    faults.round()
    result = runner.run(*args, venv_arg, str(reqs), cwd=cwd)
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, BASE_PKGS)
    assert_activates(venv_dir)
    state = tree_state(venv_dir)
    result = runner.run(*args, venv_arg, str(reqs), cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert_same_tree(state, venv_dir, "an up-to-date venv")


ODD_DIRS = {  # parents exist (a missing parent is its own test)
    "spaces": "with spaces/my venv",
    "unicode": "café/日本",
    "dotdot": "a/../dotdot venv",
    "symlinked-parent": "link/venv",
}


@pytest.mark.parametrize("kind", list(ODD_DIRS), ids=list(ODD_DIRS))
def test_odd_venv_directories(runner: Runner, reqs: Path, tmp_path: Path, faults: Faults, kind: str) -> None:
    for parent in ("a", "real", "with spaces", "café"):
        (tmp_path / parent).mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    arg = str(tmp_path / ODD_DIRS[kind])
    venv_dir = Path(os.path.normpath(arg))
    outside = Outside(faults, [tmp_path], [venv_dir])
    build_and_recheck(runner, faults, arg, venv_dir, reqs)
    if kind == "symlinked-parent":
        assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "venv" / MARKER).is_file()
    outside.check()


@pytest.mark.parametrize("form", [("./-venv",), ("--", "-venv")], ids=["dot-slash", "double-dash"])
def test_a_venv_directory_starting_with_a_dash(runner: Runner, reqs: Path, tmp_path: Path, faults: Faults,
                                               slow: bool, form: tuple[str, ...]) -> None:
    slow_only(form[0], ["--"], slow)
    outside = Outside(faults, [tmp_path], [tmp_path / "-venv"])
    build_and_recheck(runner, faults, form[-1], tmp_path / "-venv", reqs, cwd=tmp_path, args=form[:-1])
    outside.check()


@pytest.mark.parametrize("target_exists", [True, False], ids=["to-empty-dir", "dangling"])
def test_a_venv_directory_that_is_a_symlink_is_built_at_its_target(runner: Runner, reqs: Path, tmp_path: Path,
                                                                   faults: Faults, slow: bool,
                                                                   target_exists: bool) -> None:
    slow_only(str(target_exists), ["False"], slow)
    target = tmp_path / "target"
    if target_exists:
        target.mkdir()
    link = tmp_path / "vlink"
    link.symlink_to(target)
    outside = Outside(faults, [tmp_path], [link], mine=[reqs])
    faults.round()
    result = runner.run(str(link), str(reqs))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    check_venv(faults, link, BASE_PKGS)
    assert (target / MARKER).is_file()
    # A rebuild (other pins) happens at the target too; the link stays a link.
    reqs.write_text("alpha==1.0\nbeta==2.0\n")
    result = runner.run(str(link), str(reqs))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    check_venv(faults, link, {"alpha": "1.0", "beta": "2.0"})
    outside.check()


def test_a_venv_directory_that_is_a_file(runner: Runner, reqs: Path, tmp_path: Path, faults: Faults) -> None:
    path = tmp_path / "venv"
    path.write_text("not a venv\n")
    st = path.stat()
    outside = Outside(faults, [tmp_path], [tmp_path / "venv.lock"])  # the file itself is watched
    faults.inject()
    faults.round()
    expect_error(runner.run(str(path), str(reqs)), {2}, [str(path)])
    assert path.read_text() == "not a venv\n" and path.stat().st_mtime_ns == st.st_mtime_ns
    outside.check()


def test_a_missing_parent_is_created(runner: Runner, reqs: Path, tmp_path: Path, faults: Faults) -> None:
    venv_dir = tmp_path / "x" / "y" / "z" / "venv"
    outside = Outside(faults, [tmp_path], [tmp_path / "x"])
    faults.round()
    result = runner.run(str(venv_dir), str(reqs))
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, BASE_PKGS)
    outside.check()


@pytest.mark.parametrize("space", [False, True], ids=["long", "long-with-space"])
def test_a_long_path_still_runs_console_scripts(runner: Runner, reqs: Path, tmp_path: Path, slow: bool, faults: Faults,
                                                space: bool) -> None:
    slow_only(str(space), ["True"], slow)
    deep = tmp_path / ("d" * 60) / ("e" * 60 + (" x" if space else "")) / "venv"
    assert len(os.fsencode(deep / "bin" / "python")) > 127
    deep.parent.mkdir(parents=True)
    outside = Outside(faults, [tmp_path], [deep])
    faults.round()
    result = runner.run(str(deep), str(reqs))
    assert result.returncode == 0, result.stderr
    check_venv(faults, deep, BASE_PKGS)  # runs bin/alpha-cli
    assert_activates(deep)
    pip = subprocess.run([str(deep / "bin" / "pip"), "--version"], capture_output=True, text=True, env=clean_env())
    assert pip.returncode == 0 and str(deep) in pip.stdout, pip.stdout + pip.stderr
    outside.check()


# -- planted symlinks --------------------------------------------------------------------------------


LOCKS = ["new-venv", "existing-venv", "dangling"]


@pytest.mark.parametrize("case", LOCKS, ids=LOCKS)
def test_a_lock_file_planted_as_a_symlink(runner: Runner, reqs: Path, tmp_path: Path, slow: bool, faults: Faults,
                                          case: str) -> None:
    slow_only(case, ["new-venv"], slow)
    venv_dir = tmp_path / "venv"
    lock = tmp_path / "venv.lock"
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    st = precious.stat()
    if case == "existing-venv":
        assert runner.run(str(venv_dir), str(reqs)).returncode == 0
        reqs.write_text("alpha==1.0\nbeta==2.0\n")  # a rebuild is needed
        lock.unlink()
    before = tree_state(venv_dir)
    lock.symlink_to(precious if case != "dangling" else tmp_path / "created-through-the-link")
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs))
    assert precious.read_text() == "precious\n" and precious.stat().st_mtime_ns == st.st_mtime_ns, \
        f"the file DIR.lock links to was written (exit {result.returncode})"
    assert not (tmp_path / "created-through-the-link").exists(), "a file was created through DIR.lock"
    expect_error(result, {2}, ["venv.lock"])
    assert lock.is_symlink()
    assert_same_tree(before, venv_dir)
    outside.check()


MARKERS = ["rebuild", "key-refresh", "foreign-file-in-empty-dir"]


@pytest.mark.parametrize("case", MARKERS, ids=MARKERS)
def test_a_marker_planted_as_a_symlink_is_never_written_through(runner: Runner, reqs: Path, tmp_path: Path,
                                                                faults: Faults, slow: bool, case: str) -> None:
    slow_only(case, ["foreign-file-in-empty-dir", "rebuild"], slow)
    venv_dir = tmp_path / "venv"
    elsewhere = tmp_path / "elsewhere.json"
    expected = BASE_PKGS
    if case == "foreign-file-in-empty-dir":
        elsewhere.write_text("precious, not a marker\n")
        venv_dir.mkdir()
    else:
        assert runner.run(str(venv_dir), str(reqs)).returncode == 0
        elsewhere.write_bytes((venv_dir / MARKER).read_bytes())
        (venv_dir / MARKER).unlink()
        if case == "rebuild":
            reqs.write_text("alpha==1.0\nbeta==2.0\n")
            expected = {"alpha": "1.0", "beta": "2.0"}
        else:
            reqs.write_text(BASE_REQS + "# a comment: same spec, new no-op key\n")
    (venv_dir / MARKER).symlink_to(elsewhere)
    content, st = elsewhere.read_bytes(), elsewhere.stat()
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs))
    assert elsewhere.read_bytes() == content and elsewhere.stat().st_mtime_ns == st.st_mtime_ns, \
        "the file the marker symlink points to was written"
    if case == "foreign-file-in-empty-dir" and result.returncode == 2:
        expect_error(result, {2}, [str(venv_dir)])
    else:
        assert result.returncode == 0, result.stderr
        check_venv(faults, venv_dir, expected)
    outside.check()


@pytest.mark.parametrize("run", ["up-to-date", "rebuild"])
def test_trash_planted_as_a_symlink_is_not_followed(built: tuple[ToolRepo, Path, Path], tmp_path: Path,
                                                    faults: Faults, slow: bool, run: str) -> None:
    """`.NAME.cros_venv-trash` and `.NAME.cros_venv-trash-x` (trash names) planted as symlinks to
    directories with content: whatever create_venv does with trash, the content stays.
    """
    slow_only(run, ["up-to-date"], slow)
    repo, venv_dir, reqs = built
    runner = Runner(repo, tmp_path)
    kept = {}
    for name in (".venv.cros_venv-trash", ".venv.cros_venv-trash-x"):
        keep = tmp_path / f"keep{name}"
        (keep / "sub").mkdir(parents=True)
        (keep / "file.txt").write_text("keep me\n")
        (keep / "sub" / "deep.txt").write_text("me too\n")
        kept[keep] = tree_state(keep)
        (tmp_path / name).symlink_to(keep, target_is_directory=True)
    expected = BASE_PKGS
    if run == "rebuild":
        reqs.write_text("alpha==1.0\nbeta==2.0\n")
        expected = {"alpha": "1.0", "beta": "2.0"}
    outside = Outside(faults, [tmp_path], [venv_dir], mine=[reqs])
    faults.inject(2)
    faults.round()
    result = runner.run(str(venv_dir), str(reqs))
    for keep, state in kept.items():
        assert_same_tree(state, keep, "a directory that a trash-named symlink points to")
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, expected)
    outside.check()


# -- requirements files ------------------------------------------------------------------------------

REQ_NAMES = {"spaces": b"my reqs.txt", "unicode": "réqs 日本.txt".encode(), "non-utf8": b"r\xff.txt",
             "all-three": "my réqs 日本 ".encode() + b"\xff.txt"}


@pytest.mark.parametrize("kind", list(REQ_NAMES), ids=list(REQ_NAMES))
def test_odd_requirements_file_names(runner: Runner, wheelhouse: ToolRepo, tmp_path: Path, faults: Faults,
                                     slow: bool, kind: str) -> None:
    slow_only(kind, ["spaces", "unicode", "non-utf8"], slow)
    path = os.fsdecode(os.path.join(os.fsencode(wheelhouse.root), REQ_NAMES[kind]))
    Path(path).write_text(BASE_REQS)
    venv_dir = tmp_path / "venv"
    outside = Outside(faults, [tmp_path], [venv_dir], mine=[Path(path)])
    faults.round()
    result = runner.run(str(venv_dir), path)
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, BASE_PKGS)
    state = tree_state(venv_dir)
    assert runner.run(str(venv_dir), path).returncode == 0
    assert_same_tree(state, venv_dir, "an up-to-date venv")
    # and a problem in that file is reported in one line that names it
    Path(path).write_text(BASE_REQS + "nope==1.0\n")
    result = runner.run(str(venv_dir), path)
    lines = expect_error(result, {2})
    shown = os.path.basename(path)
    assert shown in lines[0] or os.fsencode(shown).decode("ascii", "backslashreplace") in lines[0], lines
    assert ":3:" in lines[0], lines
    assert_same_tree(state, venv_dir)
    outside.check()


def piped_text() -> str:
    return "alpha==1.0\nbeta==2.0\ngamma==1.0\n"


PIPED = {"alpha": "1.0", "beta": "2.0", "gamma": "1.0"}


def no_rebuild(state: dict[str, tuple[object, ...]], venv_dir: Path) -> None:
    """Up to date: nothing rebuilt (the marker may get a fresh no-op key, its spec is the same)."""
    spec = json.loads((venv_dir / MARKER).read_text())["spec"]
    now = tree_state(venv_dir)
    state = {k: v for k, v in state.items() if k != MARKER}
    now.pop(MARKER, None)
    changed = sorted(set(state.items()) ^ set(now.items()))
    assert not changed, f"the venv was touched: {changed[:6]}"
    assert json.loads((venv_dir / MARKER).read_text())["spec"] == spec


def test_requirements_from_stdin(runner: Runner, tmp_path: Path, faults: Faults) -> None:
    venv_dir = tmp_path / "venv"
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.round()
    result = runner.run(str(venv_dir), "/dev/stdin", input=piped_text())
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, PIPED)
    state = tree_state(venv_dir)
    result = runner.run(str(venv_dir), "/dev/stdin", input=piped_text())
    assert result.returncode == 0, result.stderr
    no_rebuild(state, venv_dir)
    check_venv(faults, venv_dir, PIPED)
    outside.check()


@pytest.fixture
def fifo(runner: Runner) -> Iterator[tuple[Path, list[threading.Thread]]]:
    path = runner.own / "requirements.fifo"
    os.mkfifo(path)
    writers: list[threading.Thread] = []
    yield path, writers
    for w in writers:  # release a writer nobody read from
        while w.is_alive():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                os.read(fd, 1 << 16)
                os.close(fd)
            except OSError:
                pass
            w.join(0.1)


def write_once(path: Path, text: str, writers: list[threading.Thread]) -> None:
    """A writer that opens the FIFO once and writes `text` (as `cmd > fifo` would)."""
    def write() -> None:
        with open(path, "w") as f:
            f.write(text)
    t = threading.Thread(target=write, daemon=True)
    t.start()
    writers.append(t)


def test_requirements_from_a_fifo(runner: Runner, tmp_path: Path, faults: Faults,
                                  fifo: tuple[Path, list[threading.Thread]]) -> None:
    path, writers = fifo
    venv_dir = tmp_path / "venv"
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.round()
    write_once(path, piped_text(), writers)
    try:
        result = runner.run(str(venv_dir), str(path), timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("create_venv hung on a FIFO written once (it opened it more than once?)")
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, PIPED)
    state = tree_state(venv_dir)
    write_once(path, piped_text(), writers)
    try:
        result = runner.run(str(venv_dir), str(path), timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("create_venv hung on a FIFO written once (it opened it more than once?)")
    assert result.returncode == 0, result.stderr
    no_rebuild(state, venv_dir)
    outside.check()


def test_an_include_with_a_space_in_its_name(runner: Runner, wheelhouse: ToolRepo, tmp_path: Path,
                                             faults: Faults) -> None:
    wheelhouse.requirements("name with space.txt", "gamma==1.0\n")
    main = wheelhouse.requirements("main.txt", BASE_REQS + '-r "name with space.txt"\n')
    venv_dir = tmp_path / "venv"
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.round()
    result = runner.run(str(venv_dir), str(main))
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, {**BASE_PKGS, "gamma": "1.0"})
    outside.check()


# -- moved, copied, damaged ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["mv", "cp -a"])
def test_a_moved_or_copied_venv_is_rebuilt_for_its_new_path(built: tuple[ToolRepo, Path, Path], tmp_path: Path,
                                                            faults: Faults, how: str) -> None:
    repo, venv_dir, reqs = built
    runner = Runner(repo, tmp_path)
    new = tmp_path / "elsewhere"
    if how == "mv":
        os.rename(venv_dir, new)
    else:
        subprocess.run(["cp", "-a", str(venv_dir), str(new)], check=True)
        original = tree_state(venv_dir)
    outside = Outside(faults, [tmp_path], [new])
    faults.inject()
    faults.round()
    result = runner.run(str(new), str(reqs))
    assert result.returncode == 0, result.stderr
    check_venv(faults, new, BASE_PKGS)  # bin/alpha-cli runs: its #! names the new path
    assert_activates(new)
    old = os.fsencode(venv_dir)
    naming_old = [p.name for p in (new / "bin").iterdir() if p.is_file() and not p.is_symlink()
                  and old in p.read_bytes()]
    assert not naming_old, f"scripts that still name the old path {venv_dir}: {naming_old}"
    if how == "cp -a":  # the original is untouched and still up to date
        assert_same_tree(original, venv_dir)
        assert runner.run(str(venv_dir), str(reqs)).returncode == 0
        assert_same_tree(original, venv_dir)
    outside.check()


DAMAGES = ["bin-python-deleted", "lib-deleted", "pip-uninstall-beta", "package-file-deleted",
           "bin-python-retargeted", "activate-deleted", "python3-link-deleted", "pip-install-extra",
           "package-file-replaced"]


def _other_interpreter(venv_dir: Path) -> str:
    """Any interpreter (or, failing that, program) other than the one bin/python runs."""
    mine = os.path.realpath(venv_dir / "bin" / "python")
    found = [os.path.realpath(p) for p in (*OTHER_PYTHONS, "/usr/bin/python3", "/bin/sh")]
    return next(p for p in found if os.path.exists(p) and p != mine)


@pytest.mark.parametrize("damage", DAMAGES, ids=DAMAGES)
def test_a_damaged_venv_is_rebuilt(built: tuple[ToolRepo, Path, Path], tmp_path: Path, slow: bool, faults: Faults,
                                   damage: str) -> None:
    slow_only(damage, ["lib-deleted"], slow)
    repo, venv_dir, reqs = built
    runner = Runner(repo, tmp_path)
    if damage == "bin-python-deleted":
        (venv_dir / "bin" / "python").unlink()
    elif damage == "lib-deleted":
        shutil.rmtree(venv_dir / "lib")
    elif damage == "pip-uninstall-beta":
        out = subprocess.run([str(venv_dir / "bin" / "python"), "-m", "pip", "uninstall", "-y", "beta"],
                             capture_output=True, text=True, env=clean_env(), timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
    elif damage == "bin-python-retargeted":  # `ln -sfn` to another interpreter
        (venv_dir / "bin" / "python").unlink()
        (venv_dir / "bin" / "python").symlink_to(_other_interpreter(venv_dir))
    elif damage == "activate-deleted":  # virtualenv's files are no package's RECORD's
        (venv_dir / "bin" / "activate").unlink()
    elif damage == "python3-link-deleted":
        (venv_dir / "bin" / "python3").unlink()
    elif damage == "pip-install-extra":  # a package the requirements do not name, offline from pip.conf
        env = {**clean_env(), "PIP_CONFIG_FILE": str(venv_dir / "pip.conf")}
        out = subprocess.run([str(venv_dir / "bin" / "python"), "-m", "pip", "install", "gamma==1.0"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
    elif damage == "package-file-replaced":  # another file renamed over a module (not an edit through the link)
        fake = tmp_path / "fake.py"
        fake.write_text("raise SystemExit('replaced')\n")
        os.replace(fake, site_packages(venv_dir) / "beta.py")
    else:
        (site_packages(venv_dir) / "beta.py").unlink()
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs))
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, BASE_PKGS)  # exactly alpha and beta (and pip), and they work
    for name in ("activate", "python3"):
        assert (venv_dir / "bin" / name).exists(), f"bin/{name} was not made again"
    outside.check()
