"""The lock step and vendor_wheels against what they find: wheels changed in pip_packages/,
pins and comments a lock written over its input must keep, interrupts, full disks, two runs
at once, odd arguments. Every case leaves OUT and pip_packages/ as they were, or complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO, ToolRepo, snapshot
from tests.tools import test_lock
from tests.tools.test_lock import TARGETS, check, lock

registry = test_lock.registry  # the fixture: the same local index

pytestmark = pytest.mark.e2e


def replace_bytes(path: Path, data: bytes) -> None:
    """Change a wheel without writing through a hard link into the tool's own copy."""
    path.unlink()
    path.write_bytes(data)


def tamper(path: Path) -> None:
    """The same wheel name, other bytes (a file appended inside the zip)."""
    import zipfile

    data = path.read_bytes()
    replace_bytes(path, data)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("evil.py", "print('owned')\n")


def test_a_rerun_refuses_a_wheel_changed_in_pip_packages(tool_repo: ToolRepo, registry: Path) -> None:
    """Its hash would be written into the lock as if it were the index's."""
    tool_repo.requirements("r.in", "top\n")
    assert lock(tool_repo, registry, "--hashes").returncode == 0
    text = (tool_repo.root / "r.txt").read_text()
    tamper(tool_repo.wheels / "shared-1.0-py3-none-any.whl")
    before = snapshot(tool_repo.wheels)
    again = lock(tool_repo, registry, "--hashes")
    assert again.returncode == 1, again.stderr
    (line,) = again.stderr.splitlines()
    assert line.startswith(f"vendor_wheels: error: {tool_repo.wheels}/shared-1.0-py3-none-any.whl: its sha256 "
                           "differs from the index's shared-1.0-py3-none-any.whl"), line
    assert "remove it and lock again" in line
    assert (tool_repo.root / "r.txt").read_text() == text and snapshot(tool_repo.wheels) == before


def test_vendoring_a_lock_checks_the_wheels_already_there(tool_repo: ToolRepo, registry: Path) -> None:
    """`already there` only for the bytes the lock names; so for a requirements file's --hash."""
    tool_repo.requirements("r.in", "shared\n")
    assert lock(tool_repo, registry, "--hashes", out="pylock.toml").returncode == 0
    assert lock(tool_repo, registry, "--hashes").returncode == 0
    wheel = tool_repo.wheels / "shared-1.0-py3-none-any.whl"
    fine = tool_repo.command("vendor_wheels", "pylock.toml", "r.txt", *TARGETS, cwd=tool_repo.root)
    assert fine.returncode == 0 and "already there shared-1.0-py3-none-any.whl" in fine.stdout, fine.stderr
    tamper(wheel)
    before = snapshot(tool_repo.wheels)
    for name in ("pylock.toml", "r.txt"):
        out = tool_repo.command("vendor_wheels", name, *TARGETS, cwd=tool_repo.root)
        assert out.returncode == 1, out.stdout
        (line,) = out.stderr.splitlines()
        assert f"{wheel} is not the wheel of shared==1.0 that {name} names (" in line, line
        assert "already there" not in out.stdout and snapshot(tool_repo.wheels) == before


def test_a_lock_over_its_input_keeps_pins_for_no_target_and_indented_notes(tool_repo: ToolRepo,
                                                                          registry: Path) -> None:
    text = ('top==1.0\n    # pinned: see bug 123\n'
            'pywin32==306 ; sys_platform == "win32"  # windows bots only\n')
    tool_repo.requirements("requirements.txt", text)
    first = lock(tool_repo, registry, source="requirements.txt", out="requirements.txt")
    assert first.returncode == 0, first.stderr
    written = (tool_repo.root / "requirements.txt").read_text()
    assert ('# windows bots only\npywin32==306 ; sys_platform == "win32"\n    # via -r requirements.txt\n'
            in written), written
    assert "top==1.0\n    # via -r requirements.txt\n    # pinned: see bug 123\n" in written, written
    again = lock(tool_repo, registry, source="requirements.txt", out="requirements.txt")
    assert again.returncode == 0, again.stderr
    assert (tool_repo.root / "requirements.txt").read_text() == written
    assert check(tool_repo, "requirements.txt").returncode == 0


