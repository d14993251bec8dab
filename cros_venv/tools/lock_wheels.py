"""The lock step's wheels: every wheel the pins need for every target, vendored, and only
wheels something other than pip_packages/ vouches for used in the lock.

The lock's hashes (`--hashes`, PEP 751) are taken from pip_packages/. So a wheel already
there is used only if the index vouches for it (pip's report names the same file, with
its sha256: other bytes stop the run) or OUT already recorded its hash; any other is
fetched again from the index for the targets that need it, and a fetched wheel whose name
is already in pip_packages/ must have the same bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import unquote, urlparse

from packaging.requirements import Requirement
from packaging.utils import NormalizedName
from packaging.version import Version

from cros_venv import requirements, toolchain, wheels
from cros_venv.cache import Cache
from cros_venv.digest import file_sha256
from cros_venv.errors import BuildError, CrosVenvError
from cros_venv.interpreter import Target
from cros_venv.reqlines import Pin
from cros_venv.tools import lockfile, pip_run, vendor


@dataclass
class Vouched:
    """The sha256 of wheels something other than pip_packages/ itself vouches for: the index
    (pip's report names the file it would download, with its hash) or OUT as it was (the
    hashes it already recorded for a pin). The lock takes its hashes from pip_packages/, so
    only a wheel vouched for, or fetched by this run, goes into it.
    """

    by_file: dict[str, str]
    by_pin: dict[tuple[NormalizedName, Version], frozenset[str]]

    @classmethod
    def from_reports(cls, reports: Sequence[dict[str, Any]],
                     old: dict[tuple[NormalizedName, Version], frozenset[str]]) -> Vouched:
        own = os.path.realpath(toolchain.PIP_PACKAGES)
        by_file: dict[str, str] = {}
        for report in reports:
            for item in report.get("install", ()):
                info = item.get("download_info") or {}
                sha = ((info.get("archive_info") or {}).get("hashes") or {}).get("sha256")
                url = str(info.get("url", ""))
                # pip_packages/ itself (a --find-links of it, in the caller's pip configuration) vouches for nothing
                path = os.path.realpath(unquote(urlparse(url).path)) if url.startswith("file:") else ""
                local = path.startswith(own + os.sep)
                if sha and url and not local:
                    by_file[url.rsplit("/", 1)[-1].split("#")[0]] = str(sha)
        return cls(by_file, old)

    def check(self, wheel: wheels.Wheel) -> bool:
        """Whether `wheel` is vouched for; a BuildError if the index has other bytes under its name."""
        sha = file_sha256(wheel.path)
        if wheel.filename in self.by_file:
            if sha != self.by_file[wheel.filename]:
                raise BuildError(f"{wheel.path}: its sha256 differs from the index's {wheel.filename} "
                                 f"({self.by_file[wheel.filename][:16]}...); nothing was changed: the wheel in "
                                 "pip_packages/ was changed or came from another index; remove it and lock again")
            return True
        return sha in self.by_pin.get((wheel.name, wheel.version), frozenset())


def old_hashes(out: str) -> dict[tuple[NormalizedName, Version], frozenset[str]]:
    """The sha256 values OUT already records for each pin (none if it has none, or is unreadable)."""
    if not os.path.isfile(out):
        return {}
    try:
        pins = requirements.load([out]).pins
    except (CrosVenvError, OSError):
        return {}
    found: dict[tuple[NormalizedName, Version], frozenset[str]] = {}
    for pin in pins:
        listed = {h for w in pin.locked.wheels for h in w.hashes} if pin.locked is not None else set(pin.hashes)
        digests = {h.partition(":")[2] for h in listed if h.startswith("sha256:")}
        found[(pin.name, pin.version)] = found.get((pin.name, pin.version), frozenset()) | digests
    return found


def vendor_lines(lines: list[lockfile.Line], target_list: list[Target], out: str, work: str, cache: Cache,
                 options: vendor.Options, vouched: Vouched) -> tuple[list[wheels.Wheel], wheels.Wheelhouse]:
    """Download every wheel the lines need for every target they apply to into a staging
    directory; (the wheels staged, pip_packages/ as the lock sees it: the wheels vouched for
    and those staged). A wheel present but not vouched for is fetched again from the index;
    if the index's has the same name and other bytes, the run stops.
    """
    stage = os.path.join(work, "stage")
    os.mkdir(stage)
    present = wheels.Wheelhouse.scan(toolchain.PIP_PACKAGES)
    pinned = {(ln.name, ln.version) for ln in lines}
    trusted = {n: tuple(w for w in ws if (w.name, w.version) in pinned and vouched.check(w))
               for n, ws in present.wheels.items()}
    house = wheels.Wheelhouse(present.directory, trusted, ())
    failures: list[str] = []
    for ln in lines:
        pin = Pin(ln.name, ln.version, ln.extras, None, frozenset(), out)
        marker = Requirement(ln.requirement).marker
        needed = [t for t in target_list if (marker is None or requirements.marker_holds(marker, dict(t.environment)))
                  and not wheels.best_wheel(house.candidates(ln.name, ln.version), t)]
        try:
            if needed:
                vendor.fetch(pin, needed, stage, cache, options)
        except pip_run.Offline:
            raise
        except BuildError as e:
            failures += e.problems
    if len(failures) > 1:
        raise BuildError(f"{len(failures)} pins of the lock have no wheel to vendor (below); nothing was changed",
                         *failures)
    if failures:
        raise BuildError(*failures)
    staged = wheels.Wheelhouse.scan(stage)
    added: list[wheels.Wheel] = []
    for w in (w for ws in staged.wheels.values() for w in ws):
        there = os.path.join(present.directory, w.filename)
        if not os.path.exists(there):
            added.append(w)
        elif file_sha256(there) != file_sha256(w.path):
            raise BuildError(f"{there}: differs from the {w.filename} the index has now; nothing was changed: the "
                             "wheel in pip_packages/ was changed or came from another index; remove it and lock again")
    fresh = {w.filename for w in added}  # the others are in pip_packages/ already, with these bytes
    merged = {n: tuple(house.wheels.get(n, ()))
              + tuple(w if w.filename in fresh else
                      wheels.Wheel(os.path.join(present.directory, w.filename), w.name, w.version, w.tags)
                      for w in staged.wheels.get(n, ()))
              for n in {*house.wheels, *staged.wheels}}
    return sorted(added, key=lambda w: w.filename), wheels.Wheelhouse(present.directory, merged, ())


def check_against_index(files: Sequence[requirements.RequirementFiles], target_list: Sequence[Target],
                        house: wheels.Wheelhouse, cache: Cache, options: vendor.Options) -> None:
    """vendor_wheels --hashes: every wheel already in pip_packages/ of a pinned version whose
    name the index also has (pip's report, per target, of the pins alone) must have its bytes.
    A wheel the index does not name (built here from an sdist, another platform's) is taken
    as pip_packages/ has it; one with the index's name and other bytes stops the run.
    """
    reports = []
    with tempfile.TemporaryDirectory(prefix="vendor_wheels-check-") as work:
        for i, target in enumerate(target_list):
            pins: set[str] = set()
            for reqs in files:
                wanted, constraints = requirements.applicable(reqs, target.environment)
                pins |= {str(pin) for pin in [*wanted.values(), *constraints.values()] if pin.locked is None}
            report = _pins_report(sorted(pins), target, os.path.join(work, str(i)), cache, options)
            if report is not None:
                reports.append(report)
    vouched = Vouched.from_reports(reports, {})
    for ws in house.wheels.values():
        for w in ws:
            if w.filename in vouched.by_file:
                vouched.check(w)


def _pins_report(pins: list[str], target: Target, work: str, cache: Cache,
                 options: vendor.Options) -> dict[str, Any] | None:
    """pip's report of `pins` alone (no dependencies) for `target`, without the pins the
    index has no wheel of (pip names them one at a time); None if none is left.
    """
    from cros_venv.tools import lock

    os.mkdir(work)
    for _ in range(10):
        if not pins:
            return None
        listed = os.path.join(work, "pins.txt")
        with open(listed, "w", encoding="utf-8") as f:
            f.writelines(f"{p}\n" for p in pins)
        report = os.path.join(work, "report.json")
        got = lock.run_pip(cache, dict(target.environment), [
            "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet", "--report", report,
            "--only-binary=:all:", "--target", os.path.join(work, "scratch"), *lock.target_args(target),
            *options.pip_args(), "-r", listed])
        if got.returncode == 0:
            with open(report, encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
            return data
        if got.offline:
            raise pip_run.Offline("cannot reach the package index to check the wheels in pip_packages/ "
                                 "before writing their hashes (offline?); nothing was changed")
        found = lock.UNSATISFIABLE_RE.search(f"{got.told}\n{got.log}")
        if not found:
            return None
        name = lock.project_name(found.group(1))
        pins = [p for p in pins if lock.project_name(p) != name]
    return None
