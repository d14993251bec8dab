"""build: the orchestrator. BUILD's steps run in order under the lock, each followed by its
checkpoint; a step that fails puts the old venv back; a current venv is left alone, its
stale no-op key refreshed and leftover trash emptied.

Builds here run in this process (the `in_process` fixture), so that a test can replace a
step; tests/reliability/test_kills.py sends real signals to create_venv after each step.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import Callable

import pytest

from cros_venv import __version__, build, fastpath, install_all, lock, marker, replace
from cros_venv.context import STEPS, Context
from cros_venv.errors import BuildError, Interrupted, LockTimeout
from cros_venv.names import INSIDE_TRASH, MARKER, SIGN
from tests.conftest import NEW_SET, OLD_SET, InProcess, contents

Step = Callable[[Context], None]


def failing_after(index: int, error: BaseException) -> tuple[tuple[Step, str | None], ...]:
    """BUILD with its step `index` run as usual and then raising `error`."""
    step, name = build.BUILD[index]

    def broken(ctx: Context) -> None:
        step(ctx)
        raise error

    return (*build.BUILD[:index], (broken, name), *build.BUILD[index + 1:])


def noop_check(venv_dir: Path, reqs: Path) -> bool:
    """What the next wrapper's no-op check (fastpath) says of the venv."""
    return fastpath.up_to_date(str(venv_dir), [str(reqs)], None, __version__)


def lock_is_free(venv_dir: Path) -> bool:
    try:
        lock.release(lock.acquire(lock.lock_path(str(venv_dir)), 0))
        return True
    except LockTimeout:
        return False


def test_the_checkpoints_of_the_build_are_steps_in_their_order() -> None:
    """CROS_VENV_TEST_KILL names STEPS; each checkpoint of BUILD must be one, in that order."""
    named = [name for _, name in build.BUILD if name]
    assert named == [step for step in STEPS if step in named]


