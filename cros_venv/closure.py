"""Pins -> the wheel for each, and the check that the pinned set is closed: every dependency
pinned (in the requirements or a constraints file) at a version that satisfies it, each
wheel what its METADATA says it is and for the target's Python; then the --hash check of
the chosen wheels.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from typing import Callable, Iterable, Mapping

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from cros_venv import digest
from cros_venv.errors import InputError
from cros_venv.interpreter import Target
from cros_venv.missing import Unresolved, pick_version
from cros_venv.reqlines import Pin, excerpt
from cros_venv.requirements import UnusableMarker, marker_holds
from cros_venv.wheels import Wheel, Wheelhouse, best_wheel


@dataclass(frozen=True)
class Resolved:
    """A package to install: the pin that chose it, the wheel, the extras asked of it."""

    pin: Pin
    wheel: Wheel
    extras: frozenset[str]
    direct: bool  # named in the requirements (not only a constraint or the toolchain)

    def __str__(self) -> str:
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.pin.name}{extras}=={self.wheel.version}"


def resolve(
    wanted: Mapping[NormalizedName, Pin],
    constraints: Mapping[NormalizedName, Pin],
    house: Wheelhouse,
    target: Target,
    metadata: Callable[[Wheel], Message],
) -> dict[NormalizedName, Resolved]:
    """Choose a wheel for every pin and check that the set is closed under its dependencies.

    A dependency must be pinned in the requirements (or a constraints file) at a version
    that satisfies it; nothing is chosen that the files do not pin.
    """
    problems: list[str] = []
    missing: list[Pin] = []  # pins with no fitting wheel
    unpinned: dict[NormalizedName, list[tuple[Pin, Requirement]]] = {}  # dependency -> who needs it
    suggested: dict[NormalizedName, Pin] = {}  # a version from the wheelhouse for each unpinned one
    chosen: dict[NormalizedName, Resolved] = {}
    extras: dict[NormalizedName, set[str]] = {n: set(p.extras) for n, p in wanted.items()}
    queue = list(wanted)
    done: dict[NormalizedName, frozenset[str]] = {}
    env = dict(target.environment)
    while queue:
        name = queue.pop(0)
        want = frozenset(extras[name])
        if done.get(name) == want:
            continue
        done[name] = want
        pin = wanted.get(name) or constraints.get(name) or suggested[name]
        # A suggested pin is followed only to find what it needs in turn (what pasting the
        # suggestions would show next); its other problems are the next run's.
        mine = problems if name not in suggested else []
        if name not in chosen:
            wheel = best_wheel(house.for_pin(pin), target)
            if wheel is None:
                missing.append(pin)
                continue
        else:
            wheel = chosen[name].wheel
        chosen[name] = Resolved(pin, wheel, want, name in wanted and not pin.tool)
        meta = metadata(wheel)
        lie = identity_problem(wheel, meta)
        if lie:
            mine.append(f"{pin.origin}: {wheel.filename} {lie}; replace it with a good wheel of "
                        f"{pin.name}=={pin.version}")
            continue
        mine += python_problems(pin, wheel, meta, target)
        for text in meta.get_all("Requires-Dist") or []:
            dep = _dependency(pin, wheel, text, want, env, mine)
            if dep is None:
                continue
            dep_name = canonicalize_name(dep.name)
            dep_pin = wanted.get(dep_name) or constraints.get(dep_name)
            if dep_pin is None:
                unpinned.setdefault(dep_name, []).append((pin, dep))
                if dep_name not in suggested:
                    version = pick_version(dep_name, [d for _, d in unpinned[dep_name]], house, target)
                    if version is None:
                        continue
                    suggested[dep_name] = Pin(dep_name, version, frozenset(), None, frozenset(), pin.origin,
                                              constraint=True)
            elif not dep.specifier.contains(dep_pin.version, prereleases=True):
                mine.append(f"{pin.origin}: {pin.name}=={pin.version} needs {dep}, but {dep_pin.origin} "
                            f"pins {dep_name}=={dep_pin.version}; pin a version that satisfies it")
                continue
            new_extras = {canonicalize_name(e) for e in dep.extras}
            if dep_name not in extras or not new_extras <= extras[dep_name]:
                extras.setdefault(dep_name, set()).update(new_extras)
                queue.append(dep_name)
    if problems or missing or unpinned:
        lines = Unresolved(tuple(missing), {n: tuple(u) for n, u in unpinned.items()}, tuple(problems))
        raise lines.error(house, target)
    return chosen


def identity_problem(wheel: Wheel, meta: Message) -> str | None:
    """What is wrong if METADATA's Name and Version are not the file name's, else None."""
    name, version = meta.get("Name"), meta.get("Version")
    try:
        same = canonicalize_name(name or "") == wheel.name and Version(version or "") == wheel.version
    except InvalidVersion:
        same = False
    return None if same else f"says it is {name} {version} in its METADATA, not {wheel.name} {wheel.version}"


def python_problems(pin: Pin, wheel: Wheel, meta: Message, target: Target) -> list[str]:
    """The wheel's Requires-Python, if it has a valid one that excludes the target."""
    requires_python = meta.get("Requires-Python")
    try:
        if not requires_python or SpecifierSet(requires_python).contains(target.python_full_version,
                                                                           prereleases=True):
            return []
    except InvalidSpecifier:
        return []
    return [f"{pin.origin}: {wheel.filename} requires Python {requires_python}, "
            f"but the target is Python {target.python_full_version}; pin another version"]


