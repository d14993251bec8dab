"""The steps of a build, each a function of the build's Context (context.py), in the order
build.create runs them. A step reads what earlier steps put in the context and adds its
own result.
"""

from __future__ import annotations

import os
import time

from cros_venv import __version__, fastpath, fs, lock, marker, replace, resolution, skeleton, toolchain, venv
from cros_venv.cache import WRITE_ERRNOS
from cros_venv.context import Context, checkpoint
from cros_venv.errors import BuildError, CrosVenvError, InputError, Interrupted
from cros_venv.lite import contextmanager, interrupts_held, signal, suppress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator, Sequence


# -- what is asked for, and what is there ------------------------------------------------

def check_places(venv_dir: str, files: Sequence[str], cache: str | None) -> None:
    """Refuse what a build of `venv_dir` would break: a path its scripts' `#!` lines cannot
    name, and requirement `files` or a `cache` inside it (a rebuild replaces the directory,
    and with it whatever is in it).
    """
    root = os.path.realpath(venv_dir)
    if any(c < " " or c == "\x7f" for c in root):
        raise InputError(f"the venv directory {root!r} has a control character (a tab or a newline) in its path: "
                         "the #! lines of its scripts cannot name it; choose another directory")
    if any("\udc80" <= c <= "\udcff" for c in root):  # bytes that are not UTF-8 (surrogate-escaped)
        raise InputError(f"the venv directory {root!r} has bytes that are not UTF-8 in its path: virtualenv "
                         "and activation scripts cannot name it; choose another directory")
    inside = root.rstrip("/") + "/"
    for path in files:  # the file as named (a link inside DIR is lost too) and what it leads to
        if any(p.startswith(inside) for p in (fs.file_path(path), os.path.realpath(path))):
            raise InputError(f"{path} is inside the venv directory {root}, which create_venv replaces when it "
                             "rebuilds; keep requirements files outside it")
    if cache is not None and (os.path.realpath(cache) + "/").startswith(inside):
        raise InputError(f"the cache {cache} is inside the venv directory {root}, which create_venv replaces "
                         "when it rebuilds; set CROS_VENV_CACHE to a directory outside it")


def resolve(ctx: Context) -> None:
    """requirements -> pins -> wheels -> spec (cached while nothing it depends on changes)."""
    ctx.resolution = (resolution.cached(ctx.cache, ctx.python, ctx.arguments, ctx.sources)
                      or resolution.resolve(ctx.cache, ctx.python, ctx.arguments, ctx.sources, ctx.report,
                                            ctx.unpacker))
    ctx.layout_ = venv.Layout(ctx.root, ctx.plan.python_version)


def why_rebuild(ctx: Context) -> str | None:
    """Why the venv at DIR is not what the resolution makes, or None if it is.

    Not only the spec: the venv must be where it was built (its scripts name that path),
    by this checkout (its pip.conf names our pip_packages/), and whole.
    """
    found = marker.load(ctx.root)
    if found is None:
        return "it has no readable marker"
    if found.spec != ctx.plan.spec:
        return "its requirements, wheels or interpreter differ"
    if found.venv != ctx.root:
        return f"it was built at {found.venv} (moved or copied)"
    if found.wheel_dir != _wheel_dir(ctx):
        return f"it was built from {found.wheel_dir or 'no checkout (a shared venv)'}"
    return venv.intact(ctx.layout, found.dist_info, [toolchain.PIP_PACKAGES], found.survey,
                       python=ctx.plan.python, shared=ctx.shared)


def _wheel_dir(ctx: Context) -> str:
    """The pip_packages/ the venv's pip.conf names: ours, or none for a shared venv (built
    by one checkout, used by many: its pip installs nothing)."""
    return "" if ctx.shared else toolchain.PIP_PACKAGES


def key_is_stale(ctx: Context) -> bool:
    return marker.read_key(ctx.root) != _noop_key(ctx)


def _noop_key(ctx: Context) -> str:
    return fastpath.venv_key(ctx.plan.key, ctx.root, ctx.layout.files)


def nothing_to_do(ctx: Context, why: str | None) -> bool:
    """Current, with a current no-op key, nothing asked of it and no trash to empty."""
    return why is None and not (ctx.request.compile or replace.has_trash(ctx.root) or key_is_stale(ctx))


# -- the lock ----------------------------------------------------------------------------

