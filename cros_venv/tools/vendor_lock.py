"""vendor_wheels for a pylock.toml: exactly the wheels the lock names, checked against its hashes.

For each entry and declared target with no fitting wheel yet, the wheel the lock lists that
fits the target best is fetched: copied from its `path`, or downloaded from its `url` (pip,
with the caller's configuration), or else by name and version from the index. Each lands in
a directory of its own and reaches the staging directory only if its bytes match every hash
the lock gives it; vendor.main moves the staging directory into pip_packages/ only when every
entry succeeded.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from packaging.utils import parse_wheel_filename

from cros_venv import digest, wheels
from cros_venv.cache import Cache
from cros_venv.errors import BuildError
from cros_venv.interpreter import Target
from cros_venv.reqlines import LockedWheel, Pin
from cros_venv.tools import pip_run, vendor


def choose(pin: Pin, target: Target) -> LockedWheel | None:
    """The wheel of the lock's entry that fits `target` best, if any does."""
    assert pin.locked is not None
    listed = {w.filename: w for w in pin.locked.wheels}
    candidates = []
    for name in listed:
        _, version, _, tags = parse_wheel_filename(name)  # packaging.pylock checked the names
        candidates.append(wheels.Wheel(name, pin.name, version, tags))
    best = wheels.best_wheel(candidates, target)
    return listed[best.path] if best is not None else None


def mismatch(path: str, wheel: LockedWheel) -> str | None:
    """How the file at `path` differs from the hashes the lock gives `wheel`, or None."""
    with open(path, "rb") as f:
        data = f.read()
    for expected in sorted(wheel.hashes):
        algo, _, hexdigest = expected.partition(":")
        actual = digest.hexdigest(algo, data)
        if actual != hexdigest:
            return f"its {algo} is {actual}, the lock's {hexdigest}"
    return None


def fetch(pin: Pin, needed: list[Target], stage: str, cache: Cache, options: vendor.Options) -> None:
    """Put into `stage` the lock's wheel of `pin` for every target in `needed`, each checked
    against the lock's hashes; a BuildError saying why not (Offline: the index cannot be reached).
    """
    assert pin.locked is not None
    for target in needed:
        if wheels.best_wheel(wheels.Wheelhouse.scan(stage).for_pin(pin), target):
            continue  # a wheel fetched for an earlier target (a pure one) fits this one too
        wheel = choose(pin, target)
        if wheel is None:
            listed = ", ".join(sorted(pin.locked.filenames))
            raise BuildError(f"{pin.origin}: {pin}: the lock names no wheel for {target.describe()} ({listed}); "
                             "lock for that target too, or drop it")
        with tempfile.TemporaryDirectory(prefix="vendor_wheels-lock-", dir=stage) as own:
            got = os.path.join(own, wheel.filename)
            if wheel.path is not None and os.path.isfile(wheel.path):
                shutil.copyfile(wheel.path, got)
            else:
                run = pip_run.run_pip(cache, vendor.download_args(pin, target, own, options, wheel.url))
                if run.returncode != 0:
                    if run.offline:
                        raise pip_run.offline(pin)
                    raise BuildError(f"{pin.origin}: {pin}: cannot download {wheel.url or wheel.filename}: "
                                     f"pip failed: {pip_run.last_meaningful(run.told)}")
            if not os.path.isfile(got):
                found = ", ".join(sorted(os.listdir(own))) or "nothing"
                raise BuildError(f"{pin.origin}: {pin}: the index gave {found}, not {wheel.filename} that the "
                                 "lock names; vendor from the index the lock was made with (--index-url)")
            wrong = mismatch(got, wheel)
            if wrong is not None:
                raise BuildError(f"{pin.origin}: {wheel.filename} fetched for {pin} does not match the lock's hash "
                                 f"({wrong}); nothing was changed: check where it came from, or lock again")
            os.replace(got, os.path.join(stage, wheel.filename))