def test_the_lock_step_reads_a_pipe_once(tool_repo: ToolRepo, registry: Path) -> None:
    out = subprocess.run([PYTHON, str(tool_repo.root / "bin" / "vendor_wheels"), "--lock", "/dev/stdin", "-o",
                          "r.txt", "--find-links", str(registry), "--no-index"], input="top\n", env=tool_repo.env(),
                         capture_output=True, text=True, timeout=300, cwd=tool_repo.root)
    assert out.returncode == 0, out.stderr
    assert "top==1.0\n" in (tool_repo.root / "r.txt").read_text()


@pytest.mark.parametrize(("args", "says"), [
    pytest.param(("-o", "PYLOCK.toml"), "-o PYLOCK.toml: a .toml output is a PEP 751 lock and must be named "
                 "pylock.toml or pylock.NAME.toml", id="toml-name"),
    pytest.param(("--lock", "missing.in"), "missing.in:0: cannot read requirements file (no such file)", id="no-in"),
    pytest.param(("--upgrade-package", "shared==1.0"), "--upgrade-package shared==1.0: give a project name only",
                 id="upgrade-version"),
    pytest.param(("-o", "dangling.txt"), "-o dangling.txt: a symlink to nowhere.txt, which does not exist",
                 id="dangling-output"),
    pytest.param(("--lock", "utf16.in"), "utf16.in:0: not UTF-8 text (invalid start byte at byte 0); save it as UTF-8",
                 id="utf-16"),
    pytest.param(("--lock", "bad.in"), "bad.in:1: invalid requirement: ", id="bad-syntax"),
])
def test_arguments_that_cannot_work_are_one_line_before_any_resolution(tool_repo: ToolRepo, registry: Path,
                                                                      args: tuple[str, ...], says: str) -> None:
    tool_repo.requirements("r.in", "top\n")
    (tool_repo.root / "utf16.in").write_text("top\n", encoding="utf-16")
    tool_repo.requirements("bad.in", "top ==\n")
    (tool_repo.root / "dangling.txt").symlink_to("nowhere.txt")
    argv = ["--lock", "r.in", "-o", "r.txt"]
    for i in range(0, len(args), 2):
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i:i + 2]
    before = snapshot(tool_repo.wheels)
    out = tool_repo.command("vendor_wheels", *argv, "--find-links", str(registry), "--no-index", cwd=tool_repo.root)
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"vendor_wheels: error: {says}"), line
    assert snapshot(tool_repo.wheels) == before and not (tool_repo.root / "r.txt").exists()


def test_a_missing_include_is_blamed_on_the_line_that_names_it(tool_repo: ToolRepo, registry: Path) -> None:
    tool_repo.requirements("r.in", "top\n-c /no/such/constraints.txt\n")
    out = lock(tool_repo, registry)
    assert out.returncode == 2
    assert out.stderr == ("vendor_wheels: error: r.in:2: -c /no/such/constraints.txt: no such file "
                          "(/no/such/constraints.txt); fix the path\n")


def test_the_same_target_twice_is_one_target(tool_repo: ToolRepo, registry: Path) -> None:
    tool_repo.requirements("r.in", "shared\n")
    out = tool_repo.command("vendor_wheels", "--lock", "r.in", "-o", "r.txt", "--python", "3.12", "--python", "3.12",
                            "--find-links", str(registry), "--no-index", cwd=tool_repo.root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].startswith("r.txt: 1 pin for 1 target,")


def test_a_second_vendor_wheels_waits_for_the_first(tool_repo: ToolRepo, registry: Path) -> None:
    """Each reads pip_packages/, then adds what is missing: two at once would judge a
    half-filled directory. The second waits (and says so), then finds the wheels there.
    """
    tool_repo.requirements("r.in", "top\n")
    fd = os.open(tool_repo.wheels, os.O_RDONLY | os.O_DIRECTORY)  # as another vendor_wheels, with any cache
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = subprocess.Popen([PYTHON, str(tool_repo.root / "bin" / "vendor_wheels"), "--lock", "r.in", "-o",
                                 "r.txt", "--find-links", str(registry), "--no-index"], env=tool_repo.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tool_repo.root)
        assert proc.stderr is not None
        said = proc.stderr.readline()
        assert said == f"vendor_wheels: waiting for another vendor_wheels on {tool_repo.root}/pip_packages\n", said
        time.sleep(0.5)
        assert proc.poll() is None and not (tool_repo.root / "r.txt").exists()
    finally:
        os.close(fd)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "2 wheels added" in stdout


