"""The orchestrator: resolve -> compare with the marker -> (lock, wipe, skeleton, install, marker last)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from cros_venv import __version__, fastpath, install, lock, resolution, skeleton, spec, toolchain, venv
from cros_venv.cache import Cache, default_root
from cros_venv.errors import BuildError

Report = Callable[[str], None]


@dataclass(frozen=True)
class Request:
    """What the command line asked for."""

    venv_dir: str
    requirements: tuple[str, ...]
    python: str | None = None
    lock_timeout: float = 600.0
    compile: bool = False


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


def create(request: Request, report: Report) -> str:
    """Make `request.venv_dir` match the requirements. Returns what was done."""
    cache = Cache(default_root())
    cache.ensure_dirs()
    with cache.in_use():
        return _create(request, report, cache)


def _create(request: Request, report: Report, cache: Cache) -> str:
    python = fastpath.resolve_python(request.python)
    arguments = [os.path.abspath(r) for r in request.requirements]
    root = venv.resolve_dir(request.venv_dir)
    # A directory without a marker will be built (unless the input is bad): start making the
    # interpreter's skeleton template now, beside resolving and unpacking.
    job = None
    templates = skeleton.Templates(os.path.join(cache.root, "skeletons"))
    if (skeleton.is_plain(root) and skeleton.is_plain(templates.root) and os.path.exists(python)
            and not os.path.exists(os.path.join(root, venv.MARKER))
            and not os.path.isdir(templates.path_for(python, toolchain.VIRTUALENV[0]))):
        job = _template_job(templates, python, cache)
    try:
        return _update(request, python, arguments, root, cache, templates, job, report)
    finally:
        if job is not None:  # let it finish: a template is useful even if this build failed
            with contextlib.suppress(Exception):
                job.wait()


def _template_job(templates: skeleton.Templates, python: str, cache: Cache) -> skeleton.TemplateJob:
    return skeleton.TemplateJob(templates, python, toolchain.VIRTUALENV[0],
                                lambda: toolchain.unpack(cache, toolchain.VIRTUALENV),
                                os.path.join(cache.root, "virtualenv"))


def _update(request: Request, python: str, arguments: list[str], root: str, cache: Cache,
            templates: skeleton.Templates, job: skeleton.TemplateJob | None, report: Report) -> str:
    # requirements -> pins -> wheels -> spec (cached while nothing it depends on changes)
    plan = resolution.cached(cache, python, arguments) or resolution.resolve(cache, python, arguments, report)
    layout = venv.Layout(root, plan.python_version)
    marker = spec.marker_bytes(plan.spec, plan.key, {
        "tool": f"cros_venv {__version__}", "requirements": arguments,
        "wheel_dir": toolchain.PIP_PACKAGES, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })

    def current() -> bool:
        """The marker's spec is ours: nothing to build (refresh the no-op key if stale)."""
        if spec.spec_from_marker(venv.read_marker(layout) or b"") != plan.spec:
            return False
        if fastpath.read_key(layout.root) != plan.key:
            venv.write_marker(layout, marker)
        return True

    if spec.spec_from_marker(venv.read_marker(layout) or b"") != plan.spec:
        venv.check_replaceable(layout.root)  # fail before waiting for the lock
    lock_file = lock.lock_path(layout.root)
    fd = lock.acquire(lock_file, request.lock_timeout, lambda pid: report(f"waiting for {lock_file} (pid {pid})"))
    try:
        if current():  # checked again under the lock: another process may have just built it
            report(f"{layout.root} is up to date")
            return "up to date"
        report(f"building {layout.root}")
        trash = venv.wipe(layout.root)
        venv.start(layout)
        _build(plan, layout, cache, fd, templates, job, report)
        if request.compile:
            _compile(layout, fd, report)
        venv.write_marker(layout, marker)
        report(f"wrote {layout.marker}")
    except OSError as e:
        raise BuildError(f"building {layout.root} failed: {e}") from None
    finally:
        lock.release(fd)
    if trash:
        venv.empty_trash(layout.root)
    return "built"


def _build(plan: resolution.Resolution, layout: venv.Layout, cache: Cache, lock_fd: int,
           templates: skeleton.Templates, job: skeleton.TemplateJob | None, report: Report) -> None:
    """The wheels, each installed as soon as it is unpacked; then the skeleton."""
    child = None
    if not skeleton.is_plain(layout.root) or not skeleton.is_plain(templates.root):
        # A path the shells would quote: virtualenv writes this venv itself (holding the lock).
        roots = toolchain.unpack(cache, toolchain.VIRTUALENV)
        child = skeleton.start(skeleton.command(layout.root, plan.python, roots, os.path.join(
            cache.root, "virtualenv")), os.environ, lock_fd)
    elif job is None or job.path != templates.path_for(plan.python, toolchain.VIRTUALENV[0]):
        job = _template_job(templates, plan.python, cache)
    try:
        plans_dir = os.path.join(cache.root, "plans")
        linker = install.Linker()
        entries = cache.unpack_each([(i.wheel, i.sha256) for i in plan.installs])
        for i, entry in zip(plan.installs, entries):
            how = install.plan_for(entry, plans_dir, i.sha256, lambda: toolchain.activate(cache))
            install.apply(how, entry, layout, i.requested, linker)
        report(f"installed {len(plan.installs)} wheels from {cache.wheels} "
               f"({'copied' if linker.copy else 'hard-linked'})")
    finally:
        if child is not None:
            skeleton.finish(child)
    if child is None:
        assert job is not None
        skeleton.instantiate(job.wait(), layout.root)
    venv.configure(layout, [toolchain.PIP_PACKAGES], f"cros_venv = {__version__}\n")
    report("made the venv skeleton" + (" with virtualenv" if child else " from the virtualenv template"))


def _compile(layout: venv.Layout, lock_fd: int, report: Report) -> None:
    """Byte-compile site-packages in a child that holds the venv's lock (see lock.py)."""
    report("compiling bytecode")
    result = subprocess.run(
        [layout.python, "-I", "-m", "compileall", "-q", "-j0", layout.site_packages],
        pass_fds=(lock_fd,), stdin=subprocess.DEVNULL, capture_output=True, check=False,
    )
    if result.returncode not in (0, 1):  # 1: some file did not compile (pip tolerates that too)
        detail = result.stderr.decode(errors="replace").strip()
        raise BuildError(f"compiling bytecode in {layout.site_packages} failed: {detail}")
