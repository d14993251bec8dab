"""pip_packages/ -> the wheel for each pin, and the check that the pinned set is closed.

Only filenames are read to index a wheelhouse; METADATA is read for the selected wheels.
"""

from __future__ import annotations

import os
import shlex
import sys
import zipfile
import zlib
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from typing import Callable, Iterable, Mapping

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from cros_venv import digest
from cros_venv.errors import BuildError, InputError
from cros_venv.interpreter import Target
from cros_venv.pylock import is_lock_path
from cros_venv.reqlines import Pin, excerpt
from cros_venv.requirements import UnusableMarker, marker_holds
from cros_venv.sources import read_regular


@dataclass(frozen=True)
class Wheel:
    """A wheel file in a wheelhouse, known by its filename."""

    path: str
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]

    @property
    def filename(self) -> str:
        return os.path.basename(self.path)

    @property
    def is_pure(self) -> bool:
        return all(t.abi == "none" and t.platform == "any" for t in self.tags)


@dataclass(frozen=True)
class Wheelhouse:
    """The wheels of one directory, by project name."""

    directory: str
    wheels: Mapping[NormalizedName, tuple[Wheel, ...]]
    invalid: tuple[str, ...]  # files ending in .whl whose names are not valid wheel names
    not_files: tuple[str, ...] = ()  # entries named *.whl that are not regular files (directories, ...)

    @classmethod
    def scan(cls, directory: str) -> Wheelhouse:
        """Index the regular files (or links to them) named *.whl in `directory`."""
        by_name: dict[NormalizedName, list[Wheel]] = {}
        invalid: list[str] = []
        not_files: list[str] = []
        try:
            with os.scandir(directory) as it:
                entries = sorted((e.name, e.is_file()) for e in it if e.name.endswith(".whl"))
        except OSError as e:
            raise InputError(f"cannot read the wheel directory {directory}: {e.strerror}") from None
        for filename, is_file in entries:
            if not is_file:
                not_files.append(filename)
                continue
            try:
                name, version, _build, tags = parse_wheel_filename(filename)
            except InvalidWheelFilename:
                invalid.append(filename)
                continue
            by_name.setdefault(name, []).append(Wheel(os.path.join(directory, filename), name, version, tags))
        return cls(directory, {k: tuple(v) for k, v in by_name.items()}, tuple(invalid), tuple(not_files))

    def candidates(self, name: NormalizedName, version: Version) -> list[Wheel]:
        return [w for w in self.wheels.get(name, ()) if w.version == version]

    def for_pin(self, pin: Pin) -> list[Wheel]:
        """The wheels `pin` may use: of its name and version, and among those its lock names."""
        found = self.candidates(pin.name, pin.version)
        return found if pin.locked is None else [w for w in found if w.filename in pin.locked.filenames]


def best_wheel(candidates: list[Wheel], target: Target) -> Wheel | None:
    """The candidate whose best tag comes first in the target's tag order, if any fits."""
    rank = target.tag_rank
    scored = [(min((rank[t] for t in w.tags if t in rank), default=None), w) for w in candidates]
    fitting = [(r, w) for r, w in scored if r is not None]
    if not fitting:
        return None
    return min(fitting, key=lambda rw: (rw[0], rw[1].filename))[1]


def download_platforms(target: Target) -> list[str]:
    """Every platform tag a wheel for `target` may carry on an index, best first: one
    `--platform` each for pip, which does not expand PEP 600 tags itself (given only
    manylinux_2_28_x86_64 it would not take a manylinux_2_17_x86_64 wheel). A real
    interpreter's local tag (linux_x86_64: built here, never on an index) and "any" are left out.
    """
    platforms = dict.fromkeys(t.platform for t in target.tags)
    return [p for p in platforms if not p.startswith("linux_") and p != "any"] or [target.tags[0].platform]


