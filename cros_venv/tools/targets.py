"""Declared targets: a Python version and a platform tag, as the Target a wheel must fit.

check_requirements and vendor_wheels work for interpreters that are not on this machine
(`--python 3.9 --platform manylinux_2_17_x86_64`), so the tags and marker environment
are made from the declaration with packaging's tag generators instead of asked of a
running interpreter.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms

from cros_venv import interpreter
from cros_venv.errors import InputError
from cros_venv.interpreter import Target

# manylinux PEP 600 names and the legacy aliases wheels still carry (PEP 513/571/599).
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
MACHINES = {"x86_64": "x86_64", "amd64": "AMD64", "aarch64": "aarch64", "arm64": "arm64", "i686": "i686",
            "win32": "x86", "armv7l": "armv7l", "ppc64le": "ppc64le", "s390x": "s390x", "universal2": "arm64"}
ARCH = "([a-z0-9_]+)"  # ASCII only: \w and \d in re match any Unicode letter or digit


# The newest CPython release of each 3.N known to this tool (pyenv's list of 2026-05-08).
# A declared `--python 3.N` means the newest: a wheel's `Requires-Python: !=3.9.0, !=3.9.1`
# excludes only releases nobody should still run. Update it with new releases.
LATEST_PATCH = {6: 15, 7: 17, 8: 20, 9: 25, 10: 20, 11: 15, 12: 13, 13: 13, 14: 4}
MINORS = (6, 99)  # --python 3.6 to 3.99: tags are made for every 3.N below the declared one


@dataclass(frozen=True)
class PythonVersion:
    """A declared CPython version: `3.N` (its newest known release) or an exact `3.N.P`."""

    minor: int
    patch: int
    given: str  # as declared

    @classmethod
    def parse(cls, text: str) -> PythonVersion:
        m = re.fullmatch(r"3\.([0-9]+)(?:\.([0-9]+))?", text)
        if not m:
            raise InputError(f"--python {_shown(text)}: give a Python version as 3.N or 3.N.P, e.g. 3.11")
        if not _within(m.group(1), *MINORS):
            raise _out_of_range("--python", text, f"3.{MINORS[0]}", f"3.{MINORS[1]}")
        minor = int(m.group(1))
        if m.group(2) is not None and not _within(m.group(2), 0, 99):
            raise _out_of_range("--python", text, f"3.{minor}.0", f"3.{minor}.99")
        patch = LATEST_PATCH.get(minor, 0) if m.group(2) is None else int(m.group(2))
        return cls(minor, patch, text)

    @property
    def full(self) -> str:
        return f"3.{self.minor}.{self.patch}"

    @property
    def label(self) -> str:
        """`3.9 (3.9.25)` for a declared minor, `3.9.7` for an exact version."""
        if self.given == self.full:
            return self.full
        if self.minor not in LATEST_PATCH:
            return f"{self.given} ({self.full}: no 3.{self.minor} release known to this tool)"
        return f"{self.given} ({self.full})"


def _shown(value: str) -> str:
    return value if len(value) <= 40 else value[:40] + "..."


def _within(digits: str, low: int, high: int) -> bool:
    """`low <= int(digits) <= high`, without converting a 5000-digit number first."""
    return len(digits) <= len(str(high)) and low <= int(digits) <= high


def _out_of_range(option: str, value: str, low: str, high: str) -> InputError:
    return InputError(f"{option} {_shown(value)}: out of range; the allowed range is {low} to {high}")


def expand_platform(platform: str) -> list[str]:
    """All platform tags a wheel for `platform` may carry, best first (as pip expands them).

    Version numbers are limited to two digits: every tag from the given version down is
    generated, so `manylinux_2_2000000_x86_64` would otherwise mean millions of tags.
    """
    legacy = re.fullmatch(rf"(manylinux1|manylinux2010|manylinux2014)_{ARCH}", platform)
    if legacy:
        glibc = LEGACY_MANYLINUX[legacy.group(1)]
        return _manylinux(platform, str(glibc[0]), str(glibc[1]), legacy.group(2))
    m = re.fullmatch(rf"manylinux_([0-9]+)_([0-9]+)_{ARCH}", platform)
    if m:
        return _manylinux(platform, *m.groups())
    m = re.fullmatch(rf"musllinux_([0-9]+)_([0-9]+)_{ARCH}", platform)
    if m:
        major, minor, arch = m.groups()
        if major != "1" or not _within(minor, 0, 99):
            raise _out_of_range("--platform", platform, f"musllinux_1_0_{arch}", f"musllinux_1_99_{arch}")
        return [f"musllinux_1_{v}_{arch}" for v in range(int(minor), -1, -1)]
    m = re.fullmatch(rf"macosx_([0-9]+)_([0-9]+)_{ARCH}", platform)
    if m:
        major, minor, arch = m.groups()
        if not _within(major, 10, 99) or not _within(minor, 0, 99):
            raise _out_of_range("--platform", platform, f"macosx_10_0_{arch}", f"macosx_99_99_{arch}")
        return list(mac_platforms((int(major), int(minor)), arch))
    if re.fullmatch(rf"(win32|win_amd64|win_arm64|linux_{ARCH})", platform):
        return [platform]
    if platform == "any":  # a wheel's tag, not a machine: which OS would the markers see?
        raise InputError("--platform any: `any` is the tag of pure-Python wheels, not a platform; name the "
                         "machines the requirements are for, e.g. manylinux_2_17_x86_64 or macosx_11_0_arm64")
    raise InputError(f"--platform {_shown(platform)}: not a platform tag; use e.g. manylinux_2_17_x86_64, "
                     "macosx_11_0_arm64 or win_amd64")


def _manylinux(platform: str, major: str, minor: str, arch: str) -> list[str]:
    """PEP 600: every glibc 2.x from the given one down to the oldest with wheels for `arch`,
    each followed by its legacy alias (manylinux2014 = 2.17, ...).
    """
    oldest = 5 if arch in ("x86_64", "i686") else 17
    if major != "2" or not _within(minor, oldest, 99):
        raise _out_of_range("--platform", platform, f"manylinux_2_{oldest}_{arch}", f"manylinux_2_99_{arch}")
    out = []
    for v in range(int(minor), oldest - 1, -1):
        out.append(f"manylinux_2_{v}_{arch}")
        out += [f"{name}_{arch}" for name, (_, lv) in LEGACY_MANYLINUX.items() if lv == v]
    return out


def environment(version: PythonVersion, platform: str) -> dict[str, str]:
    """The PEP 508 marker environment of CPython `version` on `platform`."""
    if platform.startswith(("manylinux", "musllinux", "linux")):
        os_name, sys_platform, system = "posix", "linux", "Linux"
    elif platform.startswith("macosx"):
        os_name, sys_platform, system = "posix", "darwin", "Darwin"
    else:
        os_name, sys_platform, system = "nt", "win32", "Windows"
    arch = next((m for key, m in MACHINES.items() if platform.endswith(key)), "")
    return {
        "implementation_name": "cpython", "implementation_version": version.full, "os_name": os_name,
        "platform_machine": arch, "platform_python_implementation": "CPython", "platform_release": "",
        "platform_system": system, "platform_version": "", "python_full_version": version.full,
        "python_version": f"3.{version.minor}", "sys_platform": sys_platform,
    }


def declared(python_version: str, platform: str) -> Target:
    """The Target for CPython `python_version` (3.N or 3.N.P) on `platform` (a wheel platform tag)."""
    version = PythonVersion.parse(python_version)
    platforms = expand_platform(platform)
    abi = f"cp3{version.minor}" + ("m" if version.minor < 8 else "")  # pymalloc's "m" left the ABI in 3.8
    tags: list[Tag] = list(cpython_tags((3, version.minor), [abi], platforms))
    seen = set(tags)  # a set: `t not in tags` on the list was quadratic (minutes for 3.99)
    tags += [t for t in compatible_tags((3, version.minor), abi, platforms) if t not in seen]
    return Target(path=f"Python {version.label} on {platform}", version=version.full,
                  implementation="cpython", abi=abi, tags=tuple(tags), environment=environment(version, platform))


def host_platform(current: Target) -> str:
    """This machine's platform as an index would tag it (skipping the local linux_* tag)."""
    return next((t.platform for t in current.tags if not t.platform.startswith("linux_")), current.tags[0].platform)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--python and --platform, as check_requirements and vendor_wheels take them."""
    parser.add_argument("--python", action="append", default=[], metavar="VERSION",
                        help="a target Python version: 3.N (its newest release) or 3.N.P "
                             "(repeatable; default: the running one)")
    parser.add_argument("--platform", action="append", default=[], metavar="TAG",
                        help="a target platform tag, e.g. manylinux_2_17_x86_64 (repeatable; default: this machine)")


def make(pythons: list[str], platforms: list[str], cache_root: str) -> list[Target]:
    """Every declared Python x platform; none declared means this interpreter on this machine."""
    here = interpreter.find(os.path.realpath(sys.executable), os.path.join(cache_root, "interpreters"), [])
    if not pythons and not platforms:
        return [here]
    return [declared(v, p) for v in pythons or [here.version] for p in platforms or [host_platform(here)]]
