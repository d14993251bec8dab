"""vendor_wheels --lock IN -o OUT: loose requirements -> pins for every target, and their wheels.

For each declared target (Python version x platform), pip's resolver (`pip install --dry-run
--report`, the tool's own pip, with the caller's pip configuration) resolves IN's closure
with wheels only; the pins OUT already has are constraints, so a re-run moves nothing
(`--upgrade` frees them all, `--upgrade-package NAME` that one). The per-target results are
merged into one file, pip-compile style (lockfile.py), or PEP 751's if OUT is pylock.toml or
pylock.NAME.toml (pylock_out.py); every wheel the pins need is vendored as vendor_wheels does
(staged: nothing changes on failure); the result is checked as check_requirements checks it,
for every target, before OUT and pip_packages/ change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from cros_venv import procs, pylock, reqlines, requirements, toolchain, wheels
from cros_venv.cache import Cache
from cros_venv.digest import file_sha256
from cros_venv.errors import BuildError, InputError
from cros_venv.interpreter import Target
from cros_venv.reqlines import Pin
from cros_venv.tools import check, lockfile, pylock_out, targets, vendor

# pip, with the marker environment of the target rather than of the interpreter running it:
# pip evaluates markers (`; python_version < "3.11"`, in IN and in every wheel's Requires-Dist)
# for the running interpreter even with --python-version (pypa/pip#11664).
RUNNER = ("import json, os, runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
          "from pip._vendor.packaging import markers; env = json.loads(os.environ.pop('CROS_VENV_MARKER_ENV')); "
          "default = markers.default_environment; markers.default_environment = lambda: {**default(), **env}; "
          "runpy.run_module('pip', run_name='__main__')")
UNSATISFIABLE_RE = re.compile(r"satisfies the requirement (.+?) \(from versions: ([^)]*)\)")


@dataclass(frozen=True)
class Loose:
    """One requirement of a pip-format file, pinned or not."""

    req: Requirement
    origin: str  # file:line
    constraint: bool

    @property
    def name(self) -> NormalizedName:
        return canonicalize_name(self.req.name)

    @property
    def pinned(self) -> Version | None:
        specs = list(self.req.specifier)
        try:
            return Version(specs[0].version) if len(specs) == 1 and specs[0].operator == "==" else None
        except InvalidVersion:
            return None


def read_loose(path: str, constraint: bool = False, problems: list[str] | None = None) -> list[Loose]:
    """Every requirement of `path` and its -r/-c includes; options (--hash, ...) dropped."""
    found: list[Loose] = []
    own = problems is None
    problems = [] if problems is None else problems
    try:
        text = requirements.read_file(path).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}:0: cannot read requirements file: {getattr(e, 'strerror', None) or e}") from None
    for number, line in reqlines.logical_lines(text):
        where = f"{path}:{number}"
        if line.startswith("-"):
            tokens = reqlines.split_options(line, where, problems) or ["-"]
            opt, value, _ = reqlines.split_option(tokens)
            if opt in ("-r", "--requirement", "-c", "--constraint") and value:
                found += read_loose(os.path.join(os.path.dirname(path), value),
                                    constraint or opt in ("-c", "--constraint"), problems)
            continue
        cut = re.search(r"(?:^|\s)-", line)
        try:
            req = Requirement(" ".join((line[:cut.start()] if cut else line).split()))
        except InvalidRequirement as e:
            problems.append(f"{where}: invalid requirement: {str(e).splitlines()[0]}")
            continue
        if req.url:
            problems.append(f"{where}: URLs are not supported ({req.name} @ {req.url}); name a project on the index")
            continue
        found.append(Loose(req, where, constraint))
    if own and problems:
        raise InputError(*problems)
    return found


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{vendor.PROG} --lock", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lock", required=True, metavar="IN", help="loose requirements (pip format)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the lock file to write (may be IN)")
    targets.add_arguments(p)
    p.add_argument("--hashes", action="store_true", help="write --hash=sha256: for every wheel of each pin")
    up = p.add_mutually_exclusive_group()
    up.add_argument("--upgrade", action="store_true", help="free every pin OUT has")
    up.add_argument("--upgrade-package", action="append", default=[], metavar="NAME", help="free this pin (repeatable)")
    p.add_argument("--index-url", metavar="URL", help="passed to pip (a mirror)")
    p.add_argument("--find-links", action="append", default=[], metavar="DIR", help="passed to pip")
    p.add_argument("--no-index", action="store_true", help="passed to pip (with --find-links)")
    return p


def command(args: argparse.Namespace) -> str:
    """The command for the header: what decides the pins (not the index, nor --upgrade)."""
    words = ["bin/vendor_wheels", "--lock", args.lock, "-o", args.output]
    words += [w for v in args.python for w in ("--python", v)] + [w for v in args.platform for w in ("--platform", v)]
    return shlex.join(words + (["--hashes"] if args.hashes else []))


def main(argv: Sequence[str], cache: Cache) -> int:
    args = parser().parse_args(argv)
    options = vendor.Options(args.index_url, tuple(args.find_links), args.no_index)
    target_list = targets.make(args.python, args.platform, cache.root)
    if pylock.is_lock_path(args.lock):
        raise InputError(f"{args.lock}: --lock reads loose requirements in pip's format, not a lock; "
                         "give the requirements the lock was made from")
    loose = read_loose(args.lock)
    same = os.path.exists(args.output) and os.path.samefile(args.lock, args.output)
    free = {canonicalize_name(n) for n in args.upgrade_package}
    if same:  # onboarding: IN's own pins are kept, except those --upgrade frees
        loose = [Loose(Requirement(_unpinned(x.req)), x.origin, x.constraint)
                 if x.pinned and (args.upgrade or x.name in free) else x for x in loose]
    kept = [] if args.upgrade or not os.path.exists(args.output) else [
        x for x in read_output(args.output) if x.pinned and x.name not in free and not x.constraint]
    top: dict[NormalizedName, frozenset[str]] = {}
    for x in loose:
        if x.req.marker and not x.constraint:
            top[x.name] = top.get(x.name, frozenset()) | {str(x.req.marker)}

    with tempfile.TemporaryDirectory(prefix="vendor_wheels-lock-") as work:
        flat = os.path.join(work, "in.txt")
        with open(flat, "w", encoding="utf-8") as f:  # without hashes: pip would want every pin hashed
            f.write(f"-c {os.path.join(work, 'in-c.txt')}\n")
            f.writelines(f"{x.req}\n" for x in loose if not x.constraint)
        with open(os.path.join(work, "in-c.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{_unextra(x.req)}\n" for x in loose if x.constraint)
        reports = [resolve(t, i, flat, loose, kept, work, cache, options) for i, t in enumerate(target_list)]
        lines = lockfile.merge(target_list, [lockfile.from_report(r, t.environment, top, f"-r {args.lock}")
                                             for r, t in zip(reports, target_list)])
        added, house = vendor_lines(lines, target_list, args.output, work, cache, options)
        if pylock.is_lock_path(args.output):  # PEP 751: always with every wheel's hash
            text = pylock_out.text(lines, command(args), target_list, house, args.output, reports)
        else:
            hashes = {(ln.name, ln.version): sorted({file_sha256(w.path) for w in house.candidates(
                ln.name, ln.version)}) for ln in lines} if args.hashes else None
            text = lockfile.render(lines, command(args), hashes)
        checked = os.path.join(work, "check", os.path.basename(args.output))
        os.mkdir(os.path.dirname(checked))
        with open(checked, "w", encoding="utf-8") as f:
            f.write(text)
        found = check.requirement_problems([checked], target_list, house, cache, set())
        if found.problems:
            raise BuildError(f"the lock of {args.lock} does not pass check_requirements (below); nothing was changed",
                             *(str(p).replace(checked, args.output) for p in found.problems))
        for w in added:
            shutil.move(w.path, os.path.join(toolchain.PIP_PACKAGES, w.filename))
    with open(args.output, "w", encoding="utf-8") as f:  # in place: a symlink stays one, the mode is kept
        f.write(text)
    for w in added:
        print(f"added {w.filename}")
    print(f"{args.output}: {len(lines)} pins for {len(target_list)} target{'s' if len(target_list) != 1 else ''}, "
          f"{len(added)} wheel{'s' if len(added) != 1 else ''} added to pip_packages/; checked for every target")
    return 0


def read_output(path: str) -> list[Loose]:
    """The pins OUT already has: a requirements file's, or a pylock.toml's entries."""
    if pylock.is_lock_path(path):
        return [Loose(req, origin, False) for req, origin in pylock_out.read_pins(path)]
    return read_loose(path)


def _unpinned(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}" + (f" ; {req.marker}" if req.marker else "")


def _unextra(req: Requirement) -> str:
    """A constraint as pip takes one: no extras."""
    return f"{req.name}{req.specifier}" + (f" ; {req.marker}" if req.marker else "")


def resolve(target: Target, index: int, flat: str, loose: list[Loose], kept: list[Loose], work: str, cache: Cache,
            options: vendor.Options) -> dict[str, Any]:
    """pip's installation report of IN's closure for `target`, OUT's pins held where they
    still fit IN (all freed, with a note, if pip finds no resolution with them).
    """
    env = dict(target.environment)
    direct = {x.name: x.req.specifier for x in loose if not x.constraint}
    held = [x for x in kept if (x.req.marker is None or requirements.marker_holds(x.req.marker, env))
            and (x.pinned is None or direct.get(x.name) is None or direct[x.name].contains(x.pinned, prereleases=True))]
    report = os.path.join(work, f"report-{index}.json")
    for attempt in (held, []) if held else ([],):
        constraints = os.path.join(work, f"kept-{index}.txt")
        with open(constraints, "w", encoding="utf-8") as f:
            f.writelines(f"{x.name}=={x.pinned}\n" for x in attempt)
        got = run_pip(cache, env, ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", report,
                                   "--only-binary=:all:", "--target", os.path.join(work, "scratch"),
                                   *target_args(target), *options.pip_args(), "-r", flat, "-c", constraints])
        if got.returncode == 0:
            if attempt is not held and held:
                print(f"{vendor.PROG}: note: the pins kept from the output file conflict with the requirements "
                      f"for {target.path}; resolved afresh there", file=sys.stderr)
            with open(report, encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
            return data
        if got.offline:
            raise BuildError(f"cannot reach the package index while locking for {target.path} (offline?); "
                             "nothing was changed: run again with network access")
    raise BuildError(_unsatisfiable(got.told, loose, target))


def _unsatisfiable(told: str, loose: list[Loose], target: Target) -> str:
    """One line: which requirement no version on the index satisfies for `target`, and where it is."""
    found = UNSATISFIABLE_RE.search(told)
    if not found:
        return f"no resolution of the requirements for {target.path}: {vendor.last_meaningful(told)}"
    text, versions = found.groups()
    try:
        name = canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        name = canonicalize_name(text)
    origin = next((x.origin + ": " for x in loose if x.name == name), "")
    shown = ", ".join(v.strip() for v in versions.split(",")[-5:])
    if shown in ("", "none"):
        return (f"{origin}{text}: not on the index (no such project, or no wheel for {target.path}); "
                "check the name")
    return (f"{origin}{text}: no version on the index has a wheel for {target.path} (versions there: {shown}); "
            "relax the requirement or drop the target")


def target_args(target: Target) -> list[str]:
    """pip's options for a declared target; none for this interpreter (pip runs on it)."""
    if os.path.isabs(target.path):
        return []
    platforms = [arg for p in wheels.download_platforms(target) for arg in ("--platform", p)]
    return ["--python-version", target.version, "--implementation", "cp", "--abi", target.abi, *platforms]


