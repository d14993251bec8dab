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
import subprocess
import sys
import time
from typing import Sequence

from cros_venv.errors import InputError

PROG = "presubmit"


def project_root(cfg: str) -> str:
    directory = os.path.dirname(os.path.abspath(cfg))
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=directory, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else directory


def changed_files(root: str) -> list[str]:
    def git(*args: str) -> list[str]:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return out.stdout.split("\n") if out.returncode == 0 else []

    if any(git("rev-parse", "--verify", "-q", "@{upstream}")):
        names = git("diff", "--name-only", "@{upstream}...HEAD")
    else:
        names = git("diff", "--name-only", "HEAD~1", "HEAD")
    names += git("diff", "--name-only", "HEAD")  # uncommitted changes
    files = dict.fromkeys(os.path.join(root, n) for n in names if n)
    return [f for f in files if os.path.exists(f)]


def expand(command: str, files: list[str], project: str) -> list[str]:
    """repohooks' substitution: a lone ${PRESUBMIT_FILES} becomes one argument per file."""
    out: list[str] = []
    for token in shlex.split(command):
        if token == "${PRESUBMIT_FILES}":
            out += files
        else:
            out.append(token.replace("${PRESUBMIT_FILES}", " ".join(files)).replace("${PRESUBMIT_PROJECT}", project))
    return out


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default="PRESUBMIT.cfg", help="repohooks file (default: ./PRESUBMIT.cfg)")
    args = p.parse_args(argv)
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]  # hook names keep their case
    try:
        with open(args.config, encoding="utf-8") as f:
            cfg.read_file(f)
    except OSError as e:
        raise InputError(f"{args.config}:0: cannot read it: {e.strerror}") from None
    except configparser.Error as e:
        raise InputError(f"{args.config}:0: not a repohooks config: {str(e).splitlines()[0]}") from None
    if not cfg.has_section("Hook Scripts"):
        raise InputError(f"{args.config}:0: has no [Hook Scripts] section; add one with NAME = COMMAND lines")
    root = project_root(args.config)
    files = changed_files(root)
    project = os.environ.get("REPO_PROJECT") or os.path.basename(root)
    failed = []
    for name, command in cfg.items("Hook Scripts"):
        start = time.monotonic()
        try:
            result = subprocess.run(expand(command, files, project), cwd=root, capture_output=True, text=True)
            code, output = result.returncode, result.stdout + result.stderr
        except OSError as e:
            code, output = 127, f"cannot run {command!r}: {e.strerror}\n"
        status = "PASS" if code == 0 else "FAIL"
        print(f"[{status}] {name} ({time.monotonic() - start:.1f}s): {command}")
        if code != 0:
            failed.append(name)
            print("".join(f"    {line}\n" for line in output.rstrip().splitlines()), end="")
    if failed:
        print(f"{PROG}: {len(failed)} hook{'s' if len(failed) != 1 else ''} failed: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0
