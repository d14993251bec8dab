"""Shared venvs: `create_venv REQUIREMENTS` finds or builds an immutable venv in the cache,
named by its spec's hash, and prints its path. The same requirements in any checkout (or
any dependent repo) with the same wheels and interpreter get the same venv.

Under the cache root (names.py)::

    venvs/NAME               a symlink to the venv; NAME = py3.11-<sha256 of the spec>[:16]
    venvs/NAME.lock          the build lock of NAME: one build at a time
    venvs/.d/NAME-<id>       the venv. Its files (scripts' #! lines, activate) name this
                             path, and it never moves: built here, complete (marker last)
                             before anyone can find it, then never changed
    venvs/.requests/<hash>   "NAME\\n<no-op key>\\n" per request (interpreter, checkout,
                             requirement paths): how the fast path finds NAME without resolving

Publishing is an atomic rename of a new symlink over venvs/NAME: a reader that resolves
NAME sees the old venv or the new one, complete, never a half-built one. A venv found
damaged (changed by hand) is not repaired in place, since readers may be running from it:
a new one is built beside it and NAME moved to it; the old one is left to `bin/venv_gc`.

A process running from a shared venv (bin/python_venv) holds a shared flock on its
directory; GC removes a directory only under an exclusive flock it got without waiting.
"""

from __future__ import annotations

import contextlib
import os
import time

from cros_venv import fastpath, lock, prefetch, skeleton, steps
from cros_venv.cache import Cache, atomic_write, default_root
from cros_venv.context import Context, Request, checkpoint
from cros_venv.digest import sha256_hex
from cros_venv.errors import InputError
from cros_venv.names import SHARED_DIR, SHARED_REAL, SHARED_REQUESTS
from cros_venv.unpacker import Unpacker
from cros_venv.venv import Layout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

def venvs_dir(cache_root: str) -> str:
    return os.path.join(cache_root, SHARED_DIR)


def name_of(ctx: Context) -> str:
    """The shared venv's name: interpreter version and the spec's hash (the spec names the
    interpreter, every pin and every wheel's sha256: not the checkout or file paths)."""
    import json

    digest = sha256_hex(json.dumps(ctx.plan.spec.to_json(), sort_keys=True).encode())
    return f"py{ctx.plan.python_version}-{digest[:16]}"


def create(request: Request, report: Callable[[str], None]) -> str:
    """The path (venvs/NAME) of a complete shared venv for `request` (its venv_dir unused)."""
    cache = Cache(default_root())
    top = venvs_dir(cache.root)
    steps.check_places(os.path.join(top, SHARED_REAL, "x"), [], None)  # a cache path #! lines can name
    cache.ensure_dirs()
    for sub in (top, os.path.join(top, SHARED_REAL), os.path.join(top, SHARED_REQUESTS)):
        try:
            os.makedirs(sub, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create {sub}: {e.strerror}; set CROS_VENV_CACHE to a directory "
                             "this user can write") from None
    with cache.in_use(), Unpacker(cache) as unpacker:
        pending = Request(os.path.join(top, SHARED_REAL, ".pending"), request.requirements, request.python,
                          request.lock_timeout)
        ctx = Context(pending, report, cache, unpacker, skeleton.Templates(os.path.join(cache.root, "skeletons")))
        ctx.shared = True
        try:
            return _run(ctx, top)
        finally:
            if ctx.template_job is not None:
                ctx.template_job.settle()


def _run(ctx: Context, top: str) -> str:
    prefetch.head_start(ctx)
    steps.resolve(ctx)
    name = name_of(ctx)
    link = os.path.join(top, name)
    if _state(ctx, link) is None:
        return _found(ctx, top, name)
    path = os.path.join(top, name + ".lock")
    try:
        ctx.lock_fd = lock.acquire(path, ctx.request.lock_timeout,
                                   lambda pid: ctx.report(f"waiting for {path} (pid {pid})"))
    except OSError as e:
        raise InputError(f"cannot lock {path} to build the shared venv ({e.strerror}): the cache {ctx.cache.root} is "
                         "not writable by this user; set CROS_VENV_CACHE to a directory you can write") from None
    try:
        checkpoint("locked")
        why = _state(ctx, link)
        if why is None:  # another process built it while we waited
            return _found(ctx, top, name)
        if os.path.lexists(link):
            ctx.report(f"the shared venv {link} cannot be used ({why}): building a new one beside it")
        real = os.path.join(top, SHARED_REAL, f"{name}-{time.time_ns():x}{os.getpid():x}")
        ctx.root = real
        ctx.layout_ = Layout(real, ctx.plan.python_version)
        ctx.report(f"building the shared venv {link}")
        from cros_venv.build import build_steps

        build_steps(ctx, then=lambda: _publish(real, link))
        checkpoint("marked")
    finally:
        lock.release(ctx.lock_fd)
    return _found(ctx, top, name)


def _state(ctx: Context, link: str) -> str | None:
    """Why `link` is not a complete, unchanged shared venv for this resolution, or None if
    it is (the context then points at it)."""
    if not os.path.islink(link):
        return "it is missing" if not os.path.lexists(link) else "it is not a link"
    real = os.path.realpath(link)
    if os.path.dirname(real) != os.path.join(os.path.realpath(os.path.dirname(link)), SHARED_REAL):
        return f"it leads to {real}, outside {SHARED_REAL}/"
    if not os.path.basename(real).startswith(os.path.basename(link) + "-"):
        return f"it leads to {real}, another spec's venv"
    if not os.path.isdir(real):
        return f"{real} is missing"
    ctx.root = real
    ctx.layout_ = Layout(real, ctx.plan.python_version)
    return steps.why_rebuild(ctx)


def _publish(real: str, link: str) -> None:
    """Make venvs/NAME lead to `real`, atomically (a new link renamed over the old). Something
    else put at NAME (a directory) is moved into .d/ first, where GC removes it."""
    if os.path.lexists(link) and not os.path.islink(link):
        os.rename(link, os.path.join(os.path.dirname(real), f"{os.path.basename(link)}-moved-{os.urandom(4).hex()}"))
    tmp = f"{link}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(os.path.join(SHARED_REAL, os.path.basename(real)), tmp)
    os.replace(tmp, link)
    fd = os.open(os.path.dirname(link), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _found(ctx: Context, top: str, name: str) -> str:
    """Remember this request's venv (for the fast path), mark it used, return its path."""
    link = os.path.join(top, name)
    with contextlib.suppress(OSError):
        atomic_write(fastpath.request_file(ctx.cache.root, ctx.python, ctx.arguments),
                     f"{name}\n{ctx.plan.key}\n".encode())
    fastpath.touch(link)
    return link