def fix_command(name: str, version: Version, others: list[Wheel], target: Target) -> str:
    """The command that puts the missing wheel into pip_packages/."""
    if others and all(w.is_pure for w in others):
        return f"pip wheel --no-deps -w pip_packages {name}=={version}"
    best = next((t for t in target.tags if not t.platform.startswith("linux_")), target.tags[0])
    platforms = " ".join(f"--platform {p}" for p in download_platforms(target))
    return (
        f"pip download --only-binary=:all: --no-deps --python-version {target.python_version} "
        f"--implementation {best.interpreter[:2]} --abi {best.abi} "
        f"{platforms} -d pip_packages {name}=={version}"
    )


def missing_message(pin: Pin, house: Wheelhouse, target: Target) -> str:
    if pin.locked is not None:
        listed = sorted(pin.locked.filenames)
        shown = ", ".join(listed[:3]) + (f", ... {len(listed)} in all" if len(listed) > 3 else "")
        if not _lock_fits(pin, target):
            lock = os.path.basename(_file(pin.origin))
            return (f"{pin.origin}: the lock names no wheel of {pin.name}=={pin.version} that fits "
                    f"{target.describe()} ({shown}): it was not made for this interpreter; lock again with it "
                    f"among the targets (bin/vendor_wheels --lock REQUIREMENTS -o {lock} "
                    f"--python {target.python_version} ...), or use an interpreter it was made for")
        return (f"{pin.origin}: no wheel the lock names for {pin.name}=={pin.version} ({shown}) is in "
                f"{house.directory} and fits {target.describe()}; "
                f"fix: {vendor_command([_file(pin.origin)], house, target)}")
    present = sorted(w.filename for w in house.wheels.get(pin.name, ()))
    shown = ", ".join(present) if present else "none"
    tags = ", ".join(str(t) for t in target.tags[:3])
    return (
        f"{pin.origin}: no wheel for {pin.name}=={pin.version} in {house.directory} fits "
        f"{target.describe()} (its tags: {tags}, ... {len(target.tags)} in all; "
        f"wheels of {pin.name} present: {shown}); "
        f"fix: {fix_command(pin.name, pin.version, list(house.wheels.get(pin.name, ())), target)}"
    )


def _lock_fits(pin: Pin, target: Target) -> bool:
    """Whether the lock's entry of `pin` lists a wheel that fits `target`."""
    assert pin.locked is not None
    names = sorted(pin.locked.filenames)
    return best_wheel([Wheel(f, pin.name, pin.version, parse_wheel_filename(f)[3]) for f in names], target) is not None


def _text(path: str) -> str:
    """The text of the regular file `path`, or "" (a FIFO, a pipe's file, is not read again)."""
    data = read_regular(path)
    return data.decode("utf-8", "replace") if data is not None else ""


def _locked_here(path: str) -> bool:
    """Whether `path` was written by the lock step (its header): its closure is complete."""
    return "autogenerated by vendor_wheels --lock" in _text(path)[:200]


def _lock_output(path: str) -> str:
    """Where the lock step may write the lock of `path`: over it, unless it has -r/-c includes
    (the lock step refuses to write over those: `requirements.txt` -> `requirements.lock.txt`).
    """
    includes = any(line.lstrip().startswith(("-r", "-c", "--requirement", "--constraint"))
                   for line in _text(path).splitlines())
    if not includes:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}.lock{ext or '.txt'}"


def pick_version(name: NormalizedName, needs: list[Requirement], house: Wheelhouse, target: Target) -> Version | None:
    """The newest version of `name` in the wheelhouse with a wheel for `target` that satisfies
    every one of `needs` (a final release before a pre-release), or None.
    """
    versions = {w.version for w in house.wheels.get(name, ())}
    fitting = [v for v in versions if all(d.specifier.contains(v, prereleases=True) for d in needs)
               and best_wheel(house.candidates(name, v), target) is not None]
    return max(fitting, key=lambda v: (not v.is_prerelease, v), default=None)