def test_sigterm_while_locking_leaves_nothing_behind(tool_repo: ToolRepo, registry: Path, tmp_path: Path) -> None:
    tool_repo.requirements("r.in", "top\n")
    tool_repo.requirements("r.txt", "# mine\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = snapshot(tool_repo.wheels)
    proc = subprocess.Popen([PYTHON, str(tool_repo.root / "bin" / "vendor_wheels"), "--lock", "r.in", "-o", "r.txt",
                             "--find-links", str(registry), "--no-index"], env=tool_repo.env(TMPDIR=str(scratch)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tool_repo.root)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith("vendor_wheels-lock-") for p in scratch.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.splitlines()[-1] == "vendor_wheels: terminated; nothing was changed"
    assert list(scratch.iterdir()) == [] and snapshot(tool_repo.wheels) == before
    assert (tool_repo.root / "r.txt").read_text() == "# mine\n"


CHILD = """
import os, resource, sys
sys.path.insert(0, sys.argv[1])
from cros_venv.errors import InputError
from cros_venv.tools import outfile
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a disk with 4 KiB free (Python ignores SIGXFSZ)
try:
    outfile.write_text(sys.argv[2], "x" * 100000)
except InputError as e:
    print(e.problems[0])
"""


def test_a_full_disk_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "r.txt"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.txt"
    link.symlink_to("r.txt")
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(link)], capture_output=True, text=True)
    assert out.stdout.startswith(f"{link}: cannot write it (File too large); nothing was changed"), out
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "r.txt"]
    sys.path.insert(0, str(REPO))
    from cros_venv.tools import outfile

    outfile.write_text(str(link), "new\n")  # through the link: the link stays, the mode is kept
    assert link.is_symlink() and target.read_text() == "new\n" and target.stat().st_mode & 0o777 == 0o640


