"""pylock.toml (PEP 751) -> pins: each `[[packages]]` entry is a pin whose wheels and hashes
the lock names.

A lock is the whole closure, written by a tool (pip lock, uv, pdm) for one environment or
many: every entry whose marker holds for the target is installed, from the wheel the entry
lists that is in pip_packages/ and fits best, checked against the entry's hash for that file
(as a requirements file with --hash on every line: requirements.py sets hash-checking mode).
Only wheels: an entry with only an sdist, or a vcs, directory or archive source, is refused.

The structure is validated by packaging.pylock; what create_venv adds (a version on every
entry, wheels only, a hash it can check) is checked here, every problem as `file:line:`,
the line of the entry's `[[packages]]` header. TOML is read with tomllib (3.11+) or the
tomli wheel the tool puts on sys.path (toolchain.TOMLI); never on the no-op path, which
hashes the lock's bytes as it does any requirements file's.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping

from packaging.markers import Marker
from packaging.specifiers import SpecifierSet

from cros_venv.reqlines import HASH_ALGORITHMS, Locked, LockedWheel, Pin, excerpt

LOCK_VERSION = "1.0"
_NAME_RE = re.compile(r"pylock\.[^.]+\.toml")
_PACKAGES_RE = re.compile(r"^[ \t]*\[\[[ \t]*packages[ \t]*\]\]", re.MULTILINE)
_CONTEXT_RE = re.compile(r"packages\[(\d+)\]")
_RELOCK = "lock again with a tool that writes PEP 751 locks (pip lock, uv export --format pylock.toml)"


def is_lock_path(path: str) -> bool:
    """Whether `path` names a lock by PEP 751's rule: `pylock.toml` or `pylock.NAME.toml`."""
    name = os.path.basename(path)
    return name == "pylock.toml" or _NAME_RE.fullmatch(name) is not None


@dataclass(frozen=True)
class LockFile:
    """What a lock says about the environments it is for (the packages are pins)."""

    origin: str  # "pylock.toml:1"
    requires_python: SpecifierSet | None
    environments: tuple[Marker, ...]
    lines: tuple[int, int] = (0, 0)  # of `requires-python` and `environments`, where the lock sets them

    def problems(self, env: Mapping[str, str]) -> list[str]:
        """Why the lock does not apply to the target whose marker environment is `env`."""
        found: list[str] = []
        python = env.get("python_full_version", "")
        if self.requires_python is not None and not self.requires_python.contains(python, prereleases=True):
            found.append(f"{self._at(0)}: the lock requires Python {self.requires_python}, but the target is "
                         f"Python {python}; lock for this Python, or build for another")
        if self.environments and not any(_holds(m, env) for m in self.environments):
            shown = " or ".join(repr(excerpt(str(m))) for m in self.environments)
            found.append(f"{self._at(1)}: the lock is only for environments {shown}, and the target is none of "
                         "them; lock for this target too")
        return found

    def _at(self, which: int) -> str:
        return f"{self.origin.rpartition(':')[0]}:{self.lines[which]}" if self.lines[which] else self.origin


def _holds(marker: Marker, env: Mapping[str, str]) -> bool:
    try:
        return marker.evaluate(dict(env), context="requirement")
    except Exception:  # a marker packaging cannot evaluate here: then the lock is not for it
        return False


