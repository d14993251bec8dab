"""The orchestrator: requirements -> pins -> wheels -> spec -> (marker | lock, wipe, build, marker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Callable

from cros_venv import __version__, fastpath, toolchain
from cros_venv.cache import Cache, default_root
from cros_venv.errors import BuildError

if TYPE_CHECKING:
    from cros_venv.venv import Layout

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

    ensurepip does the same for the pip it runs (bpo-6883 era: a user's PIP_* variables and
    config must not change what a tool installs). Children also run with -I.
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
    toolchain.activate(cache)
    # Imported only now: they need the tool's libraries, which `activate` put on sys.path.
    from cros_venv import install, interpreter, lock, requirements, skeleton, spec, venv, wheels

    # requirements -> pins, for the target interpreter
    python = fastpath.resolve_python(request.python)
    target = interpreter.find(python, os.path.join(cache.root, "interpreters"), sys.path[:1])
    report(f"target: {target.describe()}")
    reqs = requirements.load(list(request.requirements))
    wanted, constraints = requirements.applicable(reqs, target.environment)
    house = wheels.Wheelhouse.scan(toolchain.PIP_PACKAGES)
    if "pip" not in wanted and "pip" not in constraints:
        pip = requirements.pin_for_wheel(os.path.join(toolchain.PIP_PACKAGES, toolchain.PIP))
        wanted[pip.name] = pip

    # pins -> wheels (closure checked), their hashes
    best = {n: wheels.best_wheel(house.candidates(n, p.version), target) for n, p in {**constraints, **wanted}.items()}
    hashes = cache.hashes([w.path for w in best.values() if w is not None])

    def metadata(w: wheels.Wheel) -> Message:
        h = hashes.get(w.path)
        return wheels.read_metadata(w, cache.entry(h) if h and cache.has(h) else None)

    chosen = wheels.resolve(wanted, constraints, house, target, metadata)
    wheels.check_hashes(chosen.values(), hashes, reqs.require_hashes)
    report(f"resolved {len(chosen)} packages from {house.directory}")

    # wheels -> spec; compare with the marker
    the_spec = spec.Spec.build(
        target.identity(),
        [str(r) for r in chosen.values()],
        {r.wheel.filename: hashes[r.wheel.path] for r in chosen.values()},
    )
    noop_key = fastpath.make_key(
        __version__, python, [os.path.abspath(r) for r in request.requirements], reqs.files,
        [toolchain.PIP_PACKAGES], sorted(r.wheel.path for r in chosen.values()),
    )
    layout = venv.Layout(venv.resolve_dir(request.venv_dir), target.python_version)
    provenance = {"tool": f"cros_venv {__version__}",
                  "requirements": [os.path.abspath(r) for r in request.requirements],
                  "wheel_dir": toolchain.PIP_PACKAGES, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def current() -> bool:
        old = venv.read_marker(layout)
        if old is None or spec.spec_from_marker(old) != the_spec:
            return False
        if fastpath.read_key(layout.root) != noop_key:
            venv.write_marker(layout, spec.marker_bytes(the_spec, noop_key, provenance))
        return True

    if venv.read_marker(layout) is None or spec.spec_from_marker(venv.read_marker(layout) or b"") != the_spec:
        venv.check_replaceable(layout.root)  # fail before waiting for the lock
    lock_file = lock.lock_path(layout.root)
    fd = lock.acquire(lock_file, request.lock_timeout, lambda pid: report(f"waiting for {lock_file} (pid {pid})"))
    try:
        if current():
            report(f"{layout.root} is up to date")
            return "up to date"

        # lock -> wipe -> skeleton (in a child, in parallel) -> install -> marker last
        report(f"building {layout.root}")
        trash = venv.wipe(layout.root)
        venv.start(layout)
        templates = skeleton.Templates(os.path.join(cache.root, "skeletons"))
        template = templates.path_for(target.path, toolchain.VIRTUALENV[0])
        staging: str | None = None
        child = None
        if not os.path.isdir(template) or not skeleton.is_plain(layout.root):
            roots = toolchain.unpack(cache, toolchain.VIRTUALENV)
            app_data = os.path.join(cache.root, "virtualenv")
            if skeleton.is_plain(layout.root) and skeleton.is_plain(templates.root):
                staging, dest = templates.staging()
                child = skeleton.start(skeleton.command(dest, target.path, roots, app_data), os.environ, None)
            else:
                template = ""
                child = skeleton.start(skeleton.command(layout.root, target.path, roots, app_data), os.environ, fd)
        try:
            entries = cache.unpack_all({r.wheel.path: hashes[r.wheel.path] for r in chosen.values()})
            report(f"unpacked {len(entries)} wheels into {cache.wheels}")
            linker = install.Linker()
            for name in sorted(chosen):
                r = chosen[name]
                install.install(entries[r.wheel.path], layout, r.direct, linker)
            report(f"installed {len(chosen)} wheels ({'copied' if linker.copy else 'hard-linked'})")
        finally:
            if child is not None:
                try:
                    skeleton.finish(child)
                except BaseException:
                    if staging:
                        templates.discard(staging)
                    raise
                if staging:
                    templates.commit(staging, template)
        if template:
            skeleton.instantiate(template, layout.root)
        report("made the venv skeleton" + (" from the cached virtualenv template" if template else " with virtualenv"))
        venv.configure(layout, [toolchain.PIP_PACKAGES], f"cros_venv = {__version__}\n")
        if request.compile:
            _compile(layout, fd, report)
        venv.write_marker(layout, spec.marker_bytes(the_spec, noop_key, provenance))
        report(f"wrote {layout.marker}")
    except OSError as e:
        raise BuildError(f"building {layout.root} failed: {e}") from None
    finally:
        lock.release(fd)
    if trash:
        venv.empty_trash(layout.root)
    return "built"


def _compile(layout: Layout, lock_fd: int, report: Report) -> None:
    """Byte-compile site-packages in a child that holds the venv's lock (see lock.py)."""
    site_packages = layout.site_packages
    report("compiling bytecode")
    result = subprocess.run(
        [layout.python, "-I", "-m", "compileall", "-q", "-j0", site_packages],
        pass_fds=(lock_fd,), stdin=subprocess.DEVNULL, capture_output=True, check=False,
    )
    if result.returncode not in (0, 1):  # 1: some file did not compile (pip tolerates that too)
        detail = result.stderr.decode(errors="replace").strip()
        raise BuildError(f"compiling bytecode in {site_packages} failed: {detail}")