def prepare_place(ctx: Context) -> None:
    """Before waiting for the lock: fail now if DIR is not ours; create its parents."""
    replace.check_replaceable(ctx.root)
    parent = os.path.dirname(ctx.root)
    try:
        os.makedirs(parent, exist_ok=True)  # as `python -m venv` and virtualenv do: DIR.lock goes there
    except OSError as e:
        raise InputError(f"cannot create {parent} for the venv: {e.strerror}; choose another venv directory") from None


def take_lock(ctx: Context, current: bool) -> bool:
    """Hold DIR.lock (waiting up to --lock-timeout). False: it is not ours to write, and the
    venv is `current` (a reader may use it as it is).
    """
    path = lock.lock_path(ctx.root)
    try:
        ctx.lock_fd = lock.acquire(path, ctx.request.lock_timeout,
                                   lambda pid: ctx.report(f"waiting for {path} (pid {pid})"))
    except OSError as e:
        if current and e.errno in WRITE_ERRNOS and not ctx.request.compile:
            ctx.report(f"{ctx.root} is up to date (its no-op key is stale, but {path} is not ours to write)")
            return False
        if e.errno in WRITE_ERRNOS:
            raise InputError(f"cannot lock {path} ({e.strerror}): {ctx.root} is not writable by this user; "
                             "ask its owner to run create_venv, or choose another venv directory") from None
        raise InputError(f"cannot lock {path}: {e.strerror}; choose another venv directory") from None
    return True


@contextmanager
def locked(ctx: Context, built: list[bool]) -> Iterator[None]:
    """Release the lock, then empty the trash. An interrupt once the venv is complete
    (`built` or found current) says so: only old files are left, for the next run.
    """
    held = True
    try:
        checkpoint("locked")
        yield
        held = False
        lock.release(ctx.lock_fd)
        replace.empty_trash(ctx.root)
        checkpoint("cleaned")
    except KeyboardInterrupt as e:
        if built and not getattr(e, "state", ""):
            raise Interrupted(getattr(e, "signum", signal.SIGINT),
                              f"{ctx.root} is complete; the rest of the old venv is removed by the next run") from None
        raise
    finally:
        if held:
            lock.release(ctx.lock_fd)


def refresh(ctx: Context) -> None:
    """The venv is current: compile if asked, and refresh a stale no-op key if we may."""
    if ctx.request.compile:
        compile_bytecode(ctx)
    if key_is_stale(ctx):
        found = marker.load(ctx.root)
        assert found is not None
        try:
            marker.write(ctx.root, marker.render(ctx.plan.spec, _noop_key(ctx), found.built))
        except OSError as e:
            if e.errno not in WRITE_ERRNOS:
                raise
            ctx.report(f"cannot refresh the no-op key of {ctx.root}: {e.strerror}")
    ctx.report(f"{ctx.root} is up to date")


# -- the build ---------------------------------------------------------------------------

@contextmanager
def rollback(ctx: Context) -> Iterator[None]:
    """On any failure (a bad wheel, a full disk, Ctrl-C, SIGTERM) put the old venv back as
    it was; only SIGKILL leaves a partial venv (no marker) for the next run to rebuild.
    """
    try:
        yield
    except BaseException as e:
        stop_skeleton(ctx)
        if ctx.wiped is None:
            raise
        with interrupts_held():
            put_back = ctx.wiped.restore()
        raise _after_failure(e, ctx.root, put_back, ctx.wiped.aside is not None) from None


def wipe(ctx: Context) -> None:
    """Move the old venv aside (into the trash beside DIR), atomically."""
    with interrupts_held():  # once the old venv is moved, `ctx.wiped` knows how to put it back
        ctx.wiped = replace.wipe(ctx.root)


def sign(ctx: Context) -> None:
    """Create DIR and sign it as ours before anything else goes in."""
    venv.start(ctx.layout)


def start_skeleton(ctx: Context) -> None:
    """Start making bin/python, pyvenv.cfg and lib/ beside the installs: from a template of
    the interpreter's skeleton (made now by a virtualenv child if there is none), or, for a
    path the shells would quote, by virtualenv writing this venv itself (holding the lock).
    """
    if not skeleton.is_plain(ctx.root) or not skeleton.is_plain(ctx.templates.root):
        roots = toolchain.unpack(ctx.cache, toolchain.VIRTUALENV, ctx.unpacker)
        ctx.skeleton_child = skeleton.start(skeleton.command(ctx.root, ctx.plan.python, roots, os.path.join(
            ctx.cache.root, "virtualenv")), os.environ, ctx.lock_fd)
        return
    job = ctx.template_job
    if job is None or job.path != ctx.templates.path_for(ctx.plan.python, toolchain.virtualenv_id(ctx.cache)):
        ctx.template_job = job = template_job(ctx, ctx.plan.python)
    job.launch()


