"""The head start: before resolving, start unpacking what a build will probably need.

When DIR has no marker a build is likely, so the unpacking workers start on the tool's
libraries, on the wheels the requirements files pin (as far as a quick look can tell),
and, if this interpreter has no skeleton template yet, on virtualenv, whose child then
runs beside the build. Only a guess: resolving decides what is installed, and a wheel
unpacked here but not needed is just a cache entry.
"""

from __future__ import annotations

import os
import sys

from cros_venv import replace, skeleton, steps, toolchain
from cros_venv.context import Context
from cros_venv.locate import running_python

# `name==version` at the start of a line (extras allowed), read with str methods and the
# file names: not `packaging`, which is itself being unpacked at this moment, nor `re`
# (~3 ms of imports with enum, on every warm build).
_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_VERSION = _NAME.union("!+")


def head_start(ctx: Context) -> None:
    """Start the unpacking a build of `ctx` will likely need, if a build is likely."""
    if ctx.has_marker or not ctx.cache.writable or (os.path.lexists(ctx.root) and not replace.is_ours(ctx.root)):
        return
    toolchain.prefetch(ctx.cache, toolchain.LIBRARIES, ctx.unpacker)
    # Only for our own interpreter: another must first prove it is a Python (resolving
    # asks it), so that nothing is started or cached for `--python /bin/true`.
    ours = ctx.python == running_python()
    if ours and skeleton.is_plain(ctx.root) and skeleton.is_plain(ctx.templates.root):
        ctx.template_job = steps.template_job(ctx, ctx.python)
        ctx.template_job.launch()
    ctx.unpacker.submit_missing(guess_wheels(ctx, ours), meta=True)


def guess_wheels(ctx: Context, ours: bool) -> list[str]:
    """The wheels in pip_packages/ that the requirements files pin with `name==version`
    (when several match, the one for this interpreter if `ours`), and pip unless pinned.
    """
    try:
        names = sorted(os.listdir(toolchain.PIP_PACKAGES))
    except OSError:
        return []
    by_pin: dict[tuple[str, str], list[str]] = {}
    for name in names:
        parts = name[:-4].split("-") if name.endswith(".whl") else []
        if len(parts) in (5, 6):
            by_pin.setdefault((_norm(parts[0]), parts[1]), []).append(name)
    pins: list[tuple[str, str]] = []
    for path in ctx.arguments:
        data = ctx.sources.get(path)
        if data is not None:
            pins += [pin for line in data.decode("utf-8", "replace").split("\n") if (pin := _pin(line))]
    abi = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    wanted = []
    for pin in pins:
        found = by_pin.get(pin, [])
        if len(found) > 1 and ours:
            found = [n for n in found if n.split("-")[-2] in (abi, "abi3", "none")
                     and n.split("-")[-1].startswith(("any", "linux", "manylinux"))]
        if len(found) == 1 and os.path.isfile(os.path.join(toolchain.PIP_PACKAGES, found[0])):
            wanted.append(os.path.join(toolchain.PIP_PACKAGES, found[0]))
    if not any(name == "pip" for name, _ in pins):
        wanted.append(os.path.join(toolchain.PIP_PACKAGES, toolchain.PIP))
    return wanted


def _pin(line: str) -> tuple[str, str] | None:
    """(normalised name, version) of a line that starts `name==version` (or `===`; spaces
    and extras allowed, anything after the version ignored), else None."""
    line = line.lstrip(" \t")
    end = 0
    while end < len(line) and line[end] in _NAME:
        end += 1
    name, rest = line[:end], line[end:].lstrip(" \t")
    if not name or not name[0].isalnum() or not name[0].isascii():
        return None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            return None
        rest = rest[close + 1:].lstrip(" \t")
    if not rest.startswith("=="):
        return None
    rest = rest[3:] if rest.startswith("===") else rest[2:]
    rest = rest.lstrip(" \t")
    end = 0
    while end < len(rest) and rest[end] in _VERSION:
        end += 1
    return (_norm(name), rest[:end]) if end else None


def _norm(name: str) -> str:
    """PEP 503's normalisation (`re.sub(r"[-_.]+", "_", name).lower()`), without `re`."""
    name = name.replace("-", "_").replace(".", "_").lower()
    while "__" in name:
        name = name.replace("__", "_")
    return name