def toml() -> ModuleType:
    """tomllib, or on Python < 3.11 the tomli wheel from pip_packages/ (unpacked when first needed)."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    from cros_venv import toolchain

    return toolchain.import_tomli()


def _line(text: str, key: str) -> int:
    """The line where `key = ` is first set at the start of a line (0 if nowhere)."""
    found = re.search(rf"^[ \t]*{re.escape(key)}[ \t]*=", text, re.MULTILINE)
    return text.count("\n", 0, found.start()) + 1 if found else 0


def _package_lines(text: str, count: int) -> list[int]:
    """The line of each `[[packages]]` header, in order (0 each if the lock is written otherwise)."""
    lines = [text.count("\n", 0, m.start()) + 1 for m in _PACKAGES_RE.finditer(text)]
    return lines if len(lines) == count else [0] * count


def parse(text: str, path: str, shown: str, constraint: bool, problems: list[str]) -> tuple[list[Pin], LockFile | None]:
    """The pins of the lock at `path` (`shown` in messages), and what it says of its
    environments; or nothing, with every problem appended to `problems`.
    """
    try:
        data: dict[str, Any] = toml().loads(text)
    except ValueError as e:  # TOMLDecodeError: "Expected '=' after a key ... (at line 3, column 5)"
        line = re.search(r"line (\d+)", str(e))
        problems.append(f"{shown}:{line.group(1) if line else 0}: not valid TOML ({str(e).splitlines()[0]}); "
                        f"fix it, or {_RELOCK}")
        return [], None
    version = data.get("lock-version")
    if version != LOCK_VERSION:
        said = f"lock-version is {excerpt(str(version))!r}" if "lock-version" in data else "no lock-version"
        problems.append(f"{shown}:{_line(text, 'lock-version')}: {said}, not \"{LOCK_VERSION}\": create_venv reads "
                        f"PEP 751 locks of version {LOCK_VERSION}; {_RELOCK}")
        return [], None
    from packaging.pylock import Pylock, PylockValidationError

    raw = data.get("packages")
    lines = _package_lines(text, len(raw) if isinstance(raw, list) else 0)
    try:
        lock = Pylock.from_dict(data)
    except PylockValidationError as e:
        index = _CONTEXT_RE.match(e.context or "")
        at, name = 0, ""
        if index and isinstance(raw, list) and int(index.group(1)) < len(raw):
            at = lines[int(index.group(1))]
            entry = raw[int(index.group(1))]
            name = f"{excerpt(str(entry.get('name')))}: " if isinstance(entry, dict) and "name" in entry else ""
        problems.append(f"{shown}:{at}: {name}not a valid PEP 751 lock ({e}); {_RELOCK}")
        return [], None
    groups = frozenset(lock.default_groups or ())
    pins: list[Pin] = []
    directory = os.path.dirname(path)
    for package, number in zip(lock.packages, lines):
        where = f"{shown}:{number}"
        pin = _pin(package, where, directory, constraint, groups, problems)
        if pin is not None:
            pins.append(pin)
    environments = tuple(lock.environments or ())
    return pins, LockFile(f"{shown}:{_line(text, 'lock-version')}", lock.requires_python, environments,
                          (_line(text, "requires-python"), _line(text, "environments")))


def _pin(package: Any, where: str, directory: str, constraint: bool, groups: frozenset[str],
         problems: list[str]) -> Pin | None:
    """The pin of one validated packaging.pylock.Package, or None with its problems appended."""
    name = package.name
    if package.version is None:
        problems.append(f"{where}: {name} has no version; create_venv installs pinned wheels only: {_RELOCK}")
        return None
    if not package.wheels:
        kind = next(k for k in ("vcs", "directory", "archive", "sdist") if getattr(package, k) is not None)
        article = "an" if kind in ("archive", "sdist") else "a"
        problems.append(f"{where}: {name}=={package.version} has only {article} {kind} "
                        "source and no wheel; create_venv installs wheels from pip_packages/ only: build its "
                        f"wheel (pip wheel --no-deps -w pip_packages {name}=={package.version}) and lock again")
        return None
    wheels: list[LockedWheel] = []
    for wheel in package.wheels:
        hashes = frozenset(f"{algo}:{str(digest).lower()}" for algo, digest in wheel.hashes.items()
                           if algo in HASH_ALGORITHMS)
        if not hashes:
            problems.append(f"{where}: {name}=={package.version}: the lock gives {wheel.filename} no sha256, sha384 "
                            f"or sha512 hash (only {', '.join(sorted(wheel.hashes))}); {_RELOCK}")
            return None
        local = os.path.join(directory, wheel.path) if wheel.path else None
        wheels.append(LockedWheel(wheel.filename, hashes, wheel.url, local))
    locked = Locked(tuple(wheels), groups, package.requires_python)
    return Pin(name, package.version, frozenset(), package.marker, frozenset().union(*(w.hashes for w in wheels)),
               where, constraint, locked=locked)
