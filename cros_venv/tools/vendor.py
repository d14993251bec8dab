"""vendor_wheels: the one online step. Put the wheels requirements files pin into pip_packages/.

For each pin and declared target (Python version x platform) that has no fitting wheel in
pip_packages/ yet: `pip download --only-binary=:all:` for that target; a pure-Python wheel
fits every target, so one download serves all. Where a project has no wheel at all,
`pip wheel` builds one from its sdist (pure-Python projects only: a wheel built here for
this machine fits no declared target). Everything is downloaded into a staging directory
and moved into pip_packages/ only when every pin succeeded: every pin is tried, every
failure is told (one line each, with pip's reason: no such version, no wheel for the target
and an sdist that needs headers or a compiler, ...), and nothing is changed. Offline, the
first pin says so and the rest are not tried. pip runs from the tool's own pip wheel, with
the caller's pip configuration (index, proxy, certificates): this step uses the network.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Mapping, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from cros_venv import missing, pylock, reqlines, requirements, toolchain, wheels
from cros_venv.cache import Cache
from cros_venv.digest import file_sha256
from cros_venv.errors import BuildError
from cros_venv.interpreter import Target
from cros_venv.reqlines import Pin
from cros_venv.tools import outfile, pip_run, targets

PROG = "vendor_wheels"


@dataclass(frozen=True)
class Options:
    """Where pip looks: passed through to every pip command (a mirror, a local directory)."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    pre: bool = False  # the lock step's IN said --pre

    def pip_args(self) -> list[str]:
        out = ["--index-url", self.index_url] if self.index_url else []
        for f in self.find_links:
            out += ["--find-links", f]
        return out + (["--no-index"] if self.no_index else []) + (["--pre"] if self.pre else [])


def download_args(pin: Pin, target: Target, dest: str, options: Options, what: str | None = None) -> list[str]:
    """pip download of `pin` (or `what`: a wheel's URL) for `target`: every platform the
    target accepts, best first (pip does not expand manylinux_2_28 to the manylinux_2_17
    wheels an index has).
    """
    platforms = [arg for p in missing.download_platforms(target) for arg in ("--platform", p)]
    return ["download", "--only-binary=:all:", "--no-deps", "--python-version", target.python_version,
            "--implementation", "cp", "--abi", target.abi, *platforms, "-d", dest,
            *options.pip_args(), what or f"{pin.name}=={pin.version}"]


def fetch(pin: Pin, needed: list[Target], stage: str, cache: Cache, options: Options) -> None:
    """Download wheels of `pin` into `stage` until every target in `needed` has one; a
    BuildError saying why not (Offline when the index cannot be reached).
    """
    for target in needed:
        if wheels.best_wheel(wheels.Wheelhouse.scan(stage).candidates(pin.name, pin.version), target):
            continue  # a wheel fetched for an earlier target (a pure one) fits this one too
        got = pip_run.run_pip(cache, download_args(pin, target, stage, options))
        if got.returncode == 0:
            continue
        if got.offline:
            raise pip_run.offline(pin)
        # No wheel on the index for this target: a pure-Python project may have only an sdist.
        built = pip_run.run_pip(cache, ["wheel", "--no-deps", "-w", stage, *options.pip_args(),
                                        f"{pin.name}=={pin.version}"])
        if built.returncode != 0:
            if built.offline:
                raise pip_run.offline(pin)
            raise BuildError(f"{pin.origin}: {pin.name}=={pin.version}: {pip_run.why(pin, target, built.told)}")
        if not wheels.best_wheel(wheels.Wheelhouse.scan(stage).candidates(pin.name, pin.version), target):
            raise BuildError(f"{pin.origin}: {pin.name}=={pin.version}: no wheel for {target.path} on the index, "
                             "and the wheel built from its sdist fits only this machine; pin a version that has "
                             "wheels for it, or drop the target")


Hashes = Mapping[tuple[NormalizedName, Version], Sequence[str]]


