"""steps: each step of a build, on a real Context: why a venv is rebuilt, when there is
nothing to do, the lock (and a reader's way round it), the rollback and what a failure says.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest

from cros_venv import build, lock, marker, replace, steps, venv
from cros_venv.cache import Cache
from cros_venv.context import Context, Request
from cros_venv.errors import BuildError, CrosVenvError, InputError, Interrupted, LockTimeout
from cros_venv.names import MARKER
from cros_venv.skeleton import Templates
from cros_venv.unpacker import Unpacker
from tests.conftest import NEW_SET, OLD_SET, InProcess, contents

MakeContext = Callable[..., Context]


@pytest.fixture
def make_context(in_process: InProcess, shared_cache: Path) -> Iterator[MakeContext]:
    """Contexts as build.create makes them (on the cache in_process builds with)."""
    cache = Cache(str(shared_cache))
    cache.ensure_dirs()
    with Unpacker(cache, workers=0) as unpacker:
        def make(venv_dir: Path, reqs: Path | None = None, compile: bool = False, resolve: bool = True) -> Context:
            reqs = reqs or in_process.requirements(OLD_SET)
            ctx = Context(Request(str(venv_dir), (str(reqs),), compile=compile), in_process.reports.append, cache,
                          unpacker, Templates(os.path.join(cache.root, "skeletons")))
            if resolve:
                steps.resolve(ctx)
            return ctx

        yield make


@pytest.fixture
def current(in_process: InProcess) -> tuple[Path, Path]:
    """A venv just built from OLD_SET, and its requirements file."""
    venv_dir, reqs = in_process.tmp_path / "venv", in_process.requirements(OLD_SET)
    assert in_process.create(venv_dir, reqs) == build.BUILT
    return venv_dir, reqs


@pytest.fixture
def old_venv(tmp_path: Path) -> Path:
    """A directory create_venv made (signed and marked), with a file."""
    venv_dir = tmp_path / "venv"
    venv.start(venv.Layout(str(venv_dir), "3.11"))
    (venv_dir / "lib").mkdir()
    (venv_dir / "lib" / "old.py").write_text("OLD = 1\n")
    (venv_dir / MARKER).write_text("{}\n")
    return venv_dir


def held(venv_dir: Path) -> bool:
    """Is DIR.lock held (by anyone)?"""
    try:
        lock.release(lock.acquire(lock.lock_path(str(venv_dir)), 0))
        return False
    except LockTimeout:
        return True


# -- why rebuild, and nothing to do ---------------------------------------------------------


def built_from_another_checkout(venv_dir: Path) -> Path:
    found = marker.load(str(venv_dir))
    assert found is not None
    marker.write(str(venv_dir), marker.render(found.spec, found.noop_key,
                                              {**found.built, "wheel_dir": "/other/pip_packages"}))
    return venv_dir


WHY = [
    pytest.param(lambda d: d, None, id="current"),
    pytest.param(lambda d: (d / MARKER).unlink() or d, "it has no readable marker", id="no-marker"),
    pytest.param(lambda d: (d / MARKER).write_bytes((d / MARKER).read_bytes()[:-2]) or d,
                 "it has no readable marker", id="marker-cut-short"),
    pytest.param(lambda d: d.rename(d.with_name("moved")) or d.with_name("moved"),
                 "it was built at {venv} (moved or copied)", id="moved"),
    pytest.param(lambda d: shutil.copytree(d, d.with_name("copy"), symlinks=True) and d.with_name("copy"),
                 "it was built at {venv} (moved or copied)", id="copied"),
    pytest.param(built_from_another_checkout, "it was built from /other/pip_packages", id="other-checkout"),
    pytest.param(lambda d: (d / "bin" / "python").unlink() or d, "{venv}/bin/python is missing", id="damaged"),
]


@pytest.mark.parametrize(("change", "reason"), WHY)
def test_why_a_venv_is_rebuilt(current: tuple[Path, Path], make_context: MakeContext,
                               change: Callable[[Path], Path], reason: str | None) -> None:
    venv_dir, reqs = current
    asked = change(venv_dir)
    assert steps.why_rebuild(make_context(asked, reqs)) == (reason and reason.format(venv=venv_dir))


def test_other_requirements_are_a_reason_to_rebuild(current: tuple[Path, Path], make_context: MakeContext,
                                                    in_process: InProcess) -> None:
    venv_dir, _ = current
    ctx = make_context(venv_dir, in_process.requirements(NEW_SET, "new.txt"))
    assert steps.why_rebuild(ctx) == "its requirements, wheels or interpreter differ"


NOTHING_TO_DO = [
    pytest.param(lambda d: None, False, None, True, id="current"),
    pytest.param(lambda d: None, False, "it has no readable marker", False, id="a-reason-to-rebuild"),
    pytest.param(lambda d: None, True, None, False, id="compile-asked"),
    pytest.param(lambda d: Path(replace.trash_dir(str(d))).mkdir(), False, None, False, id="trash-beside"),
    pytest.param(lambda d: (d / "bin" / "extra").write_text(""), False, None, False, id="stale-no-op-key"),
]


@pytest.mark.parametrize(("change", "compile", "why", "expected"), NOTHING_TO_DO)
def test_nothing_to_do_only_for_a_current_venv_with_nothing_asked_or_left(
        current: tuple[Path, Path], make_context: MakeContext, change: Callable[[Path], object], compile: bool,
        why: str | None, expected: bool) -> None:
    venv_dir, reqs = current
    change(venv_dir)
    assert steps.nothing_to_do(make_context(venv_dir, reqs, compile=compile), why) is expected


# -- the place and the lock -----------------------------------------------------------------


def test_prepare_place_makes_the_parents_only(make_context: MakeContext, tmp_path: Path) -> None:
    venv_dir = tmp_path / "a" / "b" / "venv"
    steps.prepare_place(make_context(venv_dir, resolve=False))
    assert (tmp_path / "a" / "b").is_dir() and not venv_dir.exists()


@pytest.mark.parametrize(("make", "message"), [
    pytest.param(lambda p: (p.mkdir(parents=True), (p / "main.py").write_text("x")),
                 "{venv} exists, is not empty and was not made by create_venv", id="someone-elses-directory"),
    pytest.param(lambda p: p.parent.parent.write_text("a file"),
                 "cannot create {parent} for the venv: Not a directory; choose another venv directory",
                 id="parent-under-a-file"),
])
def test_prepare_place_refuses_before_waiting_for_the_lock(make_context: MakeContext, tmp_path: Path,
                                                           make: Callable[[Path], object], message: str) -> None:
    venv_dir = tmp_path / "p" / "q" / "venv"
    make(venv_dir)
    with pytest.raises(InputError) as info:
        steps.prepare_place(make_context(venv_dir, resolve=False))
    (problem,) = info.value.problems
    assert problem.startswith(message.format(venv=venv_dir, parent=venv_dir.parent))
    assert not os.path.lexists(lock.lock_path(str(venv_dir)))


def test_take_lock_holds_the_lock_beside_the_venv(make_context: MakeContext, tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "venv", resolve=False)
    assert steps.take_lock(ctx, current=False)
    try:
        assert held(tmp_path / "venv")
    finally:
        lock.release(ctx.lock_fd)
    assert not held(tmp_path / "venv")


TAKE_LOCK = [
    pytest.param(errno.EACCES, True, False, None, id="reader-of-a-current-venv"),
    pytest.param(errno.EROFS, True, False, None, id="current-venv-on-a-read-only-mount"),
    pytest.param(errno.EACCES, True, True, "cannot lock {lock} (Permission denied): {venv} is not writable by this "
                                           "user; ask its owner to run create_venv", id="compile-asked-by-a-reader"),
    pytest.param(errno.EPERM, False, False, "cannot lock {lock} (Operation not permitted): {venv} is not writable "
                                            "by this user", id="a-venv-to-build"),
    pytest.param(errno.ENAMETOOLONG, True, False, "cannot lock {lock}: File name too long; choose another venv "
                                                  "directory", id="another-error"),
]


@pytest.mark.parametrize(("error", "is_current", "compile", "message"), TAKE_LOCK)
def test_a_lock_this_user_cannot_take(make_context: MakeContext, in_process: InProcess, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, error: int, is_current: bool, compile: bool,
                                      message: str | None) -> None:
    """A venv of another user, or on a read-only mount, may be used as it is if it is
    current; anything that must write there is a one-line error.
    """
    venv_dir = tmp_path / "venv"
    ctx = make_context(venv_dir, compile=compile, resolve=False)

    def refuse(path: str, timeout: float, on_wait: object = None) -> int:
        raise OSError(error, os.strerror(error), path)

    monkeypatch.setattr(lock, "acquire", refuse)
    where = lock.lock_path(str(venv_dir))
    if message is None:
        assert steps.take_lock(ctx, current=is_current) is False
        assert in_process.reports[-1] == f"{venv_dir} is up to date (its no-op key is stale, but {where} is not ours " \
                                         "to write)"
        return
    with pytest.raises(InputError) as info:
        steps.take_lock(ctx, current=is_current)
    (problem,) = info.value.problems
    assert problem.startswith(message.format(lock=where, venv=venv_dir))


def test_the_lock_is_released_and_then_the_trash_emptied(make_context: MakeContext, old_venv: Path) -> None:
    ctx = make_context(old_venv, resolve=False)
    assert steps.take_lock(ctx, current=False)
    replace.wipe(str(old_venv))
    with steps.locked(ctx, []):
        assert held(old_venv) and replace.has_trash(str(old_venv))
    assert not held(old_venv) and not replace.has_trash(str(old_venv))


@pytest.mark.parametrize("complete", [True, False], ids=["venv-complete", "venv-incomplete"])
def test_an_interrupt_under_the_lock(make_context: MakeContext, tmp_path: Path, complete: bool) -> None:
    """Once the venv is complete, an interrupt says so (only old files are left); before, the
    interrupt goes on to the rollback as it is. The lock is released either way.
    """
    ctx = make_context(tmp_path / "venv", resolve=False)
    assert steps.take_lock(ctx, current=False)
    interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as info, steps.locked(ctx, [True] if complete else []):
        raise interrupt
    if complete:
        assert isinstance(info.value, Interrupted) and info.value.exit_code == 130
        assert info.value.state == f"{tmp_path / 'venv'} is complete; the rest of the old venv is removed by the next run"
    else:
        assert info.value is interrupt
    assert not held(tmp_path / "venv")


# -- rollback -------------------------------------------------------------------------------


def test_a_failure_before_the_wipe_is_raised_as_it_is(make_context: MakeContext, tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "venv", resolve=False)
    error = InputError("bad requirements")
    with pytest.raises(InputError) as info, steps.rollback(ctx):
        raise error
    assert info.value is error


def test_a_failure_after_the_wipe_puts_the_old_venv_back_and_says_so(make_context: MakeContext,
                                                                    old_venv: Path) -> None:
    before = contents(old_venv)
    ctx = make_context(old_venv, resolve=False)
    with pytest.raises(InputError) as info, steps.rollback(ctx):
        steps.wipe(ctx)
        venv.start(venv.Layout(str(old_venv), "3.11"))
        (old_venv / "half-written.py").write_text("")
        raise InputError("first problem", "x.whl is not a valid wheel")
    assert info.value.problems == ("first problem", f"x.whl is not a valid wheel ({old_venv} is as it was before)")
    assert contents(old_venv) == before


ROOT = "/work/venv"
AFTER_FAILURE: list[object] = [
    pytest.param(KeyboardInterrupt(), True, True, Interrupted(signal.SIGINT, f"{ROOT} is as it was before"),
                 id="ctrl-c"),
    pytest.param(Interrupted(signal.SIGTERM), True, True, Interrupted(signal.SIGTERM, f"{ROOT} is as it was before"),
                 id="sigterm"),
    pytest.param(Interrupted(signal.SIGINT), False, True,
                 Interrupted(signal.SIGINT, f"the next run rebuilds {ROOT}"), id="ctrl-c-not-put-back"),
    pytest.param(InputError("a", "b"), True, False, InputError("a", f"b (nothing was left at {ROOT})"),
                 id="input-error-new-dir"),
    pytest.param(BuildError(), True, True, BuildError(f"the build failed ({ROOT} is as it was before)"),
                 id="build-error-without-a-message"),
    pytest.param(OSError(errno.ENOSPC, "No space left on device"), False, True,
                 BuildError(f"building {ROOT} failed: [Errno 28] No space left on device "
                            f"(the next run rebuilds {ROOT})"), id="disk-full-not-put-back"),
]


@pytest.mark.parametrize(("error", "put_back", "had_old", "expected"), AFTER_FAILURE)
def test_a_failed_build_says_what_dir_was_left_as(error: BaseException, put_back: bool, had_old: bool,
                                                  expected: BaseException) -> None:
    got = steps._after_failure(error, ROOT, put_back, had_old)
    assert type(got) is type(expected)
    if isinstance(expected, Interrupted):
        assert isinstance(got, Interrupted) and (got.signum, got.state) == (expected.signum, expected.state)
    else:
        assert isinstance(got, CrosVenvError) and isinstance(expected, CrosVenvError)
        assert got.problems == expected.problems


def test_a_bug_is_not_dressed_up_as_a_build_error() -> None:
    bug = ValueError("a bug")
    assert steps._after_failure(bug, ROOT, True, True) is bug
