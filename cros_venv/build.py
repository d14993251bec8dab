"""The orchestrator: a build as a list of steps over one Context.

    resolve -> up to date? -> lock -> (still current? refresh) or
    wipe, sign, skeleton || wheels, configure, compile, marker last -> unlock, empty trash

Each step is a function in steps.py; context.py says what each puts in the Context.
"""

from __future__ import annotations

import os

from cros_venv import install_all, prefetch, skeleton, steps
from cros_venv.cache import Cache, default_root
from cros_venv.context import STEPS, Context, Request, checkpoint
from cros_venv.errors import InputError
from cros_venv.unpacker import Unpacker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

__all__ = ["STEPS", "Request", "clean_environment", "create"]

UP_TO_DATE = "up to date"
BUILT = "built"

# The build proper, under the lock and inside steps.rollback; each step is followed by the
# checkpoint of its name (None: no fault-injection point).
BUILD = (
    (steps.wipe, "wiped"),
    (steps.sign, "signed"),
    (steps.start_skeleton, None),  # a virtualenv child runs beside the installs
    (install_all.install_wheels, "installed"),
    (steps.finish_skeleton, "skeleton"),
    (steps.configure, None),
    (steps.compile_if_asked, "configured"),
    (steps.mark, None),  # last: from now on the venv is complete ("marked", after the rollback)
)


def create(request: Request, report: Callable[[str], None]) -> str:
    """Make `request.venv_dir` match the requirements. Returns what was done."""
    if not all(os.path.isabs(p) for p in (request.venv_dir, *request.requirements)):
        try:
            os.getcwd()
        except OSError as e:
            raise InputError(f"the current directory cannot be found ({e.strerror}: deleted?); cd to an existing "
                             "directory, or give DIR and REQUIREMENTS as absolute paths") from None
    cache = Cache(default_root())
    steps.check_places(request.venv_dir, request.requirements, cache.root)  # before anything is made
    cache.ensure_dirs()
    with cache.in_use(), Unpacker(cache) as unpacker:
        ctx = Context(request, report, cache, unpacker, skeleton.Templates(os.path.join(cache.root, "skeletons")))
        try:
            return _run(ctx)
        finally:
            if ctx.template_job is not None:
                ctx.template_job.settle()  # a template is useful even if this build failed


def _run(ctx: Context) -> str:
    prefetch.head_start(ctx)
    steps.resolve(ctx)
    steps.check_places(ctx.root, list(ctx.sources.data), None)  # the included files too
    why = steps.why_rebuild(ctx)
    if steps.nothing_to_do(ctx, why):
        ctx.report(f"{ctx.root} is up to date")
        return UP_TO_DATE
    if why is not None:
        steps.prepare_place(ctx)
    if not steps.take_lock(ctx, current=why is None):
        return UP_TO_DATE
    done: list[bool] = []  # set once the venv is complete
    with steps.locked(ctx, done):
        why = steps.why_rebuild(ctx)  # again, under the lock: another process may have just built it
        if why is None:
            steps.refresh(ctx)
            done.append(True)
            return UP_TO_DATE
        ctx.report(f"building {ctx.root}: {why}")
        build_steps(ctx)
        done.append(True)
        checkpoint("marked")
    return BUILT


def build_steps(ctx: Context, then: Callable[[], None] | None = None) -> None:
    """The build proper: BUILD's steps, each followed by its checkpoint, then `then` (a shared
    venv's publishing), all inside steps.rollback (any failure puts the old venv back)."""
    with steps.rollback(ctx):
        for step, name in BUILD:
            step(ctx)
            if name:
                checkpoint(name)
        if then is not None:
            then()


def clean_environment(environ: dict[str, str] | os._Environ[str]) -> None:
    """Shut out the caller's pip, virtualenv and Python settings from everything we run.

    ensurepip does the same for the pip it runs: a user's PIP_* variables and config must
    not change what a tool installs. Children also run with -I.
    """
    for name in list(environ):
        if name.startswith(("PIP_", "VIRTUALENV_", "PYTHON")) or name in ("VIRTUAL_ENV", "__PYVENV_LAUNCHER__"):
            del environ[name]
    environ["PIP_CONFIG_FILE"] = os.devnull
    environ["VIRTUALENV_CONFIG_FILE"] = os.devnull