def _dependency(pin: Pin, wheel: Wheel, text: str, extras: frozenset[str], env: Mapping[str, str],
                problems: list[str]) -> Requirement | None:
    """The Requires-Dist `text` of `wheel` if it applies to the target with `extras`;
    None if not, or (with a problem naming the wheel) if packaging cannot read it.
    """
    try:
        dep = Requirement(text)
        if dep.marker is None or any(marker_holds(dep.marker, {**env, "extra": e}) for e in ("", *sorted(extras))):
            return dep
        return None
    except InvalidRequirement:
        problems.append(f"{pin.origin}: {wheel.filename} declares an invalid dependency {excerpt(text)!r}")
    except (RecursionError, UnusableMarker) as e:
        reason = "the marker is nested too deeply to parse" if isinstance(e, RecursionError) else str(e)
        problems.append(f"{pin.origin}: {wheel.filename} declares {excerpt(text)!r}, but {reason}; "
                        f"replace the wheel with a good build, or pin another version of {pin.name}")
    return None


def check_hashes(chosen: Iterable[Resolved], hashes: Mapping[str, str], require: bool) -> None:
    """Every wheel whose pin carries --hash must match one; in hash-checking mode all must have one.
    A pin from a pylock.toml must match the hashes its lock gives for that very file.

    `hashes` maps wheel paths to their sha256. Only sha256 can be checked without reading
    the wheel again; sha384/sha512 hashes are computed when present.
    """
    problems: list[str] = []
    chosen = list(chosen)
    hash_mode = require or any(r.pin.hashes for r in chosen)
    for r in chosen:
        if r.pin.tool:
            continue
        if not r.pin.hashes:
            if hash_mode:
                problems.append(f"{r.pin.origin}: {r.pin.name}=={r.pin.version} has no --hash, but other "
                                f"requirements do (hash-checking mode); add --hash=sha256:{hashes[r.wheel.path]}")
            continue
        expected = r.pin.hashes if r.pin.locked is None else r.pin.locked.hashes_of(r.wheel.filename)
        actual = {f"sha256:{hashes[r.wheel.path]}"}
        for algo in {h.split(':')[0] for h in expected} - {"sha256"}:
            with open(r.wheel.path, "rb") as f:
                actual.add(f"{algo}:{digest.hexdigest(algo, f.read())}")
        if r.pin.locked is not None and not actual >= expected:
            problems.append(f"{r.pin.origin}: {r.wheel.filename} does not match the hash the lock gives it for "
                            f"{r.pin.name}=={r.pin.version} (its sha256 is {hashes[r.wheel.path]}); "
                            "restore the wheel (bin/vendor_wheels with the lock), or lock again")
        elif not actual & expected:
            problems.append(f"{r.pin.origin}: {r.wheel.filename} does not match any --hash of "
                            f"{r.pin.name}=={r.pin.version} (its sha256 is {hashes[r.wheel.path]}); "
                            "fix the hash or restore the wheel")
    if problems:
        raise InputError(*problems)
