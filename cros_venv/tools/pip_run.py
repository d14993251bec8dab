"""vendor_wheels' pip: the tool's own pip run with the caller's configuration (index, proxy,
certificates) but for what would make it do something else than asked, and its debug log;
and why it failed, from what it printed: offline, no such project or version, an sdist
whose build needs C headers or a compiler that are not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from cros_venv import procs, toolchain
from cros_venv.cache import Cache
from cros_venv.errors import BuildError
from cros_venv.interpreter import Target
from cros_venv.lite import interrupts_held
from cros_venv.reqlines import Pin

# What pip (its console output or its --log) says when the index cannot be reached.
OFFLINE_SIGNS = (
    "connection error:", "NewConnectionError", "Network is unreachable", "Temporary failure in name resolution",
    "Name or service not known", "Connection refused", "ConnectTimeout", "Max retries exceeded",
    "No address associated with hostname", "nodename nor servname",
)


def pip_command(cache: Cache, args: list[str]) -> list[str]:
    """Run the tool's own pip from its unpacked wheel, as ensurepip does."""
    (entry,) = toolchain.unpack(cache, (toolchain.PIP,))
    code = "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); runpy.run_module('pip', run_name='__main__')"
    return [sys.executable, "-I", "-c", code, entry, *args]


@dataclass(frozen=True)
class PipRun:
    """What a pip command did: its exit status, its console output, its debug log."""

    returncode: int
    output: str  # stdout and stderr
    log: str  # --log: connection errors are told only here

    @property
    def offline(self) -> bool:
        return any(sign in self.output + self.log for sign in OFFLINE_SIGNS)

    @property
    def told(self) -> str:
        """The console output, then what the last build pip ran printed: with --log, pip
        writes a build's output only into the log (the console says "No available output").
        """
        lines = [TIMESTAMP_RE.sub("", line) for line in self.log.splitlines()]
        start = max((i for i, line in enumerate(lines) if line.lstrip().startswith("Running command ")), default=None)
        if start is None:
            return self.output
        end = next((i for i in range(start + 1, len(lines)) if re.search(r"exited with -?\d+$", lines[i])), len(lines))
        return "\n".join([self.output, *lines[start + 1:end]])


@contextmanager
def scratch_dir(prefix: str = "vendor_wheels-log-") -> Iterator[str]:
    """A temporary directory (by default for pip's log and its own temporary files),
    removed on any exit.
    Ctrl-C and SIGTERM (which this step unwinds like Ctrl-C) are held while it is made and
    while it is removed: an interrupt between mkdtemp and the name being kept, or in the
    middle of the removal, would leave it behind.
    """
    tmp = None
    try:
        with interrupts_held():
            tmp = tempfile.mkdtemp(prefix=prefix)
        yield tmp
    finally:
        if tmp is not None:
            with interrupts_held():
                shutil.rmtree(tmp, ignore_errors=True)


def run_pip(cache: Cache, args: list[str]) -> PipRun:
    """Run pip, with its debug log (pip's own output only says "No matching distribution"
    when the index cannot be reached).
    """
    env = pip_environment()
    with scratch_dir() as tmp:
        log = os.path.join(tmp, "pip.log")
        env["TMPDIR"] = tmp  # pip's own temporary files go with this directory, even if pip is killed
        result = procs.run_text(pip_command(cache, ["--retries", "0", "--timeout", "15", "--log", log, *args]),
                                env=env)
        text = ""
        if os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as f:
                text = f.read()
    return PipRun(result.returncode, result.stdout + result.stderr, text)


# The caller's pip configuration is kept (index, proxy, certificates), except what would make
# pip do something else than this step asks: these are set for every pip it runs.
PIP_OVERRIDES = {
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_REQUIRE_VIRTUALENV": "0",  # pip runs outside any venv here, on purpose
    "PIP_USER": "0", "PIP_NO_DEPS": "0",  # the lock step needs dependencies and its --target
    "PIP_CONSTRAINT": "", "PIP_BUILD_CONSTRAINT": "",  # the lock's constraints are its own
}
PIP_DROPPED = ("PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_REQUIREMENT", "PIP_EDITABLE", "PIP_SRC", "PIP_REPORT")


