"""Requirements files (pip's format) -> pins: files, `-r`/`-c` includes, merging, markers
(one line's parsing is reqlines.py's).

Every requirement must be pinned to one exact version with `==`. Only options that keep
the install inside pip_packages/ are accepted. Every problem in every file is collected
and reported together as `file:line: reason`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

from packaging.markers import Marker
from packaging.utils import NormalizedName, parse_wheel_filename

from cros_venv import fs, pylock, sources
from cros_venv.errors import InputError
from cros_venv.reqlines import (
    HARMLESS_OPTIONS,
    MARKER_ERRORS,
    MARKER_FIX,
    OUTSIDE_OPTIONS,
    Locked,
    Pin,
    excerpt,
    logical_lines,
    parse_requirement,
    split_option,
    split_options,
)


@dataclass(frozen=True)
class RequirementFiles:
    """What a set of requirements files says, before markers are evaluated."""

    pins: tuple[Pin, ...]
    files: tuple[tuple[str, bytes], ...]  # every file read (absolute path, bytes)
    require_hashes: bool = False
    locks: tuple[pylock.LockFile, ...] = ()  # what each pylock.toml read says of its environments


MAX_INCLUDE_DEPTH = 100  # files deep: -r/-c are followed recursively (600 levels: RecursionError)
MAX_FILE_SIZE = sources.MAX_REQUIREMENTS_SIZE
read_file = sources.read_requirements  # load's default reader: the no-op path's, with its size limit


@dataclass
class _Parser:
    read: Callable[[str], bytes]
    pins: list[Pin] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    texts: dict[str, str | None] = field(default_factory=dict)  # by absolute path; None: reported
    problems: list[str] = field(default_factory=list)
    require_hashes: bool = False
    locks: list[pylock.LockFile] = field(default_factory=list)


def _read(parser: _Parser, path: str, shown: str, key: str) -> str | None:
    """The text of the file at `path`, read once however often it is included by `key`; None
    (and a problem, the first time) if it cannot be read or is not UTF-8.

    `key` is the absolute path recorded for the no-op check, which reads the file again by
    it: it must name whatever `path` would name then, so an include keeps its symlinks
    unresolved (`inc/base.txt` with `inc` a link is re-read through the link as it is then).
    """
    if key in parser.texts:
        return parser.texts[key]
    parser.texts[key] = None
    try:
        data = parser.read(path)
    except OSError as e:
        parser.problems.append(f"{shown}:0: cannot read requirements file: {e.strerror or e}")
        return None
    parser.files.append((key, data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        parser.problems.append(f"{shown}:0: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8")
        return None
    parser.texts[key] = text
    return text


def _load(parser: _Parser, path: str, shown: str, key: str, constraint: bool,
          stack: tuple[tuple[str, str], ...]) -> None:
    """Parse the file at `path` (`shown` in messages, `key` recorded: see _read); `stack`:
    the (real path, shown) of every file including it, itself last.
    """
    text = _read(parser, path, shown, key)
    if text is None:
        return
    if pylock.is_lock_path(path):  # PEP 751: chosen by the file name
        pins, lock = pylock.parse(text, path, shown, constraint, parser.problems)
        parser.pins += pins
        parser.locks += [lock] if lock is not None else []
        parser.require_hashes = True  # a lock's hashes are checked as --hash on every line
        return
    if path.lower().endswith(".toml"):  # a lock by another name would read as ~40 bad requirement lines
        parser.problems.append(f"{shown}:0: not a requirements file, and not named as a lock is (pylock.toml or "
                               "pylock.NAME.toml, PEP 751, NAME without dots); rename it, or give a requirements file")
        return
    for number, line in logical_lines(text):
        where = f"{shown}:{number}"
        if not line.startswith("-"):
            pin = parse_requirement(line, where, constraint, parser.problems)
            if pin is not None:
                parser.pins.append(pin)
            continue
        tokens = split_options(line, where, parser.problems)
        if tokens is None:
            continue
        opt, value, _ = split_option(tokens)
        if opt in ("-r", "--requirement", "-c", "--constraint"):
            _include(parser, (path, shown, key), (opt, value), where, constraint, stack)
        elif opt == "--require-hashes":
            parser.require_hashes = True
        elif opt in HARMLESS_OPTIONS:
            pass
        elif opt in ("-e", "--editable"):
            parser.problems.append(f"{where}: editable installs are not supported; "
                                   "build a wheel into pip_packages/ and pin name==version")
        elif opt in OUTSIDE_OPTIONS:
            parser.problems.append(f"{where}: {opt} would install from outside pip_packages/; remove it")
        elif opt == "--no-binary":
            parser.problems.append(f"{where}: --no-binary is not supported: create_venv installs only wheels")
        else:
            parser.problems.append(f"{where}: option {opt} is not supported in requirements files; remove it")


def _include(parser: _Parser, includer: tuple[str, str, str], option: tuple[str, str | None], where: str,
             constraint: bool, stack: tuple[tuple[str, str], ...]) -> None:
    """`-r FILE` / `-c FILE` on line `where` of the includer (path, shown, key): FILE is
    relative to the includer's directory.
    """
    path, shown, key = includer
    opt, value = option
    if not value:
        parser.problems.append(f"{where}: {opt} needs a file name")
        return
    if "\0" in value:
        parser.problems.append(f"{where}: {opt} {value!r} names a file with a NUL character; remove it")
        return
    included = os.path.join(os.path.dirname(path), value)
    included_shown = os.path.join(os.path.dirname(shown), value)
    real = os.path.realpath(included)
    reals = [r for r, _ in stack]
    if len(stack) >= MAX_INCLUDE_DEPTH:
        parser.problems.append(f"{where}: {opt} {value} nests includes more than {MAX_INCLUDE_DEPTH} files deep; "
                               "include them from fewer levels")
        return
    if real in reals:
        chain = [s for _, s in stack[reals.index(real):]] + [included_shown]
        parser.problems.append(f"{where}: {opt} {value} closes a cycle ({' -> '.join(chain)}); remove it")
        return
    # Joined, not resolved: the includer's key already names its directory as open() finds it.
    included_key = os.path.join(os.path.dirname(key), value)
    _load(parser, included, included_shown, included_key, constraint or opt in ("-c", "--constraint"),
          (*stack, (real, included_shown)))


def pin_for_wheel(path: str) -> Pin:
    """A pin for exactly this wheel (the tool's own pip, added when the files do not pin pip)."""
    name, version, _, _ = parse_wheel_filename(os.path.basename(path))
    return Pin(name, version, frozenset(), None, frozenset(), f"{path}:0", tool=True)


def load(paths: list[str], read: Callable[[str], bytes] = read_file) -> RequirementFiles:
    """Read and parse requirements files (and their -r/-c includes).

    Each file is read once, with `read(path)` (`path` as given, or an include joined to its
    includer's directory); a caller that already has a file's bytes (a pipe, /dev/stdin)
    passes a `read` that returns them. `read` raises OSError for a file it cannot read.
    """
    parser = _Parser(read)
    for path in paths:
        _load(parser, path, path, fs.file_path(path), constraint=False, stack=((os.path.realpath(path), path),))
    if parser.problems:
        raise InputError(*parser.problems)
    return RequirementFiles(tuple(parser.pins), tuple(parser.files), parser.require_hashes, tuple(parser.locks))


def _merge(found: dict[NormalizedName, Pin], pin: Pin, problems: list[str], what: str) -> None:
    old = found.get(pin.name)
    if old is None:
        found[pin.name] = pin
    elif old.version != pin.version:
        problems.append(f"{pin.origin}: {pin.name}=={pin.version} conflicts with "
                        f"{pin.name}=={old.version} {what} at {old.origin}; keep one")
    else:
        found[pin.name] = dataclasses.replace(old, extras=old.extras | pin.extras, marker=None,
                                              hashes=old.hashes | pin.hashes, locked=old.locked or pin.locked)


Pins = dict[NormalizedName, Pin]


class UnusableMarker(ValueError):
    """A marker packaging parsed but cannot evaluate; the message says which and why (the
    fix depends on whose marker it is: a requirements file's or a wheel's).
    """


def marker_holds(marker: Marker, env: Mapping[str, str], locked: Locked | None = None) -> bool:
    """Whether `marker` is true in `env`; raises UnusableMarker where packaging cannot tell.
    A lock's marker (`locked`) is evaluated as PEP 751 says: no extras, the default groups.
    """
    try:
        if locked is not None:
            lock_env: dict[str, str | frozenset[str]] = {**env, "extras": frozenset(),
                                                         "dependency_groups": locked.groups}
            return marker.evaluate(lock_env, context="lock_file")
        return marker.evaluate(dict(env))
    except RecursionError:
        raise UnusableMarker("the marker is nested too deeply to evaluate") from None
    except MARKER_ERRORS as e:
        reason = str(e).splitlines()[0]
        raise UnusableMarker(f"cannot evaluate the marker {excerpt(str(marker))!r} ({reason})") from None


def applicable(reqs: RequirementFiles, env: Mapping[str, str]) -> tuple[Pins, Pins]:
    """(requirements, constraints) that apply to a target whose marker environment is `env`."""
    problems = [p for lock in reqs.locks for p in lock.problems(env)]
    wanted: dict[NormalizedName, Pin] = {}
    constraints: dict[NormalizedName, Pin] = {}
    for pin in reqs.pins:
        try:
            if pin.marker is not None and not marker_holds(pin.marker, env, pin.locked):
                continue
        except UnusableMarker as e:
            problems.append(f"{pin.origin}: {e}; {MARKER_FIX}")
            continue
        python = env.get("python_full_version", "")
        needs = pin.locked.requires_python if pin.locked is not None else None
        if needs is not None and not needs.contains(python, prereleases=True):
            problems.append(f"{pin.origin}: the lock says {pin} requires Python {needs}, but the target is "
                            f"Python {python}; lock for this Python, or build for another")
            continue
        _merge(constraints if pin.constraint else wanted, pin, problems,
               "(constraint)" if pin.constraint else "pinned")
    for name, pin in wanted.items():
        c = constraints.get(name)
        if c is not None and c.version != pin.version:
            problems.append(f"{pin.origin}: {pin} conflicts with constraint {c.name}=={c.version} "
                            f"at {c.origin}; keep one")
    if problems:
        raise InputError(*problems)
    return wanted, constraints