def template_job(ctx: Context, python: str) -> skeleton.TemplateJob:
    return skeleton.TemplateJob(ctx.templates, python, toolchain.virtualenv_id(ctx.cache),
                                lambda: toolchain.unpack(ctx.cache, toolchain.VIRTUALENV, ctx.unpacker),
                                os.path.join(ctx.cache.root, "virtualenv"), ctx.cache.root)


def finish_skeleton(ctx: Context) -> None:
    """Wait for the virtualenv child, or copy the template in."""
    if ctx.skeleton_child is not None:
        child, ctx.skeleton_child = ctx.skeleton_child, None
        skeleton.finish(child)
        ctx.report("made the venv skeleton with virtualenv")
        return
    job = ctx.template_job
    assert job is not None
    skeleton.instantiate_or_remake(job, ctx.root, lambda: template_job(ctx, ctx.plan.python))
    ctx.report("made the venv skeleton from the virtualenv template")


def stop_skeleton(ctx: Context) -> None:
    """A failed build: let a virtualenv child writing into DIR end before DIR is put back."""
    if ctx.skeleton_child is not None:
        child, ctx.skeleton_child = ctx.skeleton_child, None
        with suppress(Exception):
            skeleton.finish(child)


def configure(ctx: Context) -> None:
    """pip.conf (offline, our wheels), provenance in pyvenv.cfg, the no-op key's directory list."""
    assert ctx.linker is not None
    venv.configure(ctx.layout, [toolchain.PIP_PACKAGES], f"cros_venv = {__version__}\n", shared=ctx.shared)
    venv.watch(ctx.layout, ctx.linker.made, ctx.linker.modules)


def compile_if_asked(ctx: Context) -> None:
    if ctx.request.compile:
        compile_bytecode(ctx)


def mark(ctx: Context) -> None:
    """The marker, last: from now on the venv is complete."""
    built = {"tool": f"cros_venv {__version__}", "requirements": ctx.arguments, "wheel_dir": _wheel_dir(ctx),
             "venv": ctx.root, "dist_info": ctx.dist_infos, **venv.survey(ctx.layout).to_json(),
             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    marker.write(ctx.root, marker.render(ctx.plan.spec, _noop_key(ctx), built))
    ctx.report(f"wrote {ctx.layout.marker}")


def compile_bytecode(ctx: Context) -> None:
    """Byte-compile site-packages in a child that holds the venv's lock (see lock.py)."""
    from cros_venv import procs

    layout = ctx.layout
    ctx.report("compiling bytecode")
    if not os.access(layout.site_packages, os.W_OK):
        raise InputError(f"cannot compile {layout.site_packages}: not writable by this user; "
                         "ask the venv's owner to run create_venv --compile")
    result = procs.run([layout.python, "-I", "-m", "compileall", "-q", "-j0", layout.site_packages],
                       pass_fds=(ctx.lock_fd,), stdin_null=True)
    if result.returncode not in (0, 1):  # 1: some file did not compile (pip tolerates that too)
        detail = result.stderr.decode(errors="replace").strip()
        raise BuildError(f"compiling bytecode in {layout.site_packages} failed: {detail}")


# -- helpers -----------------------------------------------------------------------------

def _after_failure(e: BaseException, root: str, put_back: bool, had_old: bool) -> BaseException:
    """The error to report for a failed build, saying what state DIR was left in."""
    if put_back:
        state = f"{root} is as it was before" if had_old else f"nothing was left at {root}"
    else:
        state = f"the next run rebuilds {root}"
    if isinstance(e, KeyboardInterrupt):
        return Interrupted(getattr(e, "signum", signal.SIGINT), state)
    if isinstance(e, CrosVenvError):
        problems = list(e.problems) or ["the build failed"]
        problems[-1] += f" ({state})"
        return type(e)(*problems)
    if isinstance(e, OSError):
        return BuildError(f"building {root} failed: {e} ({state})")
    return e

