"""The orchestrator: resolve -> compare with the marker -> (lock, wipe, skeleton, install, marker last)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from typing import Callable, Iterator, NamedTuple

from cros_venv import __version__, fastpath, install, lock, resolution, skeleton, spec, toolchain, venv
from cros_venv.cache import WRITE_ERRNOS, Cache, default_root
from cros_venv.errors import BuildError, CrosVenvError, InputError, Interrupted
from cros_venv.unpacker import Unpacker

Report = Callable[[str], None]

# Test-only fault injection: CROS_VENV_TEST_KILL=STEP[:SIGNAL] makes the build send itself
# SIGNAL (default KILL) right after STEP, one of STEPS. Used by tests/reliability.
STEPS = ("locked", "wiped", "signed", "installed", "skeleton", "configured", "marked", "cleaned")


def checkpoint(step: str) -> None:
    """The build has just finished `step` (a no-op unless a test asked for a fault here)."""
    want = os.environ.get("CROS_VENV_TEST_KILL")
    if want and want.partition(":")[0] == step:
        os.kill(os.getpid(), getattr(signal, "SIG" + (want.partition(":")[2] or "KILL")))


class Request(NamedTuple):
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
    with cache.in_use(), Unpacker(cache) as unpacker:
        return _create(request, report, cache, unpacker)


def _create(request: Request, report: Report, cache: Cache, unpacker: Unpacker) -> str:
    python = fastpath.resolve_python(request.python)
    arguments = [os.path.abspath(r) for r in request.requirements]
    root = venv.resolve_dir(request.venv_dir)
    sources = fastpath.Sources()  # each requirements file is read once (it may be a pipe)
    templates = skeleton.Templates(os.path.join(cache.root, "skeletons"))
    job = None
    ours = python == fastpath.running_python()
    if (not os.path.exists(os.path.join(root, venv.MARKER)) and cache.writable
            and (not os.path.lexists(root) or venv.is_ours(root))):
        # No marker: a build is likely. Start unpacking what it will need before resolving:
        # the tool's libraries, the wheels the requirements name, and (if this interpreter
        # has no skeleton template yet) virtualenv, whose child then runs beside the build.
        # Only for our own interpreter: another must first prove it is a Python (resolving
        # asks it), so that nothing is started or cached for `--python /bin/true`.
        toolchain.prefetch(cache, toolchain.LIBRARIES, unpacker)
        if ours and skeleton.is_plain(root) and skeleton.is_plain(templates.root):
            job = _template_job(templates, python, cache, unpacker)
            job.launch()
        _prefetch_named(cache, unpacker, arguments, sources, ours)
    try:
        return _update(request, python, arguments, sources, root, cache, unpacker, templates, job, report)
    finally:
        if job is not None:
            job.settle()


def _prefetch_named(cache: Cache, unpacker: Unpacker, arguments: list[str], sources: fastpath.Sources,
                    ours: bool) -> None:
    """Start unpacking the wheels that the requirements files pin, as far as a quick look
    can tell (`name==version` lines; when several wheels match, the one for this
    interpreter if `ours`). Only a head start: resolving decides what is installed, and a
    wheel unpacked here but not needed is just a cache entry. (A regex and the filenames,
    not `packaging`: that is itself being unpacked at this moment.)
    """
    try:
        names = sorted(os.listdir(toolchain.PIP_PACKAGES))
    except OSError:
        return
    by_pin: dict[tuple[str, str], list[str]] = {}
    for name in names:
        parts = name[:-4].split("-") if name.endswith(".whl") else []
        if len(parts) in (5, 6):
            by_pin.setdefault((_norm(parts[0]), parts[1]), []).append(name)
    pins: list[tuple[str, str]] = []
    named_pip = False
    for path in arguments:
        data = sources.get(path)
        if data is None:
            continue
        for m in _PIN.finditer(data.decode("utf-8", "replace")):
            pins.append((_norm(m.group(1)), m.group(2)))
            named_pip = named_pip or _norm(m.group(1)) == "pip"
    abi = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    wanted = []
    for pin in pins:
        found = by_pin.get(pin, [])
        if len(found) > 1 and ours:
            found = [n for n in found if n.split("-")[-2] in (abi, "abi3", "none")
                     and n.split("-")[-1].startswith(("any", "linux", "manylinux"))]
        if len(found) == 1 and os.path.isfile(os.path.join(toolchain.PIP_PACKAGES, found[0])):
            wanted.append(os.path.join(toolchain.PIP_PACKAGES, found[0]))
    if not named_pip:
        wanted.append(os.path.join(toolchain.PIP_PACKAGES, toolchain.PIP))
    unpacker.submit_missing(wanted, meta=True)


_PIN = re.compile(r"^[ \t]*([A-Za-z0-9][A-Za-z0-9._-]*)[ \t]*(?:\[[^\]\n]*\])?[ \t]*===?[ \t]*([A-Za-z0-9.!+_-]+)",
                  re.MULTILINE)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _template_job(templates: skeleton.Templates, python: str, cache: Cache,
                  unpacker: Unpacker) -> skeleton.TemplateJob:
    return skeleton.TemplateJob(templates, python, toolchain.virtualenv_id(cache),
                                lambda: toolchain.unpack(cache, toolchain.VIRTUALENV, unpacker),
                                os.path.join(cache.root, "virtualenv"), cache.root)


def _state(layout: venv.Layout, plan: resolution.Resolution) -> str | None:
    """Why the venv at `layout` is not what `plan` makes, or None if it is.

    Not only the spec: the venv must be where it was built (its scripts name that path),
    by this checkout (its pip.conf names our pip_packages/), and whole.
    """
    data = venv.read_marker(layout)
    found = spec.read_marker(data) if data is not None else None
    if found is None:
        return "it has no readable marker"
    if found.spec != plan.spec:
        return "its requirements, wheels or interpreter differ"
    if found.venv != layout.root:
        return f"it was built at {found.venv} (moved or copied)"
    if found.wheel_dir != toolchain.PIP_PACKAGES:
        return f"it was built from {found.wheel_dir}"
    return venv.intact(layout, list(found.dist_info), [toolchain.PIP_PACKAGES], found.pyvenv_cfg)


def _update(request: Request, python: str, arguments: list[str], sources: fastpath.Sources, root: str,
            cache: Cache, unpacker: Unpacker, templates: skeleton.Templates, job: skeleton.TemplateJob | None,
            report: Report) -> str:
    # requirements -> pins -> wheels -> spec (cached while nothing it depends on changes)
    plan = (resolution.cached(cache, python, arguments, sources)
            or resolution.resolve(cache, python, arguments, sources, report, unpacker))
    layout = venv.Layout(root, plan.python_version)
    why = _state(layout, plan)
    if why is None and not (request.compile or venv.has_trash(root) or _stale_key(layout, plan)):
        report(f"{root} is up to date")
        return "up to date"
    if why is not None:
        venv.check_replaceable(root)  # fail before waiting for the lock
        _make_parent(root)
    lock_file = lock.lock_path(root)
    try:
        fd = lock.acquire(lock_file, request.lock_timeout, lambda pid: report(f"waiting for {lock_file} (pid {pid})"))
    except OSError as e:
        if why is None and e.errno in WRITE_ERRNOS and not request.compile:
            report(f"{root} is up to date (its no-op key is stale, but {lock_file} is not ours to write)")
            return "up to date"
        if e.errno in WRITE_ERRNOS:
            raise InputError(f"cannot lock {lock_file} ({e.strerror}): {root} is not writable by this user; "
                             "ask its owner to run create_venv, or choose another venv directory") from None
        raise InputError(f"cannot lock {lock_file}: {e.strerror}; choose another venv directory") from None
    outcome = ""
    held = True
    try:
        checkpoint("locked")
        why = _state(layout, plan)  # again, under the lock: another process may have just built it
        if why is None:
            _refresh(request, layout, plan, fd, report)
            outcome = "up to date"
        else:
            report(f"building {root}: {why}")
            _rebuild(request, plan, layout, arguments, cache, unpacker, fd, templates, job, report)
            outcome = "built"
            checkpoint("marked")
        held = False
        lock.release(fd)
        venv.empty_trash(root)
        checkpoint("cleaned")
    except KeyboardInterrupt as e:
        if outcome and not getattr(e, "state", ""):  # the venv is complete; only old files are left
            raise Interrupted(getattr(e, "signum", signal.SIGINT),
                              f"{root} is complete; the rest of the old venv is removed by the next run") from None
        raise
    finally:
        if held:
            lock.release(fd)
    return outcome


def _stale_key(layout: venv.Layout, plan: resolution.Resolution) -> bool:
    return fastpath.read_key(layout.root) != fastpath.venv_key(plan.key, layout.root, layout.files)


def _make_parent(root: str) -> None:
    """Create DIR's missing parents (as `python -m venv` and virtualenv do): DIR.lock goes there."""
    try:
        os.makedirs(os.path.dirname(root), exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {os.path.dirname(root)} for the venv: {e.strerror}; "
                         "choose another venv directory") from None