def test_an_interrupted_install_takes_its_wheels_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C while the second wheel is copied: the first is removed again, OUT is not written."""
    sys.path.insert(0, str(REPO))
    from cros_venv.tools import outfile

    dest = tmp_path / "pip_packages"
    dest.mkdir()
    (dest / "kept-1.0-py3-none-any.whl").write_text("kept")
    sources = []
    for name in ("a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl"):
        (tmp_path / name).write_text(name)
        sources.append(str(tmp_path / name))
    import shutil

    original = shutil.copyfile
    calls: list[str] = []

    def copy(src: str, dst: str) -> str:
        calls.append(src)
        if len(calls) == 2:
            Path(dst).write_text("half")
            raise KeyboardInterrupt
        return original(src, dst)

    monkeypatch.setattr(shutil, "copyfile", copy)
    pending = outfile.Replacement(str(tmp_path / "r.txt"), "new\n")
    with pytest.raises(KeyboardInterrupt):
        outfile.publish(pending, sources, str(dest))
    assert len(calls) == 2
    assert sorted(p.name for p in dest.iterdir()) == ["kept-1.0-py3-none-any.whl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [*(Path(s).name for s in sources), "pip_packages"]


def test_conflicting_pins_are_one_line_naming_the_conflict(tool_repo: ToolRepo, registry: Path) -> None:
    from tests.conftest import WheelSpec, build_wheel

    build_wheel(registry, WheelSpec("shared", "0.5"))
    tool_repo.requirements("requirements.txt", "top==1.0\nshared==0.5\n")
    out = lock(tool_repo, registry, source="requirements.txt", out="requirements.txt")
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert line.startswith("vendor_wheels: error: requirements.txt:2: the requirements conflict for Python 3.10"), line
    assert "requested shared==0.5; top 1.0 depends on shared>=1; change or drop one of these pins" in line, line
    assert (tool_repo.root / "requirements.txt").read_text() == "top==1.0\nshared==0.5\n"


def test_another_tools_header_is_replaced_not_kept(tool_repo: ToolRepo, registry: Path) -> None:
    tool_repo.requirements("requirements.txt", "#\n# This file is autogenerated by pip-compile with Python 3.11\n"
                                               "# by the following command:\n#\n#    pip-compile\n#\n"
                                               "shared==1.0\n    # via -r requirements.in\n")
    out = lock(tool_repo, registry, source="requirements.txt", out="requirements.txt")
    assert out.returncode == 0, out.stderr
    text = (tool_repo.root / "requirements.txt").read_text()
    assert "pip-compile" not in text and text.endswith("#\nshared==1.0\n    # via -r requirements.txt\n"), text


def test_a_pin_from_an_included_file_says_which(tool_repo: ToolRepo, registry: Path) -> None:
    tool_repo.requirements("base.in", "shared\n")
    tool_repo.requirements("r.in", "-r base.in\ntop\n")
    out = lock(tool_repo, registry)
    assert out.returncode == 0, out.stderr
    text = (tool_repo.root / "r.txt").read_text()
    assert "shared==1.0\n    # via\n    #   -r base.in\n    #   top\n" in text and "top==1.0\n    # via -r r.in\n" in text


def test_a_wheel_the_index_does_not_have_is_never_locked(tool_repo: ToolRepo, registry: Path) -> None:
    """A wheel dropped into pip_packages/ under a better tag than the index's (its name is in
    no pip report) is not vouched for: the lock's hashes and PEP 751 wheels are the index's.
    """
    from tests.conftest import WheelSpec, build_wheel

    planted = build_wheel(tool_repo.wheels, WheelSpec("shared", "1.0", tag="cp312-none-any",
                                                      files={"shared/__init__.py": b"print('planted')\n"}))
    evil = file_sha(planted)
    tool_repo.requirements("r.in", "top\n")
    for out in ("r.txt", "pylock.toml"):
        done = lock(tool_repo, registry, "--hashes", out=out)
        assert done.returncode == 0, done.stderr
        text = (tool_repo.root / out).read_text()
        assert evil not in text and planted.name not in text, text
        assert file_sha(tool_repo.wheels / "shared-1.0-py3-none-any.whl") in text
    assert planted.exists()  # not removed either: only not used


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_conflict_with_kept_pins_moves_only_the_pins_it_names(tool_repo: ToolRepo, registry: Path) -> None:
    from tests.conftest import WheelSpec, build_wheel

    build_wheel(registry, WheelSpec("other", "1.0"))
    tool_repo.requirements("r.in", "top\nother\n")
    assert lock(tool_repo, registry).returncode == 0
    build_wheel(registry, WheelSpec("top", "2.0", requires=["shared>=2"]))
    build_wheel(registry, WheelSpec("shared", "2.0"))
    build_wheel(registry, WheelSpec("other", "2.0"))
    tool_repo.requirements("r.in", "top>=2\nother\n")
    out = lock(tool_repo, registry)
    assert out.returncode == 0, out.stderr
    text = (tool_repo.root / "r.txt").read_text()
    assert "top==2.0\n" in text and "shared==2.0\n" in text and "other==1.0\n" in text, text
    assert "the kept pins of shared conflict with the requirements" in out.stderr


def test_lock_step_arguments_and_files_it_cannot_use(tool_repo: ToolRepo, registry: Path) -> None:
    """An include cycle, OUT that is a FIFO or empty, an unreadable existing OUT (--upgrade writes it afresh),
    and ambient pip settings that would make pip do something else."""
    tool_repo.requirements("a.in", "-r b.in\ntop\n")
    tool_repo.requirements("b.in", "-r a.in\n")
    cycle = lock(tool_repo, registry, source="a.in")
    assert cycle.returncode == 2 and cycle.stderr == ("vendor_wheels: error: b.in:1: -r a.in: includes a file that "
                                                      "includes it (a cycle); remove one of the two includes\n")
    os.mkfifo(tool_repo.root / "fifo.txt")
    fifo = lock(tool_repo, registry, source="a.in", out="fifo.txt")
    assert fifo.returncode == 2 and "-o fifo.txt: not a regular file" in fifo.stderr
    empty = lock(tool_repo, registry, source="a.in", out="")
    assert empty.returncode == 2 and "-o '': name the lock file to write" in empty.stderr
    tool_repo.requirements("r.in", "top\n")
    tool_repo.requirements("pylock.toml", "not toml [\n")
    bad = lock(tool_repo, registry, out="pylock.toml")
    assert bad.returncode == 2 and "-o pylock.toml: the existing lock cannot be read (" in bad.stderr
    assert "run with --upgrade to write it afresh, or remove it" in bad.stderr
    env = tool_repo.env(PIP_REQUIRE_VIRTUALENV="1", PIP_USER="1", PIP_NO_DEPS="1", PIP_CONSTRAINT="/no/such")
    fresh = tool_repo.command("vendor_wheels", "--lock", "r.in", "-o", "pylock.toml", "--upgrade", *TARGETS,
                              "--find-links", str(registry), "--no-index", env=env, cwd=tool_repo.root)
    assert fresh.returncode == 0, fresh.stderr
    assert 'name = "shared"' in (tool_repo.root / "pylock.toml").read_text()


def test_the_lock_is_the_same_whatever_directory_it_ran_from(tool_repo: ToolRepo, registry: Path,
                                                              tmp_path: Path) -> None:
    (tool_repo.root / "deps").mkdir()
    tool_repo.requirements("deps/base.in", "shared\n")
    tool_repo.requirements("deps/r.in", "-r base.in\ntop\n")
    here = lock(tool_repo, registry, source="deps/r.in", out="deps/r.txt")
    assert here.returncode == 0, here.stderr
    first = (tool_repo.root / "deps" / "r.txt").read_text()
    assert "#    bin/vendor_wheels --lock r.in -o r.txt " in first and "#   -r base.in\n" in first, first
    (tool_repo.root / "deps" / "r.txt").unlink()
    link = tmp_path / "elsewhere"
    link.symlink_to(tool_repo.root / "deps")
    away = tool_repo.command("vendor_wheels", "--lock", str(link / "r.in"), "-o", str(link / "r.txt"), *TARGETS,
                             "--find-links", str(registry), "--no-index", cwd=tmp_path)
    assert away.returncode == 0, away.stderr
    assert (tool_repo.root / "deps" / "r.txt").read_text() == first
    lockfile = tool_repo.command("vendor_wheels", "--lock", str(link / "r.in"), "-o", str(link / "pylock.toml"),
                                 *TARGETS, "--find-links", str(registry), "--no-index", cwd=tmp_path)
    assert lockfile.returncode == 0, lockfile.stderr
    assert 'path = "../pip_packages/shared-1.0-py3-none-any.whl"' in (link / "pylock.toml").read_text()


def test_vendor_hashes_refuse_a_wheel_changed_in_pip_packages(tool_repo: ToolRepo, registry: Path) -> None:
    """`vendor_wheels FILE --hashes` writes the hashes of pip_packages/'s wheels: one the index
    has under the same name must have the index's bytes, or nothing is written."""
    reqs = tool_repo.requirements("h.txt", "shared==1.0\n")
    fetched = tool_repo.command("vendor_wheels", "h.txt", "--find-links", str(registry), "--no-index",
                                cwd=tool_repo.root)
    assert fetched.returncode == 0, fetched.stderr
    tamper(tool_repo.wheels / "shared-1.0-py3-none-any.whl")
    out = tool_repo.command("vendor_wheels", "h.txt", "--hashes", "--find-links", str(registry), "--no-index",
                            cwd=tool_repo.root)
    assert out.returncode == 1, out.stdout
    (line,) = out.stderr.splitlines()
    assert "shared-1.0-py3-none-any.whl: its sha256 differs from the index's" in line, line
    assert reqs.read_text() == "shared==1.0\n"
    (tool_repo.wheels / "shared-1.0-py3-none-any.whl").unlink()
    (tool_repo.wheels / "shared-1.0-py3-none-any.whl").write_bytes((registry / "shared-1.0-py3-none-any.whl")
                                                                  .read_bytes())
    good = tool_repo.command("vendor_wheels", "h.txt", "--hashes", "--find-links", str(registry), "--no-index",
                             cwd=tool_repo.root)
    assert good.returncode == 0 and "--hash=sha256:" in reqs.read_text(), good.stderr
