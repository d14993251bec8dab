"""check_requirements: will these requirements files build offline from pip_packages/?

For each file, under create_venv's rules and for every declared target (Python version x
platform): it parses; every pin has a fitting wheel; the pinned set is closed; every
`--hash` matches. For the wheelhouse: no Git LFS pointers, no truncated or corrupt zips,
no invalid wheel names, no two wheels competing for the same name, version and tag; and
wheels no given file uses are reported (an error with --strict). One `file:line: message`
per problem (line 0 for whole-file and wheel problems), with a fix where there is one.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import stat
import sys
import zipfile
from dataclasses import dataclass
from email.message import Message
from typing import Sequence

from packaging.version import Version

from cros_venv import closure, interpreter, requirements, toolchain, wheels
from cros_venv.cache import Cache, atomic_write
from cros_venv.errors import BuildError, InputError
from cros_venv.tools import targets

PROG = "check_requirements"
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


@dataclass(frozen=True)
class Problem:
    """One line of output."""

    where: str  # "file:line"
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {'warning: ' if self.warning else ''}{self.message}"

    @classmethod
    def parse(cls, text: str, label: str = "") -> Problem:
        """From an InputError problem ("file:line: message"), optionally naming the target."""
        where, _, message = text.partition(": ")
        return cls(where, f"[{label}] {message}" if label else message)


def refetch_command(wheel: wheels.Wheel) -> str:
    """The command that downloads this exact wheel again."""
    if wheel.is_pure:
        return f"pip wheel --no-deps -w pip_packages {wheel.name}=={wheel.version}"
    tag = sorted(wheel.tags, key=str)[0]
    version = tag.interpreter[2:]
    python = f"{version[0]}.{version[1:]}" if version[1:] else version
    return (f"pip download --only-binary=:all: --no-deps --python-version {python} --implementation "
            f"{tag.interpreter[:2]} --abi {tag.abi} --platform {tag.platform} -d pip_packages "
            f"{wheel.name}=={wheel.version}")


def verify(wheel: wheels.Wheel, crc: bool) -> str | None:
    """What is wrong with the wheel file, or None.

    Always: not an LFS pointer, a readable zip directory, one dist-info with METADATA, WHEEL
    and RECORD, METADATA naming the same project and version as the file name. With `crc`,
    every member is read and its CRC checked too (git already checks the bytes it stores,
    so this is for --strict).
    """
    try:
        with open(wheel.path, "rb") as f:
            head = f.read(len(LFS_POINTER))
        if head == LFS_POINTER:
            return "is a Git LFS pointer, not a wheel; fetch it with `git lfs pull` (or commit the wheel itself)"
        with zipfile.ZipFile(wheel.path) as zf:
            names = zf.namelist()
            infos = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info") and "/" in n}
            if len(infos) != 1:
                return f"has {len(infos)} .dist-info directories, not 1; replace it: {refetch_command(wheel)}"
            dist_info = infos.pop()
            missing = [f for f in ("METADATA", "WHEEL", "RECORD") if f"{dist_info}/{f}" not in names]
            if missing:
                return f"has no {dist_info}/{missing[0]}; replace it: {refetch_command(wheel)}"
            bad = zf.testzip() if crc else None
            if bad is not None:
                return f"is corrupt ({bad} fails its CRC check); replace it: {refetch_command(wheel)}"
            data = wheels.read_metadata_member(zf, f"{dist_info}/METADATA")
    except wheels.ZIP_ERRORS as e:
        return f"is not a valid zip, truncated or corrupt ({e}); replace it: {refetch_command(wheel)}"
    lie = closure.identity_problem(wheel, wheels.parse_headers(data.decode("utf-8", "replace")))
    return f"{lie}; replace it: {refetch_command(wheel)}" if lie else None


VERIFIED_FORMAT = 2


@dataclass(frozen=True)
class Stamp:
    """What git's index keys a file by. A change of the bytes changes one of them, even when
    size and mtime are kept (`os.utime` after an in-place edit moves the ctime).
    """

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def as_list(self) -> list[int]:
        return [self.inode, self.size, self.mtime_ns, self.ctime_ns]


class Verified:
    """Wheels already verified, by Stamp and depth (1: every CRC checked): a presubmit run
    only stats them. Kept in the cache as {"format": 2, "wheels": {filename: [inode, size,
    mtime_ns, ctime_ns, depth]}}; a file that is unreadable or of another shape is ignored
    (and rewritten by save).
    """

    def __init__(self, cache: Cache, directory: str) -> None:
        self.path = os.path.join(cache.root, "stat", "verified-" + os.path.basename(cache.stat_index.path(directory)))
        self.known = self._load(self.path)
        self.changed = False

    @staticmethod
    def _load(path: str) -> dict[str, list[int]]:
        try:
            with open(path, "rb") as f:
                data = json.load(f)
        except (OSError, ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deeply
            return {}
        if not isinstance(data, dict) or data.get("format") != VERIFIED_FORMAT:
            return {}
        entries = data.get("wheels")
        if not isinstance(entries, dict):
            return {}
        return {name: entry for name, entry in entries.items()
                if isinstance(entry, list) and len(entry) == 5 and all(type(x) is int for x in entry)}

    def check(self, wheel: wheels.Wheel, crc: bool) -> str | None:
        try:
            stamp = Stamp.of(os.stat(wheel.path)).as_list()  # before reading: what the verdict is of
        except OSError:
            return verify(wheel, crc)  # gone since the scan: verify says so
        known = self.known.get(wheel.filename)
        if known is not None and known[:4] == stamp and known[4] >= int(crc):
            return None
        problem = verify(wheel, crc)
        if problem is None:
            self.known[wheel.filename] = [*stamp, int(crc)]
            self.changed = True
        return problem

    def save(self) -> None:
        if self.changed:
            data = {"format": VERIFIED_FORMAT, "wheels": self.known}
            with contextlib.suppress(OSError):
                atomic_write(self.path, json.dumps(data).encode(), durable=False)


def not_a_file(path: str) -> str:
    """What the entry at `path`, named like a wheel, is instead of a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "is a broken symbolic link, not a wheel file; remove it, or link it to the wheel file"
    kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
    return f"is {kind}, not a wheel file; remove it, or put the wheel file there"