def _refresh(request: Request, layout: venv.Layout, plan: resolution.Resolution, lock_fd: int,
             report: Report) -> None:
    """The venv is current: compile if asked, and refresh a stale no-op key if we may."""
    if request.compile:
        _compile(layout, lock_fd, report)
    if _stale_key(layout, plan):
        data = venv.read_marker(layout)
        found = spec.read_marker(data) if data is not None else None
        assert found is not None
        try:
            venv.write_marker(layout, spec.marker_bytes(
                plan.spec, fastpath.venv_key(plan.key, layout.root, layout.files), found.built))
        except OSError as e:
            if e.errno not in WRITE_ERRNOS:
                raise
            report(f"cannot refresh the no-op key of {layout.root}: {e.strerror}")
    report(f"{layout.root} is up to date")


def _rebuild(request: Request, plan: resolution.Resolution, layout: venv.Layout, arguments: list[str],
             cache: Cache, unpacker: Unpacker, lock_fd: int, templates: skeleton.Templates,
             job: skeleton.TemplateJob | None, report: Report) -> None:
    """Wipe, build, marker last. On any failure (a bad wheel, a full disk, Ctrl-C, SIGTERM)
    the old venv is put back as it was; only SIGKILL leaves a partial venv (no marker) for
    the next run to rebuild.
    """
    wiped = None
    try:
        with _signals_blocked():  # once the old venv is moved, `wiped` knows how to put it back
            wiped = venv.wipe(layout.root)
        checkpoint("wiped")
        venv.start(layout)
        checkpoint("signed")
        dist_infos = _build(plan, layout, cache, unpacker, lock_fd, templates, job, report)
        if request.compile:
            _compile(layout, lock_fd, report)
        checkpoint("configured")
        with open(os.path.join(layout.root, "pyvenv.cfg"), "rb") as f:
            pyvenv_cfg = fastpath.sha256_hex(f.read())
        built = {"tool": f"cros_venv {__version__}", "requirements": arguments, "wheel_dir": toolchain.PIP_PACKAGES,
                 "venv": layout.root, "dist_info": dist_infos, "pyvenv_cfg": pyvenv_cfg,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        venv.write_marker(layout, spec.marker_bytes(
            plan.spec, fastpath.venv_key(plan.key, layout.root, layout.files), built))
    except BaseException as e:
        if wiped is None:
            raise
        with _signals_blocked():
            put_back = wiped.restore()
        raise _after_failure(e, layout.root, put_back, wiped.aside is not None) from None
    report(f"wrote {layout.marker}")


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """A second Ctrl-C (or SIGTERM) must not interrupt putting the old venv back."""
    wanted = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


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


def _build(plan: resolution.Resolution, layout: venv.Layout, cache: Cache, unpacker: Unpacker, lock_fd: int,
           templates: skeleton.Templates, job: skeleton.TemplateJob | None, report: Report) -> list[str]:
    """The wheels, each installed as soon as it is unpacked; then the skeleton. Returns the
    installed .dist-info directories.
    """
    child = None
    if not skeleton.is_plain(layout.root) or not skeleton.is_plain(templates.root):
        # A path the shells would quote: virtualenv writes this venv itself (holding the lock).
        roots = toolchain.unpack(cache, toolchain.VIRTUALENV, unpacker)
        child = skeleton.start(skeleton.command(layout.root, plan.python, roots, os.path.join(
            cache.root, "virtualenv")), os.environ, lock_fd)
    else:
        if job is None or job.path != templates.path_for(plan.python, toolchain.virtualenv_id(cache)):
            job = _template_job(templates, plan.python, cache, unpacker)
        job.launch()
    dist_infos = []
    try:
        todo = {i.wheel for i in plan.installs if not cache.has(i.sha256)}
        for i in plan.installs:
            if i.wheel in todo:
                unpacker.submit(i.wheel, i.sha256)
        plans_dir = os.path.join(cache.root, "plans")
        linker = install.Linker()
        for n, i in enumerate(plan.installs, 1):
            report(f"installing {os.path.basename(i.wheel)} ({n}/{len(plan.installs)})")
            if i.wheel in todo:
                sha256, entry = unpacker.result(i.wheel)
                if sha256 != i.sha256:
                    raise BuildError(f"{i.wheel} changed during the build; run create_venv again")
            else:
                entry = cache.touch(cache.entry(i.sha256))
            how = None
            for attempt in range(3):
                # An entry is checked before it is linked from: a file edited or deleted through
                # a venv (hard links) sets it aside, and the wheel is unpacked again.
                if not cache.intact(entry):
                    report(f"the cache entry of {os.path.basename(i.wheel)} was changed; unpacking it again")
                    cache.set_aside(entry)
                    entry = cache.unpack(i.wheel, i.sha256)
                how = install.plan_for(entry, plans_dir, i.sha256, lambda: toolchain.activate(cache, unpacker))
                try:
                    install.apply(how, entry, layout, i.requested, linker)
                    break
                except install.SourceMissing:
                    if attempt == 2:
                        raise BuildError(f"the cache entry {entry} keeps disappearing; run create_venv again") from None
            assert how is not None
            dist_infos.append(how.dist_info)
        report(f"installed {len(plan.installs)} wheels from {cache.wheels} "
               f"({'copied' if linker.copy else 'hard-linked'})")
        checkpoint("installed")
    finally:
        if child is not None:
            skeleton.finish(child)
    if child is None:
        assert job is not None
        skeleton.instantiate_or_remake(job, layout.root, lambda: _template_job(templates, plan.python, cache, unpacker))
    checkpoint("skeleton")
    venv.configure(layout, [toolchain.PIP_PACKAGES], f"cros_venv = {__version__}\n")
    venv.watch(layout, linker.made, linker.modules)
    report("made the venv skeleton" + (" with virtualenv" if child else " from the virtualenv template"))
    return dist_infos


def _compile(layout: venv.Layout, lock_fd: int, report: Report) -> None:
    """Byte-compile site-packages in a child that holds the venv's lock (see lock.py)."""
    import subprocess

    report("compiling bytecode")
    if not os.access(layout.site_packages, os.W_OK):
        raise InputError(f"cannot compile {layout.site_packages}: not writable by this user; "
                         "ask the venv's owner to run create_venv --compile")
    result = subprocess.run(
        [layout.python, "-I", "-m", "compileall", "-q", "-j0", layout.site_packages],
        pass_fds=(lock_fd,), stdin=subprocess.DEVNULL, capture_output=True, check=False,
    )
    if result.returncode not in (0, 1):  # 1: some file did not compile (pip tolerates that too)
        detail = result.stderr.decode(errors="replace").strip()
        raise BuildError(f"compiling bytecode in {layout.site_packages} failed: {detail}")