def with_hashes(text: str, hashes: Hashes) -> str:
    """`text` (a requirements file) with `--hash=sha256:` for every wheel of each pinned
    line's (name, version), pip-compile style: the requirement (marker kept), then one hash a
    line; an inline comment moves above it. Other lines are kept as they are.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        start = i
        while lines[i].endswith("\\") and not lines[i].lstrip().startswith("#") and i + 1 < len(lines):
            i += 1
        i += 1
        logical = " ".join(line[:-1] if line.endswith("\\") else line for line in lines[start:i])
        comment = reqlines.COMMENT_RE.search(logical)
        code = logical[:comment.start()] if comment else logical
        req = _pinned_text(code)
        key = _key(req) if req else None
        digests = sorted(hashes.get(key, ())) if key else []
        if not digests:
            out += lines[start:i]
            continue
        if comment:
            out.append(comment.group())
        out.append(f"{req} \\")
        out += [f"    --hash=sha256:{d}" + (" \\" if k < len(digests) - 1 else "") for k, d in enumerate(digests)]
    return "".join(f"{line}\n" for line in out)


def _pinned_text(code: str) -> str | None:
    """The requirement of a requirement line (without its options), or None for other lines."""
    cut = re.search(r"(?:^|\s)-", code)
    req = " ".join((code[:cut.start()] if cut else code).split())
    return req or None


def _key(req: str) -> tuple[NormalizedName, Version] | None:
    """(name, version) of a `name==version` requirement, as packaging reads it."""
    try:
        parsed = Requirement(req)
        (spec,) = parsed.specifier
        return (canonicalize_name(parsed.name), Version(spec.version)) if spec.operator == "==" else None
    except (InvalidRequirement, InvalidVersion, RecursionError, ValueError):
        return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="to lock: vendor_wheels --lock IN -o OUT (its options: --lock IN --help)")
    p.add_argument("requirements", nargs="+", metavar="REQUIREMENTS",
                   help="requirements files (pip format, pinned), or locks (pylock.toml: the wheels it names)")
    targets.add_arguments(p)
    p.add_argument("--hashes", action="store_true", help="write --hash=sha256: for every wheel into the files")
    p.add_argument("--index-url", metavar="URL", help="passed to pip (a mirror)")
    p.add_argument("--find-links", action="append", default=[], metavar="DIR", help="passed to pip")
    p.add_argument("--no-index", action="store_true", help="passed to pip (with --find-links)")
    return p


def main(argv: Sequence[str], cache: Cache) -> int:
    if any(a == "--lock" or a.startswith("--lock=") for a in argv):
        from cros_venv.tools import lock

        return lock.main(argv, cache)
    args = parser().parse_args(argv)
    options = Options(args.index_url, tuple(args.find_links), args.no_index)
    target_list = targets.make(args.python, args.platform, cache.root)
    dest = toolchain.PIP_PACKAGES
    house = wheels.Wheelhouse.scan(dest)
    files = [requirements.load([path]) for path in args.requirements]

    # What each pin still needs: the targets its markers apply to with no fitting wheel yet.
    needs: dict[tuple[str, str], tuple[Pin, list[Target]]] = {}
    present: set[str] = set()
    changed: list[str] = []  # wheels present whose bytes are not those the lock or --hash names
    for reqs in files:
        for target in target_list:
            wanted, constraints = requirements.applicable(reqs, target.environment)
            for pin in [*wanted.values(), *constraints.values()]:
                pin_needs = needs.setdefault((pin.name, str(pin.version)), (pin, []))[1]
                have = wheels.best_wheel(house.for_pin(pin), target)
                if have is None:
                    pin_needs.append(target)
                elif have.filename not in present:
                    present.add(have.filename)
                    wrong = _mismatch(pin, have)
                    if wrong:
                        changed.append(wrong)

    with tempfile.TemporaryDirectory(prefix="vendor_wheels-") as stage:
        # Every pin is tried, so that one run tells every failure; Offline stops at once.
        failures = changed + [problem for pin, needed in needs.values() if needed
                              for problem in _try_fetch(pin, needed, stage, cache, options)]
        if len(failures) > 1:
            tried = sum(1 for _, needed in needs.values() if needed)
            raise BuildError(f"{len(failures)} of the {tried} pins that need wheels cannot be vendored (below, one a "
                             "line); nothing was changed: fix or drop them, then run again", *failures)
        if failures:
            raise BuildError(*failures)
        if args.hashes:  # the hashes come from pip_packages/: its wheels must be the index's where it has them
            from cros_venv.tools import lock_wheels

            lock_wheels.check_against_index(files, target_list, house, cache, options)
        added = sorted(f for f in os.listdir(stage) if f.endswith(".whl") and not os.path.exists(os.path.join(dest, f)))
        outfile.install([os.path.join(stage, f) for f in added], dest)  # all or none
    for f in added:
        print(f"added {f}")
    for f in sorted(present):
        print(f"already there {f}")

    if args.hashes:
        write_hashes(files, wheels.Wheelhouse.scan(dest))
    return 0


def _mismatch(pin: Pin, have: wheels.Wheel) -> str | None:
    """Why the wheel `have` in pip_packages/ is not the one `pin` names by hash (its lock
    entry's hashes, or the requirement's --hash), or None.
    """
    from cros_venv.tools import vendor_lock

    if pin.locked is not None:
        listed = next((w for w in pin.locked.wheels if w.filename == have.filename), None)
        wrong = vendor_lock.mismatch(have.path, listed) if listed is not None and listed.hashes else None
    elif pin.hashes and f"sha256:{file_sha256(have.path)}" not in pin.hashes:
        wrong = "its sha256 is none of the --hash values"
    else:
        return None
    if wrong is None:
        return None
    named = os.path.basename(pin.origin.rpartition(":")[0])
    return (f"{pin.origin}: {have.path} is not the wheel of {pin} that {named} names ({wrong}); "
            "remove it and run again to fetch the right one, or lock again")


def _try_fetch(pin: Pin, needed: list[Target], stage: str, cache: Cache, options: Options) -> tuple[str, ...]:
    """fetch (a lock's pin: vendor_lock.fetch); the problems that stop it, if any (Offline is raised)."""
    from cros_venv.tools import vendor_lock

    try:
        if pin.locked is not None:
            vendor_lock.fetch(pin, needed, stage, cache, options)
        else:
            fetch(pin, needed, stage, cache, options)
    except pip_run.Offline:
        raise
    except BuildError as e:
        return e.problems
    return ()


def write_hashes(files: list[requirements.RequirementFiles], house: wheels.Wheelhouse) -> None:
    """Rewrite every file read (includes too) from the bytes read, with the hashes of every
    wheel of each pinned (name, version).
    """
    pins = {(pin.name, pin.version) for reqs in files for pin in reqs.pins}
    hashes = {(name, version): sorted({file_sha256(w.path) for w in house.candidates(name, version)})
              for name, version in pins}
    pending: list[outfile.Replacement] = []
    try:  # every file written beside itself first (a full disk changes none), then each renamed into place
        for path, data in {p: d for reqs in files for p, d in reqs.files}.items():
            if not pylock.is_lock_path(path):  # a lock carries its hashes already
                pending.append(outfile.Replacement(path, with_hashes(data.decode("utf-8-sig"), hashes)))
        for replacement in pending:
            replacement.commit()
    except BaseException:
        for replacement in pending:
            replacement.discard()
        raise
    for replacement in pending:
        print(f"wrote hashes into {replacement.path}")
