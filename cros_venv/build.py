"""The orchestrator: resolve -> compare with the marker -> (lock, wipe, skeleton, install, marker last)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from cros_venv import __version__, fastpath, install, lock, resolution, skeleton, spec, toolchain, venv
from cros_venv.cache import Cache, default_root
from cros_venv.errors import BuildError
from cros_venv.unpacker import Unpacker

Report = Callable[[str], None]

# Test-only fault injection: CROS_VENV_TEST_KILL=STEP[:SIGNAL] makes the build send itself
# SIGNAL (default KILL) right after STEP, one of STEPS. Used by tests/reliability.
STEPS = ("locked", "wiped", "signed", "installed", "skeleton", "configured", "marked", "cleaned")


def checkpoint(step: str) -> None:
    """The build has just finished `step` (a no-op unless a test asked for a fault here)."""
    want = os.environ.get("CROS_VENV_TEST_KILL")
    if want and want.partition(":")[0] == step:
        import signal

        os.kill(os.getpid(), getattr(signal, "SIG" + (want.partition(":")[2] or "KILL")))


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
    with cache.in_use(), Unpacker(cache) as unpacker:
        return _create(request, report, cache, unpacker)


def _create(request: Request, report: Report, cache: Cache, unpacker: Unpacker) -> str:
    python = fastpath.resolve_python(request.python)
    arguments = [os.path.abspath(r) for r in request.requirements]
    root = venv.resolve_dir(request.venv_dir)
    templates = skeleton.Templates(os.path.join(cache.root, "skeletons"))
    job = None
    if (not os.path.exists(os.path.join(root, venv.MARKER)) and os.path.exists(python)
            and (not os.path.lexists(root) or venv.is_ours(root))):
        # No marker: a build is likely. Start unpacking what it will need before resolving:
        # the tool's libraries, the wheels the requirements name, and (if this interpreter
        # has no skeleton template yet) virtualenv, whose child then runs beside the build.
        toolchain.prefetch(cache, toolchain.LIBRARIES, unpacker)
        if (skeleton.is_plain(root) and skeleton.is_plain(templates.root)
                and not os.path.isdir(templates.path_for(python, toolchain.VIRTUALENV[0]))):
            job = _template_job(templates, python, cache, unpacker)
            job.launch()
        _prefetch_named(cache, unpacker, arguments, request.python is None)
    try:
        return _update(request, python, arguments, root, cache, unpacker, templates, job, report)
    finally:
        if job is not None:
            job.settle()


def _prefetch_named(cache: Cache, unpacker: Unpacker, arguments: list[str], ours: bool) -> None:
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
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for m in _PIN.finditer(text):
            pins.append((_norm(m.group(1)), m.group(2)))
            named_pip = named_pip or _norm(m.group(1)) == "pip"
    abi = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    wanted = []
    for pin in pins:
        found = by_pin.get(pin, [])
        if len(found) > 1 and ours:
            found = [n for n in found if n.split("-")[-2] in (abi, "abi3", "none")
                     and n.split("-")[-1].startswith(("any", "linux", "manylinux"))]
        if len(found) == 1:
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
    return skeleton.TemplateJob(templates, python, toolchain.VIRTUALENV[0],
                                lambda: toolchain.unpack(cache, toolchain.VIRTUALENV, unpacker),
                                os.path.join(cache.root, "virtualenv"), cache.root)


def _update(request: Request, python: str, arguments: list[str], root: str, cache: Cache, unpacker: Unpacker,
            templates: skeleton.Templates, job: skeleton.TemplateJob | None, report: Report) -> str:
    # requirements -> pins -> wheels -> spec (cached while nothing it depends on changes)
    plan = (resolution.cached(cache, python, arguments)
            or resolution.resolve(cache, python, arguments, report, unpacker))
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
        checkpoint("locked")
        if current():  # checked again under the lock: another process may have just built it
            report(f"{layout.root} is up to date")
            return "up to date"
        report(f"building {layout.root}")
        trash = venv.wipe(layout.root)
        checkpoint("wiped")
        venv.start(layout)
        checkpoint("signed")
        _build(plan, layout, cache, unpacker, fd, templates, job, report)
        if request.compile:
            _compile(layout, fd, report)
        checkpoint("configured")
        venv.write_marker(layout, marker)
        checkpoint("marked")
        report(f"wrote {layout.marker}")
    except OSError as e:
        raise BuildError(f"building {layout.root} failed: {e}") from None
    finally:
        lock.release(fd)
    if trash:
        venv.empty_trash(layout.root)
    checkpoint("cleaned")
    return "built"


def _build(plan: resolution.Resolution, layout: venv.Layout, cache: Cache, unpacker: Unpacker, lock_fd: int,
           templates: skeleton.Templates, job: skeleton.TemplateJob | None, report: Report) -> None:
    """The wheels, each installed as soon as it is unpacked; then the skeleton."""
    child = None
    if not skeleton.is_plain(layout.root) or not skeleton.is_plain(templates.root):
        # A path the shells would quote: virtualenv writes this venv itself (holding the lock).
        roots = toolchain.unpack(cache, toolchain.VIRTUALENV, unpacker)
        child = skeleton.start(skeleton.command(layout.root, plan.python, roots, os.path.join(
            cache.root, "virtualenv")), os.environ, lock_fd)
    else:
        if job is None or job.path != templates.path_for(plan.python, toolchain.VIRTUALENV[0]):
            job = _template_job(templates, plan.python, cache, unpacker)
        job.launch()
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
            how = install.plan_for(entry, plans_dir, i.sha256, lambda: toolchain.activate(cache, unpacker))
            install.apply(how, entry, layout, i.requested, linker)
        report(f"installed {len(plan.installs)} wheels from {cache.wheels} "
               f"({'copied' if linker.copy else 'hard-linked'})")
        checkpoint("installed")
    finally:
        if child is not None:
            skeleton.finish(child)
    if child is None:
        assert job is not None
        skeleton.instantiate(job.wait(), layout.root)
    checkpoint("skeleton")
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