def run_pip(cache: Cache, env: dict[str, str], args: list[str]) -> vendor.PipRun:
    """vendor.run_pip, with pip evaluating markers in the target's environment `env`."""
    (entry,) = toolchain.unpack(cache, (toolchain.PIP,))
    child = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    child.update(PIP_DISABLE_PIP_VERSION_CHECK="1", CROS_VENV_MARKER_ENV=json.dumps(env))
    with tempfile.TemporaryDirectory(prefix="vendor_wheels-log-") as tmp:
        log = os.path.join(tmp, "pip.log")
        argv = [sys.executable, "-I", "-c", RUNNER, entry, "--retries", "0", "--timeout", "15", "--log", log, *args]
        result = procs.run_text(argv, env=child)
        text = ""
        if os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as f:
                text = f.read()
    return vendor.PipRun(result.returncode, result.stdout + result.stderr, text)


def vendor_lines(lines: list[lockfile.Line], target_list: list[Target], out: str, work: str, cache: Cache,
                 options: vendor.Options) -> tuple[list[wheels.Wheel], wheels.Wheelhouse]:
    """Download every wheel the lines need for every target they apply to into a staging
    directory; (the wheels staged, pip_packages/ with them as it will be).
    """
    stage = os.path.join(work, "stage")
    os.mkdir(stage)
    house = wheels.Wheelhouse.scan(toolchain.PIP_PACKAGES)
    failures: list[str] = []
    for ln in lines:
        pin = Pin(ln.name, ln.version, ln.extras, None, frozenset(), out)
        marker = Requirement(ln.requirement).marker
        needed = [t for t in target_list if (marker is None or requirements.marker_holds(marker, dict(t.environment)))
                  and not wheels.best_wheel(house.candidates(ln.name, ln.version), t)]
        try:
            if needed:
                vendor.fetch(pin, needed, stage, cache, options)
        except vendor.Offline:
            raise
        except BuildError as e:
            failures += e.problems
    if len(failures) > 1:
        raise BuildError(f"{len(failures)} pins of the lock have no wheel to vendor (below); nothing was changed",
                         *failures)
    if failures:
        raise BuildError(*failures)
    staged = wheels.Wheelhouse.scan(stage)
    added = [w for ws in staged.wheels.values() for w in ws if not os.path.exists(
        os.path.join(house.directory, w.filename))]
    merged = {n: house.wheels.get(n, ()) + tuple(w for w in added if w.name == n)
              for n in {*house.wheels, *staged.wheels}}
    return sorted(added, key=lambda w: w.filename), wheels.Wheelhouse(house.directory, merged, ())
