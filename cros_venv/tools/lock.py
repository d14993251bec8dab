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
import sys
from typing import Any, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from cros_venv import procs, pylock, requirements, toolchain
from cros_venv.cache import Cache
from cros_venv.digest import file_sha256
from cros_venv.errors import BuildError, InputError
from cros_venv.interpreter import Target
from cros_venv.missing import download_platforms
from cros_venv.tools import check, lockfile, outfile, pip_run, pylock_out, targets, vendor
from cros_venv.tools.lock_source import Loose, Source, read_output, read_source
from cros_venv.tools.lock_wheels import Vouched, old_hashes, vendor_lines

# pip, with the marker environment of the target rather than of the interpreter running it:
# pip evaluates markers (`; python_version < "3.11"`, in IN and in every wheel's Requires-Dist)
# for the running interpreter even with --python-version (pypa/pip#11664).
RUNNER = ("import json, os, runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
          "from pip._vendor.packaging import markers; env = json.loads(os.environ.pop('CROS_VENV_MARKER_ENV')); "
          "default = markers.default_environment; markers.default_environment = lambda: {**default(), **env}; "
          "runpy.run_module('pip', run_name='__main__')")
UNSATISFIABLE_RE = re.compile(r"satisfies the requirement (.+?) \(from versions: ([^)]*)\)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{vendor.PROG} --lock", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lock", required=True, metavar="IN", help="loose requirements (pip format)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the lock file to write (may be IN)")
    targets.add_arguments(p)
    p.add_argument("--hashes", action="store_true", help="write --hash=sha256: for every wheel of each pin")
    up = p.add_mutually_exclusive_group()
    up.add_argument("--upgrade", action="store_true", help="free every pin OUT has")
    up.add_argument("--upgrade-package", action="append", default=[], metavar="NAME",
                    help="free this pin (repeatable): it moves to the newest version IN and the other kept pins allow")
    p.add_argument("--index-url", metavar="URL", help="passed to pip (a mirror)")
    p.add_argument("--find-links", action="append", default=[], metavar="DIR", help="passed to pip")
    p.add_argument("--no-index", action="store_true", help="passed to pip (with --find-links)")
    return p


def command(args: argparse.Namespace) -> str:
    """The command for the header: what decides the pins (not the index, nor --upgrade), with
    paths from OUT's directory (the same bytes whatever directory it ran from).
    """
    words = ["bin/vendor_wheels", "--lock", shown(args.lock, args.output), "-o", os.path.basename(args.output)]
    words += [w for v in args.python for w in ("--python", v)] + [w for v in args.platform for w in ("--platform", v)]
    return shlex.join(words + (["--hashes"] if args.hashes else []))


def shown(path: str, out: str) -> str:
    """`path` as the lock names it: relative to OUT's directory (a pipe's name as given)."""
    if not os.path.isfile(path):
        return path
    return os.path.relpath(os.path.realpath(path), os.path.dirname(os.path.realpath(out)))


def main(argv: Sequence[str], cache: Cache) -> int:
    args = parser().parse_args(argv)
    options = vendor.Options(args.index_url, tuple(args.find_links), args.no_index)
    _check_arguments(args)
    target_list = targets.make(args.python, args.platform, cache.root)
    same = os.path.exists(args.output) and os.path.samefile(args.lock, args.output)
    source = read_source(args.lock, same, target_list)
    _check_includes(args, source, same)
    loose = source.loose
    free = {canonicalize_name(n) for n in args.upgrade_package}
    if same:  # onboarding: IN's own pins are kept, except those --upgrade frees
        loose = [Loose(Requirement(_unpinned(x.req)), x.origin, x.constraint)
                 if x.pinned and (args.upgrade or x.name in free) else x for x in loose]
    outputs = [] if not os.path.exists(args.output) or args.upgrade else read_output(args.output)
    unknown = sorted(free - {x.name for x in (*loose, *outputs)})
    if unknown:
        raise InputError(f"--upgrade-package {unknown[0]}: neither {args.lock} nor {args.output} names it; "
                         "check the name")
    kept = [] if args.upgrade else [x for x in outputs if x.pinned and x.name not in free and not x.constraint]
    top: dict[NormalizedName, frozenset[str]] = {}
    for x in loose:
        if x.req.marker and not x.constraint:
            top[x.name] = top.get(x.name, frozenset()) | {str(x.req.marker)}
    if source.pre:
        options = vendor.Options(options.index_url, options.find_links, options.no_index, pre=True)

    with pip_run.scratch_dir("vendor_wheels-lock-") as work:
        flat = os.path.join(work, "in.txt")
        with open(flat, "w", encoding="utf-8") as f:  # without hashes: pip would want every pin hashed
            f.write(f"-c {os.path.join(work, 'in-c.txt')}\n")
            f.writelines(f"{x.req}\n" for x in loose if not x.constraint)
        with open(os.path.join(work, "in-c.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{_unextra(x.req)}\n" for x in loose if x.constraint)
        reports = [resolve(t, i, flat, loose, kept, work, cache, options) for i, t in enumerate(target_list)]
        origins: dict[NormalizedName, frozenset[str]] = {}
        for x in loose:
            if not x.constraint:
                origins[x.name] = origins.get(x.name, frozenset()) | {
                    f"-r {shown(x.origin.rpartition(':')[0], args.output)}"}
        lines = lockfile.merge(target_list, [lockfile.from_report(r, t.environment, top,
                                                                  f"-r {shown(args.lock, args.output)}", origins)
                                             for r, t in zip(reports, target_list)])
        if same:  # IN's pins for no declared target stay in IN
            lines = sorted([*lines, *_elsewhere(loose, lines, target_list, args.lock)], key=lambda ln: ln.name)
        added, house = vendor_lines(lines, target_list, args.output, work, cache, options,
                                    Vouched.from_reports(reports, old_hashes(args.output)))
        if pylock.is_lock_path(args.output):  # PEP 751: always with every wheel's hash
            text = pylock_out.text(lines, command(args), target_list, house, args.output, reports)
        else:
            hashes = {(ln.name, ln.version): sorted({file_sha256(w.path) for w in house.candidates(
                ln.name, ln.version)}) for ln in lines} if args.hashes else None
            text = lockfile.render(lines, command(args), hashes, source.notes, source.trailing, source.after)
        checked = os.path.join(work, "check", os.path.basename(args.output))
        os.mkdir(os.path.dirname(checked))
        with open(checked, "w", encoding="utf-8") as f:
            f.write(text)
        found = check.requirement_problems([checked], target_list, house, cache, set())
        if found.problems:
            raise BuildError(f"the lock of {args.lock} does not pass check_requirements (below); nothing was changed",
                             *(str(p).replace(checked, args.output) for p in found.problems))
        # All or nothing: OUT is written beside itself, the wheels land, then OUT is renamed into place.
        outfile.publish(outfile.Replacement(args.output, text), [w.path for w in added], toolchain.PIP_PACKAGES)
    for w in added:
        print(f"added {w.filename}")
    print(f"{args.output}: {_count(len(lines), 'pin')} for {_count(len(target_list), 'target')}, "
          f"{_count(len(added), 'wheel')} added to pip_packages/; checked for every target")
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """What the command line asks that cannot be done, before anything is resolved."""
    if pylock.is_lock_path(args.lock):
        raise InputError(f"{args.lock}: --lock reads loose requirements in pip's format, not a lock; "
                         "give the requirements the lock was made from")
    if not os.path.exists(args.lock) or os.path.isdir(args.lock):
        why = "a directory" if os.path.isdir(args.lock) else "no such file"
        raise InputError(f"{args.lock}:0: cannot read requirements file ({why}); name the loose requirements to lock")
    if args.output.endswith(".toml") and not pylock.is_lock_path(args.output):
        raise InputError(f"-o {args.output}: a .toml output is a PEP 751 lock and must be named pylock.toml or "
                         "pylock.NAME.toml (NAME without dots); rename it")
    for name in args.upgrade_package:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name):
            raise InputError(f"--upgrade-package {name}: give a project name only (no version); the lock step "
                             "picks the newest version IN allows")
    args.python = list(dict.fromkeys(args.python))
    args.platform = list(dict.fromkeys(args.platform))
    _check_output(args.output)


def _elsewhere(loose: list[Loose], lines: list[lockfile.Line], target_list: list[Target],
               source: str) -> list[lockfile.Line]:
    """IN's own pins whose markers hold for none of the targets (`pywin32==306 ; sys_platform
    == "win32"` locked for Linux): written back as they are, so a lock over IN loses no pin.
    """
    have = {ln.name for ln in lines}
    return [lockfile.Line(x.name, x.pinned, frozenset(x.req.extras), str(x.req.marker), (f"-r {source}",))
            for x in loose if x.pinned and not x.constraint and x.req.marker is not None and x.name not in have
            and not any(requirements.marker_holds(x.req.marker, {**t.environment, "extra": ""}) for t in target_list)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_output(out: str) -> None:
    """OUT can be written: an existing file, or a new one in an existing directory."""
    if not out:
        raise InputError("-o '': name the lock file to write (e.g. -o requirements.txt)")
    if os.path.exists(out) and not os.path.isdir(out) and not os.path.isfile(out):
        raise InputError(f"-o {out}: not a regular file (a device, FIFO or socket); name the lock file to write")
    if os.path.islink(out) and not os.path.exists(out):
        raise InputError(f"-o {out}: a symlink to {os.readlink(out)}, which does not exist; fix or remove the link")
    parent = os.path.dirname(os.path.realpath(out))
    if os.path.isdir(out):
        example = os.path.join(out, "requirements.txt")
        raise InputError(f"-o {out}: a directory; name the lock file to write (e.g. {example})")
    if not os.path.isdir(parent):
        raise InputError(f"-o {out}: no directory {parent}; create it first, or write the lock elsewhere")
    if not os.access(out if os.path.exists(out) else parent, os.W_OK):
        raise InputError(f"-o {out}: not writable; check its permissions")


def _check_includes(args: argparse.Namespace, source: Source, same: bool) -> None:
    """A lock written over IN would drop IN's -r/-c lines; one written over a file IN
    includes would replace requirements IN reads. Both are refused.
    """
    for where, included in source.includes:
        if same:
            raise InputError(f"{where}: {args.lock} includes {included}; a lock written over {args.lock} would drop "
                             "the include: write the lock to another file (e.g. -o requirements.lock.txt)")
        if os.path.exists(args.output) and os.path.exists(included) and os.path.samefile(included, args.output):
            raise InputError(f"-o {args.output}: {args.lock} includes it ({where}); writing the lock there would "
                             "replace requirements the lock is made from: write it to another file")


def _unpinned(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}" + (f" ; {req.marker}" if req.marker else "")


def _unextra(req: Requirement) -> str:
    """A constraint as pip takes one: no extras."""
    return f"{req.name}{req.specifier}" + (f" ; {req.marker}" if req.marker else "")


def resolve(target: Target, index: int, flat: str, loose: list[Loose], kept: list[Loose], work: str, cache: Cache,
            options: vendor.Options) -> dict[str, Any]:
    """pip's installation report of IN's closure for `target`, OUT's pins held where they
    still fit IN: those pip names in a conflict are freed (with a note), then all of them if
    that is not enough; a pip failure that is not a conflict frees none.
    """
    env = dict(target.environment)
    direct = {x.name: x.req.specifier for x in loose if not x.constraint}
    held = [x for x in kept if (x.req.marker is None or requirements.marker_holds(x.req.marker, env))
            and (x.pinned is None or direct.get(x.name) is None or direct[x.name].contains(x.pinned, prereleases=True))]
    report = os.path.join(work, f"report-{index}.json")
    attempt = held
    for round_ in range(6):  # held pins, then without those pip names in a conflict (4 rounds at most), then none
        constraints = os.path.join(work, f"kept-{index}.txt")
        with open(constraints, "w", encoding="utf-8") as f:
            f.writelines(f"{x.name}=={x.pinned}\n" for x in attempt)
        got = run_pip(cache, env, ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", report,
                                   "--only-binary=:all:", "--target", os.path.join(work, "scratch"),
                                   *target_args(target), *options.pip_args(), "-r", flat, "-c", constraints])
        if got.returncode == 0:
            freed = sorted({x.name for x in held} - {x.name for x in attempt})
            if freed:
                print(f"{vendor.PROG}: note: for {target.path}, the kept pins of {', '.join(freed)} conflict with "
                      "the requirements; resolved afresh", file=sys.stderr)
            with open(report, encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
            return data
        if got.offline:
            raise BuildError(f"cannot reach the package index while locking for {target.path} (offline?); "
                             "nothing was changed: run again with network access")
        told = f"{got.told}\n{got.log}"
        if not any(sign in told for sign in ("ResolutionImpossible", "No matching distribution found")):
            raise BuildError(f"pip failed while locking for {target.path}: {pip_run.last_meaningful(got.told)}; "
                             "nothing was changed")  # not a conflict: the kept pins are not freed for it
        if not attempt:
            break
        named = {canonicalize_name(w) for c in _conflict(told) for w in re.findall(r"[A-Za-z0-9][\w.-]*", c)}
        missing = UNSATISFIABLE_RE.search(told)
        if missing:
            named.add(project_name(missing.group(1)))
        narrower = [x for x in attempt if x.name not in named]
        attempt = narrower if len(narrower) < len(attempt) and round_ < 4 else []
    raise BuildError(_unsatisfiable(f"{got.told}\n{got.log}", loose, target))


def _unsatisfiable(told: str, loose: list[Loose], target: Target) -> str:
    """One line: which requirement no version on the index satisfies for `target`, and where it is."""
    found = UNSATISFIABLE_RE.search(told)
    if not found:
        causes = _conflict(told)
        if causes:
            asked = [project_name(c[len("requested "):]) for c in causes if c.startswith("requested ")]
            origin = next((x.origin + ": " for name in asked for x in loose if x.name == name), "")
            return (f"{origin}the requirements conflict for {target.path}: {'; '.join(causes)}; change or drop one "
                    "of these pins (a pin the lock added: --upgrade-package NAME)")
        return f"no resolution of the requirements for {target.path}: {pip_run.last_meaningful(told)}"
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


def project_name(text: str) -> NormalizedName:
    """The project a requirement as pip prints it names (`six==1.16`, `shared>=1`, `top 1.0`)."""
    return canonicalize_name(re.split(r"[^\w.-]", text.strip())[0])


def _conflict(told: str) -> list[str]:
    """pip's "The conflict is caused by:" lines (`The user requested x==1`, `top 1.0 depends on x>=2`)."""
    lines = [pip_run.TIMESTAMP_RE.sub("", line) for line in told.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.strip() == "The conflict is caused by:"), None)
    if start is None:
        return []
    causes: list[str] = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        causes.append(line.strip().replace("The user requested ", "requested "))
    return causes[:4]


def target_args(target: Target) -> list[str]:
    """pip's options for a declared target; none for this interpreter (pip runs on it)."""
    if os.path.isabs(target.path):
        return []
    platforms = [arg for p in download_platforms(target) for arg in ("--platform", p)]
    return ["--python-version", target.version, "--implementation", "cp", "--abi", target.abi, *platforms]


def run_pip(cache: Cache, env: dict[str, str], args: list[str]) -> pip_run.PipRun:
    """pip_run.run_pip, with pip evaluating markers in the target's environment `env`."""
    (entry,) = toolchain.unpack(cache, (toolchain.PIP,))
    child = pip_run.pip_environment()
    child["CROS_VENV_MARKER_ENV"] = json.dumps(env)
    with pip_run.scratch_dir() as tmp:
        log = os.path.join(tmp, "pip.log")
        child["TMPDIR"] = tmp  # pip's own temporary files go with this directory, even if pip is killed
        argv = [sys.executable, "-I", "-c", RUNNER, entry, "--retries", "0", "--timeout", "15", "--log", log, *args]
        result = procs.run_text(argv, env=child)
        text = ""
        if os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as f:
                text = f.read()
    return pip_run.PipRun(result.returncode, result.stdout + result.stderr, text)