def pip_environment() -> dict[str, str]:
    """The environment of every pip this step runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k not in PIP_DROPPED}
    env.update(PIP_OVERRIDES)
    return env


class Offline(BuildError):
    """The index cannot be reached: every other pin would fail the same way."""


def offline(pin: Pin) -> Offline:
    return Offline(f"cannot reach the package index for {pin.name}=={pin.version} (offline?); "
                   "nothing was changed: run again with network access")


# How pip's output (a build's own output included) tells why a pin has no wheel.
VERSIONS_RE = re.compile(r"satisfies the requirement \S+ \(from versions: ([^)]*)\)")
HEADER_RE = re.compile(r"fatal error: ([\w./+-]+\.h(?:pp)?): No such file or directory")
COMPILER = r"[^'\s]*(?:gcc|g\+\+|clang|clang\+\+|\bcc|c\+\+|cl\.exe)(?:-[\d.]+)?"
COMPILER_RES = (
    re.compile(rf"No such file or directory: '({COMPILER})'"),
    re.compile(rf"unable to execute '?({COMPILER})'?: No such file"),
    re.compile(rf"command '({COMPILER})' failed: No such file or directory"),
    re.compile(r"(Microsoft Visual C\+\+) [\d.]+ or greater is required"),
    re.compile(r"can't find (Rust) compiler|(Cargo), the Rust package manager, is not installed"),
)
DEV_PACKAGES_RE = re.compile(r"make sure the (.{1,60}?) development packages? (?:is|are) installed")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.,]+\s+")  # a line of pip's --log
# pip's lines around a build failure that say only that it failed.
GENERIC = ("failed to build", "failed building wheel", "could not build wheels", "subprocess-exited-with-error",
           "this error originates from a subprocess", "[end of output]", "did not run successfully",
           "see above for", "exit code:", "no matching distribution found", "metadata-generation-failed",
           "metadata generation failed", "encountered error while", "exited with")


def last_meaningful(output: str) -> str:
    """The line of pip's output that says most about a failure: the last line that says
    `error` and not only that something failed, else pip's last ERROR line, else its last line.
    """
    lines = [TIMESTAMP_RE.sub("", line).strip(" \t│╰─>×") for line in output.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Traceback", "File \"", "raise "))]
    errors = [line for line in lines if "error" in line.lower()]
    specific = [line for line in errors if not any(g in line.lower() for g in GENERIC)]
    line = (specific or errors or lines or ["no output"])[-1]
    return line if len(line) <= 200 else line[:200] + "..."


def why(pin: Pin, target: Target, built: str) -> str:
    """Why `pin` has no wheel for `target` (pip download found none), from `pip wheel`'s output."""
    where = target.path if not os.path.isabs(target.path) else f"Python {target.python_version} on this machine"
    versions = VERSIONS_RE.search(built)
    if "No matching distribution found" in built and versions:
        known = [v.strip() for v in versions.group(1).split(",") if v.strip() and v.strip() != "none"]
        if not known:
            return f"{pin.name} is not on the index (no such project, or no version for this Python); check the name"
        shown = ", ".join(known[-5:])
        return (f"no such version on the index (its newest: {shown}); pin one of its versions")
    no_wheel = f"no wheel for {where} on the index, and building one from its sdist"
    fix = "pin a version that has wheels for it"
    header = HEADER_RE.search(built)
    if header:
        return f"{no_wheel} needs C headers that are not installed ({header.group(1)}); {fix}"
    dev = DEV_PACKAGES_RE.search(built)
    if dev:
        return f"{no_wheel} needs the {dev.group(1)} development headers, which are not installed; {fix}"
    for compiler_re in COMPILER_RES:
        found = compiler_re.search(built)
        if found:
            name = next(g for g in found.groups() if g)
            return f"{no_wheel} needs a compiler that is not installed ({name}); {fix}"
    return f"pip failed: {last_meaningful(built)}"