def vendor_command(files: list[str], house: Wheelhouse, target: Target, lock: bool = False) -> str:
    """The bin/vendor_wheels (of the checkout whose wheelhouse this is) that adds every
    missing wheel of `files` for `target`; with `lock`, the lock step that keeps every pin of
    the file and adds the closure (`--lock FILE -o FILE`).
    """
    tool = os.path.join(os.path.dirname(house.directory), "bin", "vendor_wheels")
    try:
        relative = os.path.relpath(tool)  # bin/vendor_wheels in the checkout, ../infra_virtualenv/... beside it
        tool = relative if not relative.startswith(f"..{os.sep}..{os.sep}") else tool
    except (OSError, ValueError):  # no current directory
        pass
    args = [tool, "--lock", files[0], "-o", _lock_output(files[0])] if lock else [tool, *files]
    if not os.path.isabs(target.path):  # a declared target (check_requirements --python --platform)
        args += ["--python", target.python_version, "--platform", target.tags[0].platform]
    elif target.python_version != "{}.{}".format(*sys.version_info):  # vendor_wheels' default: the running one
        args += ["--python", target.python_version]
    return " ".join(shlex.quote(a) for a in args)


def _file(origin: str) -> str:
    return origin.rpartition(":")[0] or origin


@dataclass(frozen=True)
class Unresolved:
    """What stops a set of pins from resolving for one target: pins with no wheel,
    dependencies that are not pinned (each with the pins that need it), anything else.

    One problem is told in full; several of a kind get one summary line with the fix for
    all of them, then one short line each (the full lines are the error's `detail`, -v).
    """

    missing: tuple[Pin, ...]
    unpinned: Mapping[NormalizedName, tuple[tuple[Pin, Requirement], ...]]
    others: tuple[str, ...]

    def error(self, house: Wheelhouse, target: Target) -> InputError:
        brief: list[str] = []
        detail: list[str] = []
        unfit = [pin for pin in self.missing if pin.locked is not None and not _lock_fits(pin, target)]
        for group, summary in ((unfit, self._unfit_summary), ([p for p in self.missing if p not in unfit],
                                                               self._missing_summary)):
            full = [missing_message(pin, house, target) for pin in group]
            if len(group) > 1:
                line = summary(group, house, target)
                brief += [line, *(self._short_missing(pin, house) for pin in group)]
                detail += [line, *full]
            else:
                brief += full
                detail += full
        lines = self._unpinned_lines(house, target)
        brief += lines
        detail += lines
        return InputError(*brief, *self.others, detail=(*detail, *self.others))

    @staticmethod
    def _missing_summary(group: list[Pin], house: Wheelhouse, target: Target) -> str:
        files = list(dict.fromkeys(_file(p.origin) for p in group))
        also = ""
        if len(files) == 1 and not is_lock_path(files[0]) and not _locked_here(files[0]):
            also = (f"; or, if not every dependency is pinned yet, pin the closure too: "
                    f"{vendor_command(files, house, target, lock=True)}")
        return (f"{group[0].origin}: {len(group)} pins have no wheel in {house.directory} "
                f"for {target.describe()}; add them all: {vendor_command(files, house, target)}{also} "
                "(the pins below; -v: each one's tags and pip command)")

    @staticmethod
    def _unfit_summary(group: list[Pin], house: Wheelhouse, target: Target) -> str:
        lock = os.path.basename(_file(group[0].origin))
        return (f"{group[0].origin}: {len(group)} pins of the lock name no wheel that fits {target.describe()}: "
                f"it was not made for this interpreter; lock again with it among the targets (bin/vendor_wheels "
                f"--lock REQUIREMENTS -o {lock} --python {target.python_version} ...), or use an interpreter it "
                "was made for (the pins below)")

    @staticmethod
    def _short_missing(pin: Pin, house: Wheelhouse) -> str:
        others = len(house.wheels.get(pin.name, ()))
        present = f" ({others} other wheel{'s' if others != 1 else ''} of {pin.name} present)" if others else ""
        return f"{pin.origin}: no wheel for {pin.name}=={pin.version}{present}"

    def _unpinned_lines(self, house: Wheelhouse, target: Target) -> list[str]:
        chosen = {name: pick_version(name, [dep for _, dep in needs], house, target)
                  for name, needs in self.unpinned.items()}
        if len(self.unpinned) == 1:
            ((name, needs),) = self.unpinned.items()
            pinned = f"{name}=={chosen[name] or 'VERSION'}"
            return [f"{pin.origin}: {pin.name}=={pin.version} needs {dep}, which is not pinned; "
                    f"add {pinned} to the requirements" for pin, dep in needs]
        if not self.unpinned:
            return []
        first = next(iter(self.unpinned.values()))[0][0].origin
        fix = (f"keep every pin and add the closure with its wheels: "
               f"{vendor_command([_file(first)], house, target, lock=True)}")
        out = _lock_output(_file(first))
        if out != _file(first):  # its -r/-c includes would be lost if the lock were written over it
            fix += f", then use {out}"
        if is_lock_path(_file(first)):  # the lock step reads pip's format: a lock is made again from its input
            fix = "lock it again from the requirements it was made from"
        summary = (f"{first}: {_file(first)} is not closed: {len(self.unpinned)} dependencies of its pins are not "
                   f"pinned; {fix} (the dependencies below; by hand: add each line after its `FILE:LINE: `, "
                   f"versions from {house.directory}, VERSION: none fits)")
        lines = [summary]
        for name, needs in self.unpinned.items():
            why = ", ".join(f"{pin.name}=={pin.version}" + (f" ({dep.name}{dep.specifier})" if dep.specifier else "")
                            for pin, dep in needs)
            lines.append(f"{needs[0][0].origin}: {name}=={chosen[name] or 'VERSION'}  # needed by {why}")
        return lines