def test_a_build_passes_every_checkpoint_in_order(in_process: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault hook sends a harmless signal after the step it names; the handler then
    names the next step: the build must reach each of STEPS, in order.
    """
    reached: list[str] = []

    def next_step(signum: int, frame: object) -> None:
        reached.append(os.environ["CROS_VENV_TEST_KILL"].partition(":")[0])
        os.environ["CROS_VENV_TEST_KILL"] = f"{STEPS[len(reached)] if len(reached) < len(STEPS) else 'none'}:USR1"

    monkeypatch.setenv("CROS_VENV_TEST_KILL", f"{STEPS[0]}:USR1")
    old = signal.signal(signal.SIGUSR1, next_step)
    try:
        assert in_process.create(in_process.tmp_path / "venv", in_process.requirements(OLD_SET)) == build.BUILT
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert reached == list(STEPS)


@pytest.mark.parametrize("index", range(len(build.BUILD)), ids=[step.__name__ for step, _ in build.BUILD])
def test_a_step_that_fails_puts_the_old_venv_back_as_it_was(in_process: InProcess, monkeypatch: pytest.MonkeyPatch,
                                                            index: int) -> None:
    venv_dir = in_process.tmp_path / "venv"
    reqs = in_process.requirements(OLD_SET)
    assert in_process.create(venv_dir, reqs) == build.BUILT
    before = contents(venv_dir)
    new = in_process.requirements(NEW_SET, "new.txt")
    monkeypatch.setattr(build, "BUILD", failing_after(index, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(BuildError) as info:
        in_process.create(venv_dir, new)
    assert info.value.problems == (f"building {venv_dir} failed: [Errno 28] No space left on device "
                                   f"({venv_dir} is as it was before)",)
    assert contents(venv_dir) == before  # the marker included
    assert not replace.has_trash(str(venv_dir)) and lock_is_free(venv_dir)
    assert noop_check(venv_dir, reqs)  # not even its no-op key is stale


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"])
def test_an_interrupted_build_puts_the_old_venv_back(in_process: InProcess, monkeypatch: pytest.MonkeyPatch,
                                                     signum: int, code: int) -> None:
    venv_dir = in_process.tmp_path / "venv"
    assert in_process.create(venv_dir, in_process.requirements(OLD_SET)) == build.BUILT
    before = contents(venv_dir)
    installed = [step for step, _ in build.BUILD].index(install_all.install_wheels)
    monkeypatch.setattr(build, "BUILD", failing_after(installed, Interrupted(signum)))  # as cli's handler raises it
    with pytest.raises(Interrupted) as info:
        in_process.create(venv_dir, in_process.requirements(NEW_SET, "new.txt"))
    assert (info.value.exit_code, info.value.state) == (code, f"{venv_dir} is as it was before")
    assert contents(venv_dir) == before


@pytest.mark.parametrize("empty", [False, True], ids=["missing-dir", "empty-dir"])
def test_a_failed_first_build_leaves_no_venv(in_process: InProcess, monkeypatch: pytest.MonkeyPatch,
                                             empty: bool) -> None:
    venv_dir = in_process.tmp_path / "venv"
    if empty:
        venv_dir.mkdir()
    monkeypatch.setattr(build, "BUILD", failing_after(len(build.BUILD) - 1, OSError(errno.EIO, "I/O error")))
    with pytest.raises(BuildError, match=rf"\(nothing was left at {venv_dir}\)$"):
        in_process.create(venv_dir, in_process.requirements(OLD_SET))
    if empty:  # the directory stays, with nothing of the build but its owner file
        assert set(os.listdir(venv_dir)) <= {SIGN}
    else:
        assert not os.path.lexists(venv_dir)


def test_a_current_venv_with_a_stale_key_gets_a_fresh_key_and_no_rebuild(in_process: InProcess) -> None:
    """Other bytes, the same meaning: the spec is unchanged, so only the marker is rewritten
    (its provenance kept), and the next no-op check succeeds.
    """
    venv_dir = in_process.tmp_path / "venv"
    reqs = in_process.requirements(OLD_SET)
    assert in_process.create(venv_dir, reqs) == build.BUILT
    first = marker.load(str(venv_dir))
    files = {k: v for k, v in contents(venv_dir).items() if k != MARKER}
    reqs.write_text("# the same pin, other bytes\nInstaller == 0.7.0\n")
    assert not noop_check(venv_dir, reqs)
    assert in_process.create(venv_dir, reqs) == build.UP_TO_DATE
    second = marker.load(str(venv_dir))
    assert first is not None and second is not None
    assert (second.spec, second.built) == (first.spec, first.built) and second.noop_key != first.noop_key
    assert {k: v for k, v in contents(venv_dir).items() if k != MARKER} == files
    assert noop_check(venv_dir, reqs)


@pytest.mark.parametrize("where", ["beside", "inside"])
def test_a_run_that_finds_the_venv_current_empties_leftover_trash(in_process: InProcess, where: str) -> None:
    venv_dir = in_process.tmp_path / "venv"
    reqs = in_process.requirements(OLD_SET)
    assert in_process.create(venv_dir, reqs) == build.BUILT
    data = (venv_dir / MARKER).read_bytes()
    trash = Path(replace.trash_dir(str(venv_dir))) if where == "beside" else venv_dir / INSIDE_TRASH
    (trash / "old" / "lib").mkdir(parents=True)  # left by a build killed after its marker
    assert not noop_check(venv_dir, reqs)
    assert in_process.create(venv_dir, reqs) == build.UP_TO_DATE
    assert not os.path.lexists(trash)
    assert (venv_dir / MARKER).read_bytes() == data and noop_check(venv_dir, reqs)


def test_the_callers_pip_virtualenv_and_python_settings_are_shut_out() -> None:
    environ = {"PIP_INDEX_URL": "http://x", "PIP_CONFIG_FILE": "/home/me/pip.conf", "VIRTUALENV_PYTHON": "/bin/false",
               "PYTHONPATH": "/evil", "PYTHONHOME": "/x", "VIRTUAL_ENV": "/v", "__PYVENV_LAUNCHER__": "/p",
               "PATH": "/usr/bin", "HOME": "/home/me", "MY_PIP_NOTE": "kept", "LANG": "C.UTF-8"}
    build.clean_environment(environ)
    assert environ == {"PATH": "/usr/bin", "HOME": "/home/me", "MY_PIP_NOTE": "kept", "LANG": "C.UTF-8",
                       "PIP_CONFIG_FILE": os.devnull, "VIRTUALENV_CONFIG_FILE": os.devnull}
