"""presubmit: run the [Hook Scripts] of a repohooks PRESUBMIT.cfg locally, as `repo upload` would.

For dependent repos and CI that do not use `repo upload`. Each hook runs in the project
root (the git top level of the file's directory) with `${PRESUBMIT_FILES}` (the files
changed by the commits not yet upstream, or by HEAD when there is no upstream, plus
uncommitted changes; absolute paths, one argument each) and `${PRESUBMIT_PROJECT}`
(`$REPO_PROJECT` if set, else the project directory's name) substituted. [Hook Overrides]
configures repohooks' built-in hooks, which only `repo upload` runs.
"""

from __future__ import annotations

import argparse
import configparser
import os
import shlex
import sys
import time
from typing import Sequence

from cros_venv import procs
from cros_venv.errors import InputError

PROG = "presubmit"


def git(root: str, *args: str) -> bytes | None:
    """git's output as bytes (file names are bytes), or None if it failed."""
    out = procs.run(["git", *args], cwd=root)
    return out.stdout if out.returncode == 0 else None


def project_root(cfg: str) -> str:
    directory = os.path.dirname(os.path.abspath(cfg))
    out = git(directory, "rev-parse", "--show-toplevel")
    return os.fsdecode(out.rstrip(b"\n")) if out else directory


def changed_files(root: str) -> list[str]:
    """Absolute paths of the files changed upstream..HEAD (or by HEAD) and uncommitted.

    `-z`: without it git quotes names with non-ASCII bytes, quotes or newlines ("s\\303\\274.py").
    Names are bytes, decoded as the file system does, so they reach hooks byte for byte.
    """
    def names(*args: str) -> list[str]:
        out = git(root, "diff", "-z", "--name-only", *args)
        return [os.fsdecode(n) for n in out.split(b"\0") if n] if out else []

    if git(root, "rev-parse", "--verify", "-q", "@{upstream}"):
        found = names("@{upstream}...HEAD")
    else:
        found = names("HEAD~1", "HEAD")
    found += names("HEAD")  # uncommitted changes
    files = dict.fromkeys(os.path.join(root, n) for n in found)
    return [f for f in files if os.path.exists(f)]


class HookError(Exception):
    """A hook command that cannot be run as written; the message says why and the fix."""


def expand(command: str, files: list[str], project: str) -> list[str]:
    """repohooks' substitution: a lone ${PRESUBMIT_FILES} becomes one argument per file."""
    try:
        tokens = shlex.split(command)
    except ValueError as e:  # "No closing quotation", "No escaped character"
        raise HookError(f"cannot split the command: {str(e).lower()}; close the quote") from None
    out: list[str] = []
    for token in tokens:
        if token == "${PRESUBMIT_FILES}":
            out += files
        else:
            out.append(token.replace("${PRESUBMIT_FILES}", " ".join(files)).replace("${PRESUBMIT_PROJECT}", project))
    return out


def run_hook(name: str, command: str, files: list[str], project: str, root: str) -> tuple[int, str]:
    """(exit code, output) of one hook; output that is not UTF-8 is shown with U+FFFD."""
    try:
        argv = expand(command, files, project)
        if not argv:
            raise HookError(f"the command is empty; write the command to run after '{name} ='")
        result = procs.run(argv, cwd=root)
    except HookError as e:
        return 2, f"{e}\n"
    except OSError as e:
        return 127, f"cannot run {command!r}: {e.strerror}\n"
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")


def read_config(path: str) -> configparser.ConfigParser:
    """The repohooks file at `path` (InputError if it cannot be read or parsed)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}:0: cannot read it: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]  # hook names keep their case
    try:
        cfg.read_string(text, source=path)
    except configparser.Error as e:
        raise InputError(f"{path}:{_line(e)}: not a repohooks config: {' '.join(str(e).split())}") from None
    if not cfg.has_section("Hook Scripts"):
        raise InputError(f"{path}:0: has no [Hook Scripts] section; add one with NAME = COMMAND lines")
    return cfg


def _line(error: configparser.Error) -> int:
    """The line configparser's error is about (0 if it does not say)."""
    lineno = getattr(error, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    errors = getattr(error, "errors", None)  # ParsingError: [(lineno, line), ...]
    return errors[0][0] if errors and isinstance(errors[0][0], int) else 0


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default="PRESUBMIT.cfg", help="repohooks file (default: ./PRESUBMIT.cfg)")
    args = p.parse_args(argv)
    cfg = read_config(args.config)
    root = project_root(args.config)
    files = changed_files(root)
    project = os.environ.get("REPO_PROJECT") or os.path.basename(root)
    failed = []
    for name, command in cfg.items("Hook Scripts"):
        start = time.monotonic()
        code, output = run_hook(name, command, files, project, root)
        status = "PASS" if code == 0 else "FAIL"
        print(f"[{status}] {name} ({time.monotonic() - start:.1f}s): {command}")
        if code != 0:
            failed.append(name)
            print("".join(f"    {line}\n" for line in output.rstrip().splitlines()), end="")
    if failed:
        print(f"{PROG}: {len(failed)} hook{'s' if len(failed) != 1 else ''} failed: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0