# What reading a damaged zip raises: besides BadZipFile, EOFError for a truncated member,
# zlib.error for a bad deflate stream, NotImplementedError for an unknown compression method,
# RuntimeError for an encrypted member, LargeZipFile, ValueError.
ZIP_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError,
              RuntimeError, ValueError)
MAX_METADATA_SIZE = 16 << 20  # the largest METADATA on PyPI is a few MiB (a long description)


def read_metadata(wheel: Wheel, unpacked: str | None = None) -> Message:
    """The METADATA headers of `wheel`, from its cache entry if there is one, else its zip."""
    try:
        if unpacked is not None:
            for entry in os.listdir(unpacked):
                if entry.endswith(".dist-info"):
                    with open(os.path.join(unpacked, entry, "METADATA"), "rb") as f:
                        return _headers(f.read())
        with zipfile.ZipFile(wheel.path) as zf:
            for member in zf.namelist():
                parts = member.split("/")
                if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                    return _headers(read_metadata_member(zf, member))
    except (*ZIP_ERRORS, UnicodeDecodeError, KeyError) as e:
        raise BuildError(f"cannot read the metadata of {wheel.path} ({e}); replace it with a good wheel") from None
    raise BuildError(f"{wheel.path} has no .dist-info/METADATA; replace it with a good wheel")


def read_metadata_member(zf: zipfile.ZipFile, member: str) -> bytes:
    """The bytes of METADATA `member`. One that would unpack to more than MAX_METADATA_SIZE
    (a zip bomb: 16 MiB of METADATA deflate to a few KiB) is a BadZipFile, not a MemoryError.
    """
    size = zf.getinfo(member).file_size
    if size > MAX_METADATA_SIZE:
        raise zipfile.BadZipFile(f"its {member} would be {size} bytes unpacked")
    return zf.read(member)


def _headers(data: bytes) -> Message:
    return parse_headers(data.decode("utf-8"))


def parse_headers(text: str) -> Message:
    """METADATA's header block. Only that is parsed: the body (the long description,
    often most of the file) is never needed, and the email parser walks it line by line.
    """
    end = min((i for i in (text.find("\n\n"), text.find("\r\n\r\n")) if i >= 0), default=len(text))
    return HeaderParser().parsestr(text[:end + 1])


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