def wheelhouse_problems(house: wheels.Wheelhouse, verified: Verified, crc: bool) -> tuple[list[Problem], set[str]]:
    """Problems with the files in the wheelhouse; and the paths of the broken wheels."""
    problems = [Problem(f"{os.path.join(house.directory, f)}:0",
                        "is not a valid wheel file name (NAME-VERSION[-BUILD]-PYTHON-ABI-PLATFORM.whl); "
                        "rebuild it with `pip wheel` or remove it") for f in house.invalid]
    problems += [Problem(f"{path}:0", not_a_file(path))
                 for path in (os.path.join(house.directory, f) for f in house.not_files)]
    broken: set[str] = set()
    claimed: dict[tuple[str, Version, str], wheels.Wheel] = {}
    for name in sorted(house.wheels):
        for wheel in sorted(house.wheels[name], key=lambda w: w.filename):
            problem = verified.check(wheel, crc)
            if problem:
                problems.append(Problem(f"{wheel.path}:0", problem))
                broken.add(wheel.path)
            for tag in sorted(wheel.tags, key=str):
                other = claimed.setdefault((name, wheel.version, str(tag)), wheel)
                if other is not wheel:
                    problems.append(Problem(f"{wheel.path}:0", f"competes with {other.filename} for {name}=="
                                            f"{wheel.version} on tag {tag}; keep one of them"))
                    break
    return problems, broken


@dataclass
class Findings:
    """What checking the requirements files found."""

    problems: list[Problem]
    used: set[str]  # the wheels the files use, on the targets where they resolved
    unresolved: list[str]  # the files that did not resolve for every target


