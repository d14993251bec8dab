"""What an independent break-it session found create_venv doing wrong (each test failed
before its fix): output that cannot be written, paths a venv cannot live at, inputs a
rebuild would destroy, and an interpreter wrapper that never answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from cros_venv import store
from tests.conftest import PYTHON, ToolRepo, WheelSpec
from tests.test_create_venv import assert_complete

pytestmark = pytest.mark.e2e

REQS = "alpha==1.0\nbeta==1.0\n"


def one_error(out: subprocess.CompletedProcess[str], *words: str) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("create_venv: error: ") and all(w in line for w in words), line
    return line


def test_a_closed_stderr_still_builds(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """Cron jobs and daemons: `create_venv ... 2>&-` (Python's sys.stderr is None)."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    out = subprocess.run(["/bin/sh", "-c", 'exec "$@" 2>&-', "sh", PYTHON, str(wheelhouse.root / "create_venv"),
                          str(venv_dir), str(reqs)], env=wheelhouse.env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


def test_a_reader_that_goes_away_does_not_stop_the_build(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """`create_venv -v ... 2>&1 | head -1`: the pipe closes after the first line; the build
    goes on, and exits 0 (not 120, Python's code for a failed flush at exit)."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    proc = subprocess.Popen([PYTHON, str(wheelhouse.root / "create_venv"), "-v", str(venv_dir), str(reqs)],
                            env=wheelhouse.env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    proc.stderr.readline()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


@pytest.mark.parametrize("char", ["\t", "\n", "\x7f"], ids=["tab", "newline", "del"])
def test_a_venv_path_with_a_control_character_is_refused(wheelhouse: ToolRepo, tmp_path: Path, char: str) -> None:
    """Its scripts' #! lines could not name it (a tab ends the interpreter's name; a newline
    ends the line; other control characters are refused with them): exit 2 before anything
    is made."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / f"odd{char}dir" / "venv"
    one_error(wheelhouse.run(str(venv_dir), str(reqs)), "control character", "choose another directory")
    assert not venv_dir.parent.exists()