def requirement_problems(paths: Sequence[str], target_list: Sequence[interpreter.Target],
                         house: wheels.Wheelhouse, cache: Cache, broken: set[str], verbose: bool = False) -> Findings:
    """Problems with each requirements file for each target; and the wheels they use."""
    problems: list[Problem] = []
    used: set[str] = set()
    unresolved: list[str] = []
    seen: set[str] = set()

    @functools.cache
    def metadata(wheel: wheels.Wheel) -> Message:
        if wheel.path not in broken:
            with contextlib.suppress(BuildError):
                return wheels.read_metadata(wheel)
        # Already reported: a stand-in with the file name's identity and no dependencies,
        # so that neither the lie nor its dependencies are reported again.
        stand_in = Message()
        stand_in["Name"], stand_in["Version"] = wheel.name, str(wheel.version)
        return stand_in

    def add(problem: Problem) -> None:
        if str(problem) not in seen:
            seen.add(str(problem))
            problems.append(problem)

    for path in paths:
        try:
            reqs = requirements.load([path])
        except InputError as e:
            for text in e.problems:
                add(Problem.parse(text))
            unresolved.append(path)
            continue
        for target in target_list:
            label = target.path if len(target_list) > 1 else ""
            try:
                wanted, constraints = requirements.applicable(reqs, target.environment)
                chosen = closure.resolve(wanted, constraints, house, target, metadata)
                used.update(r.wheel.path for r in chosen.values())
                hash_checked = reqs.require_hashes or any(p.hashes for p in reqs.pins)
                hashes = cache.stat_index.hashes([r.wheel.path for r in chosen.values()], trust_index=not hash_checked)
                closure.check_hashes(chosen.values(), hashes, reqs.require_hashes)
            except InputError as e:
                for text in e.detail if verbose else e.problems:
                    add(Problem.parse(text, label))
                if path not in unresolved:
                    unresolved.append(path)
    return Findings(problems, used, unresolved)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 no problems (warnings allowed), 1 problems found, 2 bad arguments",
    )
    p.add_argument("requirements", nargs="+", metavar="REQUIREMENTS",
                   help="requirements files (pip format), or locks (pylock.toml, pylock.NAME.toml: PEP 751)")
    targets.add_arguments(p)
    p.add_argument("--strict", action="store_true",
                   help="wheels no given file uses are errors, not warnings; check every member's CRC too")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="where several pins lack wheels, each one's tags and pip command too")
    return p


def main(argv: Sequence[str], cache: Cache) -> int:
    args = parser().parse_args(argv)
    target_list = targets.make(args.python, args.platform, cache.root)
    house = wheels.Wheelhouse.scan(toolchain.PIP_PACKAGES)
    verified = Verified(cache, house.directory)
    problems, broken = wheelhouse_problems(house, verified, crc=args.strict)
    verified.save()
    found = requirement_problems(args.requirements, target_list, house, cache, broken, args.verbose)
    problems = found.problems + problems
    own = {os.path.join(house.directory, f)
           for f in (*toolchain.LIBRARIES, *toolchain.VIRTUALENV, toolchain.PIP, toolchain.TOMLI)}
    unused = [wheel for name in sorted(house.wheels) for wheel in house.wheels[name]
              if wheel.path not in found.used and wheel.path not in own and wheel.path not in broken]
    if found.unresolved and unused:
        # A file that did not resolve uses wheels nobody can name yet: "unused" would be a guess.
        problems.append(Problem(f"{house.directory}:0", f"which wheels are unused is not reported: "
                                f"{', '.join(found.unresolved)} did not resolve (above); fix that and run again",
                                warning=True))
    elif unused:
        problems += [Problem(f"{wheel.path}:0", "no given requirements file uses this wheel for any "
                             "target; remove it, or pass the files and targets that use it",
                             warning=not args.strict) for wheel in unused]
    for problem in problems:
        print(problem)
    errors = sum(not p.warning for p in problems)
    if errors:
        print(f"{PROG}: {errors} problem{'s' if errors != 1 else ''} "
              f"({len(target_list)} target{'s' if len(target_list) != 1 else ''})", file=sys.stderr)
    return 1 if errors else 0