def test_requirements_inside_the_venv_are_refused_and_kept(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """A rebuild replaces DIR: a requirements file (or one it includes) inside it would be lost."""
    venv_dir = tmp_path / "venv"
    first = wheelhouse.requirements("r.txt", "beta==1.0\n")
    assert wheelhouse.run(str(venv_dir), str(first)).returncode == 0
    inside = venv_dir / "req.txt"
    inside.write_text(REQS)
    one_error(wheelhouse.run(str(venv_dir), str(inside)), str(inside), "inside the venv directory")
    assert inside.read_text() == REQS
    included = venv_dir / "more.txt"
    included.write_text("alpha==1.0\n")
    outer = wheelhouse.requirements("outer.txt", f"beta==1.0\n-r {included}\n")
    one_error(wheelhouse.run(str(venv_dir), str(outer)), str(included), "inside the venv directory")
    assert included.read_text() == "alpha==1.0\n"
    assert_complete(venv_dir, {"beta": "1.0"})  # the venv as it was


def test_a_cache_inside_the_venv_is_refused(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    env = wheelhouse.env(CROS_VENV_CACHE=str(venv_dir / "cache"))
    one_error(wheelhouse.run(str(venv_dir), str(reqs), env=env), "CROS_VENV_CACHE", "inside the venv directory")
    assert not venv_dir.exists()


def test_a_python_wrapper_that_never_answers_is_an_error_not_a_hang(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", REQS)
    script = tmp_path / "python-wrapper"
    script.write_text("#!/bin/sh\nexec sleep 1000\n")
    script.chmod(0o755)
    start = time.monotonic()
    out = wheelhouse.run("--python", str(script), str(tmp_path / "venv"), str(reqs), timeout=60,
                         env=wheelhouse.env(CROS_VENV_PYTHON_TIMEOUT="2"))
    one_error(out, "is a script that did not say which interpreter it runs")
    assert time.monotonic() - start < 4  # asked once (2 s), not once by the no-op check and again by the build
    assert not (tmp_path / "venv").exists()


def test_the_closed_stderr_case_is_not_a_shell_artefact() -> None:
    """The shell form above does close fd 2 (else the first test would prove nothing)."""
    out = subprocess.run(["/bin/sh", "-c", 'exec "$@" 2>&-', "sh", PYTHON, "-c", "import sys; print(sys.stderr)"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "None"


# -- a second break-it session, on the no-op without os and the checks above ------------


def test_stdin_stdout_and_stderr_all_closed_on_a_cold_cache(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """`<&- >&- 2>&-`: the cache lock took fd 0 and a worker's job pipe fds 1 and 2, which a
    forked worker keeps: it never saw its pipe's end and the build hung for ever."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    env = wheelhouse.env(CROS_VENV_CACHE=str(tmp_path / "cold-cache"))
    out = subprocess.run(["/bin/sh", "-c", 'exec "$@" <&- >&- 2>&-', "sh", PYTHON,
                          str(wheelhouse.root / "create_venv"), str(venv_dir), str(reqs)], env=env, timeout=120)
    assert out.returncode == 0
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


def test_a_symlinked_bin_directory_finds_the_real_checkout(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """bin/create_venv is a link to ../create_venv; reached through a link to bin/, the
    checkout was taken as `LINK/..` (abspath before realpath): the no-op key named a
    checkout that does not exist, and runs by the two paths rewrote the marker in turn."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "bin").symlink_to(wheelhouse.root / "bin")
    ways = [str(wheelhouse.root / "create_venv"), str(tmp_path / "elsewhere" / "bin" / "create_venv")]
    for way in ways:
        out = subprocess.run([PYTHON, way, str(venv_dir), str(reqs)], env=wheelhouse.env(), capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    marker = venv_dir / ".cros_venv.json"
    before = marker.stat()
    for way in ways * 2:
        out = subprocess.run([PYTHON, way, "-v", str(venv_dir), str(reqs)], env=wheelhouse.env(), capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and "is up to date" in out.stderr, out.stderr
    assert (marker.stat().st_ino, marker.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    code = "import sys; sys.path.insert(0, sys.argv[1]); from cros_venv import fastpath; print(fastpath.WHEEL_DIR)"
    out = subprocess.run([PYTHON, "-c", code, str(tmp_path / "elsewhere" / "bin" / "..")], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == str(wheelhouse.root / "pip_packages")


def test_a_requirements_path_through_a_link_and_dotdot_is_the_file_open_reads(wheelhouse: ToolRepo,
                                                                              tmp_path: Path) -> None:
    """`link/../r.txt` is read by the kernel from the link's target's parent; abspath said
    `r.txt` beside the link, and that other file was installed."""
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "sl").symlink_to(tmp_path / "d" / "sub")
    (tmp_path / "d" / "r.txt").write_text("beta==2.0\n")
    (tmp_path / "e" / "r.txt").write_text(REQS)
    venv_dir = tmp_path / "venv"
    out = wheelhouse.run(str(venv_dir), str(tmp_path / "e" / "sl" / ".." / "r.txt"))
    assert out.returncode == 0, out.stderr
    assert_complete(venv_dir, {"beta": "2.0"})


def test_a_requirements_link_inside_the_venv_is_refused(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """The link lives in DIR (a rebuild would remove it), though its target is outside."""
    venv_dir = tmp_path / "venv"
    reqs = wheelhouse.requirements("r.txt", "beta==1.0\n")
    assert wheelhouse.run(str(venv_dir), str(reqs)).returncode == 0
    (venv_dir / "reqs.txt").symlink_to(reqs)
    reqs.write_text(REQS)
    one_error(wheelhouse.run(str(venv_dir), str(venv_dir / "reqs.txt")), "inside the venv directory")
    assert (venv_dir / "reqs.txt").is_symlink()


def test_a_venv_path_that_is_not_utf8_is_refused_up_front(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """virtualenv cannot write its activation scripts for it: this failed late (exit 1) on
    every run and left DIR.lock behind."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = os.fsencode(tmp_path) + b"/odd\xff\xfe/venv"
    out = subprocess.run([PYTHON, str(wheelhouse.root / "create_venv"), venv_dir, str(reqs)], env=wheelhouse.env(),
                         capture_output=True, text=True, timeout=120, errors="replace")
    one_error(out, "not UTF-8", "choose another directory")
    assert not os.path.exists(os.fsencode(tmp_path) + b"/odd\xff\xfe")


def test_a_deleted_current_directory_is_one_line(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """`cd DIR && create_venv . reqs` rebuilt DIR, and the shell is left in the deleted old
    one: relative paths cannot be resolved; a traceback (no-op path) or errno (build)."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    gone = tmp_path / "gone"
    gone.mkdir()
    for args in (["../venv", str(reqs)], [str(tmp_path / "venv"), "../r.txt"]):
        out = subprocess.run(["/bin/sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh", str(gone),
                              PYTHON, str(wheelhouse.root / "create_venv"), *args], env=wheelhouse.env(),
                             capture_output=True, text=True, timeout=120)
        one_error(out, "current directory cannot be found")
        gone.mkdir()


def test_a_retargeted_python3_link_is_noticed(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """An activated shell runs bin/python3: `ln -sfn /usr/bin/python3 DIR/bin/python3` made
    a venv whose `python3` is another interpreter, "up to date"."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    assert wheelhouse.run(str(venv_dir), str(reqs)).returncode == 0
    link = venv_dir / "bin" / "python3"
    before = os.readlink(link)
    link.unlink()
    link.symlink_to("/bin/sh")
    out = wheelhouse.run("-v", str(venv_dir), str(reqs))
    assert out.returncode == 0 and "its bin/python3 runs /" in out.stderr, out.stderr
    assert os.readlink(link) == before


# -- found while fixing the above: FIFOs planted where create_venv reads a file ----------


@pytest.mark.parametrize("name", [".cros_venv.json", ".cros_venv.dirs", "pyvenv.cfg", "pip.conf"])
def test_a_fifo_planted_in_the_venv_is_no_file_and_no_hang(wheelhouse: ToolRepo, tmp_path: Path, name: str) -> None:
    """open() of a FIFO with no writer blocks for ever: the no-op check and the whole-venv
    check read these files; a FIFO there means the venv is not as built (rebuilt)."""
    reqs = wheelhouse.requirements("r.txt", REQS)
    venv_dir = tmp_path / "venv"
    assert wheelhouse.run(str(venv_dir), str(reqs)).returncode == 0
    (venv_dir / name).unlink()
    os.mkfifo(venv_dir / name)
    out = wheelhouse.run(str(venv_dir), str(reqs), timeout=60)
    assert out.returncode == 0, out.stderr
    assert (venv_dir / name).is_file()
    assert_complete(venv_dir, {"alpha": "1.0", "beta": "1.0"})


def test_a_fifo_as_python_is_one_line_not_a_hang(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", REQS)
    os.mkfifo(tmp_path / "python3")
    out = wheelhouse.run("--python", str(tmp_path / "python3"), str(tmp_path / "venv"), str(reqs), timeout=60)
    one_error(out, "is not a usable Python interpreter")


# -- a third break-it session: the cache's files, its layout, interpreters by name ---------


@pytest.fixture
def private(wheelhouse: ToolRepo, tmp_path: Path) -> ToolRepo:
    """The wheelhouse with a cache of its own: these tests damage the cache."""
    return ToolRepo(wheelhouse.root, tmp_path / "private-cache")


def _built(repo: ToolRepo, tmp_path: Path) -> Path:
    reqs = repo.requirements("r.txt", REQS)
    assert repo.run(str(tmp_path / "venv"), str(reqs)).returncode == 0
    return reqs


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("where", ["stat", "resolutions", "interpreters", "plans"])
def test_a_cache_file_that_is_no_file_is_a_miss(private: ToolRepo, tmp_path: Path, where: str, kind: str) -> None:
    """A FIFO blocked the build for ever; a link to /dev/zero read without end (12.9 GB)."""
    reqs = _built(private, tmp_path)
    files = sorted((private.cache / where).glob("*" + store.SUFFIX))
    assert files, where
    for f in files:
        f.unlink()
        if kind == "fifo":
            os.mkfifo(f)
        else:
            f.symlink_to("/dev/zero")
    reqs.write_text("# an edit: the no-op key is stale, the full path reads the cache\n" + REQS)
    out = private.run(str(tmp_path / "other"), str(reqs), timeout=60)
    assert out.returncode == 0, out.stderr
    assert_complete(tmp_path / "other", {"alpha": "1.0", "beta": "1.0"})


def test_prune_never_deletes_through_a_linked_cache_directory(private: ToolRepo, tmp_path: Path) -> None:
    _built(private, tmp_path)
    victim = tmp_path / "victim"
    (victim / "keep").mkdir(parents=True)
    (victim / "notes.txt").write_text("mine\n")
    os.utime(victim / "notes.txt", (0, 0))
    shutil.rmtree(private.cache / "plans")
    (private.cache / "plans").symlink_to(victim)
    out = private.run("--prune-cache", "--max-age", "0")
    assert out.returncode == 0, out.stderr
    assert (victim / "notes.txt").read_text() == "mine\n" and (victim / "keep").is_dir()


def test_a_wheel_added_with_the_directory_mtime_restored_is_seen(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """`rsync -a`/`tar` restore a directory's mtime: the no-op key and the cached resolution
    kept the old wheel while a fresh cache picked the new, better-tagged one."""
    wheelhouse.add_wheel(WheelSpec("omega", "1.0", files={"omega.py": b"WHICH = 'generic'\n"}))
    reqs = wheelhouse.requirements("r.txt", "omega==1.0\n")
    venv_dir = tmp_path / "venv"
    assert wheelhouse.run(str(venv_dir), str(reqs)).returncode == 0
    house = wheelhouse.root / "pip_packages"
    before = house.stat()
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-none-any"
    wheelhouse.add_wheel(WheelSpec("omega", "1.0", tag=tag, files={"omega.py": b"WHICH = 'specific'\n"}))
    os.utime(house, ns=(before.st_atime_ns, before.st_mtime_ns))
    for target in (venv_dir, tmp_path / "new"):
        assert wheelhouse.run(str(target), str(reqs)).returncode == 0
        out = subprocess.run([str(target / "bin" / "python"), "-c", "import omega; print(omega.WHICH)"],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "specific", (target, out.stdout, out.stderr)


def test_a_template_whose_python_link_was_changed_is_not_used(private: ToolRepo, tmp_path: Path) -> None:
    """A link retargeted to a path of the same length kept the template's sizes: every build
    made a venv whose bin/python ran another interpreter, exit 0."""
    _built(private, tmp_path)
    (link,) = private.cache.glob("skeletons/*/venv/bin/python")
    target = os.readlink(link)
    link.unlink()
    link.symlink_to("/" + "x" * (len(target) - 1))  # the same length, another program
    reqs = private.requirements("r2.txt", "beta==2.0\n")
    out = private.run(str(tmp_path / "v2"), str(reqs))
    assert out.returncode == 0, out.stderr
    assert os.path.realpath(tmp_path / "v2" / "bin" / "python") == os.path.realpath(target)
    assert_complete(tmp_path / "v2", {"beta": "2.0"})


def test_python_by_a_name_not_on_path_is_not_a_file_in_the_current_directory(wheelhouse: ToolRepo,
                                                                               tmp_path: Path) -> None:
    reqs = wheelhouse.requirements("r.txt", REQS)
    here = tmp_path / "here"
    here.mkdir()
    (here / "python3.99").symlink_to(PYTHON)
    out = subprocess.run([PYTHON, str(wheelhouse.root / "create_venv"), "--python", "python3.99",
                          str(tmp_path / "venv"), str(reqs)], env={**wheelhouse.env(), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120, cwd=here)
    one_error(out, "--python python3.99: no such program on PATH")
    assert not (tmp_path / "venv").exists()


def test_prune_says_it_waits_and_gives_up_after_the_lock_timeout(private: ToolRepo, tmp_path: Path) -> None:
    """A build stopped (SIGSTOP) while it uses the cache holds its shared lock for ever:
    --prune-cache waited silently for ever; now it says so and exits 3 at --lock-timeout."""
    import fcntl

    _built(private, tmp_path)
    fd = os.open(private.cache / "use.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # as a running build holds it
        start = time.monotonic()
        out = private.run("--prune-cache", "--lock-timeout", "1", timeout=60)
        assert out.returncode == 3, out.stderr
        lines = out.stderr.splitlines()
        assert lines[0] == "create_venv: waiting for the builds using the cache to finish", lines
        assert "still using the cache" in lines[1] and "--lock-timeout" in lines[1], lines
        assert time.monotonic() - start < 30
    finally:
        os.close(fd)
    out = private.run("--prune-cache")
    assert out.returncode == 0 and "removed" in out.stderr, out.stderr


# -- a second break-it session: what the full check and the no-op key trusted --------------


def _site(venv_dir: Path) -> Path:
    (site,) = (venv_dir / "lib").glob("python*/site-packages")
    return site


def _beta(venv_dir: Path) -> str:
    out = subprocess.run([str(venv_dir / "bin" / "python"), "-c", "import beta; print(beta.VERSION)"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def linked_include(wheelhouse: ToolRepo, tmp_path: Path) -> tuple[Path, Path]:
    """r.txt includes `inc/base.txt`; `inc` is a link to a/ (beta 1.0), b/ says beta 2.0."""
    for name, version in (("a", "1.0"), ("b", "2.0")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "base.txt").write_text(f"beta=={version}\n")
    (tmp_path / "inc").symlink_to(tmp_path / "a")
    reqs = tmp_path / "r.txt"
    reqs.write_text("-r inc/base.txt\n")
    return reqs, tmp_path / "inc"


def _retarget(link: Path, target: Path) -> None:
    link.unlink()
    link.symlink_to(target)


def test_an_include_through_a_retargeted_directory_link_is_read_again(wheelhouse: ToolRepo,
                                                                       linked_include: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    """The no-op key and the resolution cache recorded the include with its directory
    resolved (a/base.txt), so they kept reading the old file after `inc` was pointed at b/."""
    reqs, inc = linked_include
    venv_dir = tmp_path / "venv"
    assert wheelhouse.run(str(venv_dir), str(reqs)).returncode == 0
    assert _beta(venv_dir) == "1.0"
    _retarget(inc, tmp_path / "b")
    out = wheelhouse.run(str(venv_dir), str(reqs))  # the same DIR: the no-op key
    assert out.returncode == 0, out.stderr
    assert _beta(venv_dir) == "2.0"
    _retarget(inc, tmp_path / "a")
    other = tmp_path / "other"  # a new DIR: the resolution cache
    assert wheelhouse.run(str(other), str(reqs)).returncode == 0
    assert _beta(other) == "1.0"


def test_a_constraint_through_a_retargeted_directory_link_is_read_again(wheelhouse: ToolRepo,
                                                                        linked_include: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    reqs, inc = linked_include
    reqs.write_text("alpha==1.0\n-c inc/base.txt\n")  # alpha needs beta>=1.0: the constraint picks it
    venv_dir = tmp_path / "venv"
    assert wheelhouse.run(str(venv_dir), str(reqs)).returncode == 0
    assert _beta(venv_dir) == "1.0"
    _retarget(inc, tmp_path / "b")
    assert wheelhouse.run(str(venv_dir), str(reqs)).returncode == 0
    assert _beta(venv_dir) == "2.0"


def _changed_then_run(repo: ToolRepo, tmp_path: Path, change: Callable[[Path], object]) -> Path:
    """Build, change the venv (later than the build by more than a clock tick), build again."""
    reqs = _built(repo, tmp_path)
    venv_dir = tmp_path / "venv"
    time.sleep(0.05)
    change(venv_dir)
    out = repo.run(str(venv_dir), str(reqs))
    assert out.returncode == 0, out.stderr
    return venv_dir


def test_an_edited_list_of_watched_directories_is_rebuilt(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """Accepted by the full check (it looked for `bin` only), then the key was made over it."""
    reqs = _built(wheelhouse, tmp_path)
    dirs = tmp_path / "venv" / ".cros_venv.dirs"
    written = dirs.read_bytes()
    dirs.write_bytes(b"bin")
    assert wheelhouse.run(str(tmp_path / "venv"), str(reqs)).returncode == 0
    assert dirs.read_bytes() == written


def test_a_module_replaced_by_a_file_of_the_same_size_is_rebuilt(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """The full check compared sizes only."""
    def replace(venv_dir: Path) -> None:
        module = _site(venv_dir) / "alpha.py"
        data = module.read_bytes()
        module.unlink()
        module.write_bytes(data.replace(b"alpha says hi", b"alpha says HI"))

    venv_dir = _changed_then_run(wheelhouse, tmp_path, replace)
    assert b"alpha says hi" in (_site(venv_dir) / "alpha.py").read_bytes()


@pytest.mark.parametrize("change", ["pth-added", "module-added", "virtualenv-pth-removed", "virtualenv-pth-replaced",
                                    "bin-pyvenv-cfg-added"])
def test_files_no_package_owns_added_or_removed_in_site_packages_are_rebuilt(wheelhouse: ToolRepo, tmp_path: Path,
                                                                             change: str) -> None:
    """Only .dist-info directories were compared: a planted .pth ran on every start."""
    def damage(venv_dir: Path) -> None:
        site = _site(venv_dir)
        if change == "pth-added":
            (site / "evil.pth").write_text("import sys; sys.stderr.write('evil\\n')\n")
        elif change == "module-added":
            (site / "stray.py").write_text("")
        elif change == "virtualenv-pth-replaced":  # in no RECORD: its mtime says it was written since
            (site / "evil").write_text("import sys; sys.stderr.write('evil\\n')\n")
            (site / "evil").rename(site / "_virtualenv.pth")
        elif change == "bin-pyvenv-cfg-added":  # site reads bin/pyvenv.cfg before DIR/pyvenv.cfg
            (venv_dir / "bin" / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
        else:
            (site / "_virtualenv.pth").unlink()

    venv_dir = _changed_then_run(wheelhouse, tmp_path, damage)
    site = _site(venv_dir)
    assert not (site / "evil.pth").exists() and not (site / "stray.py").exists()
    assert b"evil" not in (site / "_virtualenv.pth").read_bytes()
    assert not (venv_dir / "bin" / "pyvenv.cfg").exists()


def test_a_marker_edited_to_vouch_for_a_changed_venv_is_no_marker(wheelhouse: ToolRepo, tmp_path: Path) -> None:
    """pyvenv.cfg edited, and the marker's record of it edited to match: the full check
    trusted the marker's body."""
    import hashlib
    import json

    def change(venv_dir: Path) -> None:
        cfg = venv_dir / "pyvenv.cfg"
        old = hashlib.sha256(cfg.read_bytes()).hexdigest()
        cfg.write_text(cfg.read_text().replace("include-system-site-packages = false",
                                               "include-system-site-packages = true"))
        new = hashlib.sha256(cfg.read_bytes()).hexdigest()
        marker = venv_dir / ".cros_venv.json"
        edited = marker.read_text().replace(old, new)
        assert edited != marker.read_text() and json.loads(edited)
        marker.write_text(edited)

    venv_dir = _changed_then_run(wheelhouse, tmp_path, change)
    assert "include-system-site-packages = false" in (venv_dir / "pyvenv.cfg").read_text()
