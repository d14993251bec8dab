#!/usr/bin/env python3
"""A/B: two versions of create_venv on the benchmark's wheel set, interleaved.

    python3 bench/ab.py REV_A [REV_B] [--rounds N] [--python PATH]

REV_B defaults to the working tree. Each version is laid out with `git archive` in the
scratch directory (bench/.scratch/ab-REV), with the wheel set of bench.py added to its
pip_packages/. Each round times, for A then B (B then A on odd rounds): a cold build (its
own empty cache, new directory), a warm one (new directory, the version's own warm cache),
a rebuild (`rm -rf`, then build on the same path; the deletion is not timed) and ten no-op
runs. Nothing else is deleted until the end (see bench.py on ext4's recently freed inodes).
Prints medians and B/A.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402


def lay_out(rev: str | None, scratch: Path, wheels: Path) -> Path:
    """A copy of this repo at `rev` (None: the working tree) with the wheel set added."""
    dest = scratch / f"ab-{rev or 'worktree'}"
    shutil.rmtree(dest, ignore_errors=True)
    if rev is None:
        bench.make_repo(dest, wheels)
        return dest
    data = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest)  # our own repository's archive
    for w in wheels.glob("*.whl"):
        if not (dest / "pip_packages" / w.name).exists():
            os.link(w, dest / "pip_packages" / w.name)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b", nargs="?")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="cold,warm,rebuild,no-op", help="the scenarios to time, comma-separated")
    parser.add_argument("--python", default=bench.DEFAULT_PYTHON if os.path.exists(bench.DEFAULT_PYTHON)
                        else sys.executable)
    args = parser.parse_args()
    scratch = (REPO / "bench" / ".scratch").resolve()
    wheels, _, _, reqs = bench.prepare(scratch, args.python)
    versions = {"A": lay_out(args.a, scratch, wheels), "B": lay_out(args.b, scratch, wheels)}
    runs = scratch / f"ab-runs-{uuid.uuid4().hex[:8]}"
    runs.mkdir()
    env_path = f"{os.path.dirname(args.python)}:{os.environ.get('PATH', '')}"
    times: dict[tuple[str, str], list[float]] = {}

    def run(label: str, scenario: str, venv_dir: Path, cache: Path, settle: bool = True) -> None:
        env = bench.clean_env(PATH=env_path, CROS_VENV_CACHE=str(cache))
        cmd = [[str(versions[label] / "create_venv"), str(venv_dir), str(reqs)]]
        times.setdefault((label, scenario), []).append(bench.timed(cmd, env, settle)[0])

    for label in versions:  # warm caches, the no-op venvs and the rebuild paths
        for name in ("prime", "noop", "rebuild"):
            bench.timed([[str(versions[label] / "create_venv"), str(runs / f"{name}-{label}"), str(reqs)]],
                        bench.clean_env(PATH=env_path, CROS_VENV_CACHE=str(runs / f"cache-{label}")))
    only = args.only.split(",")
    for rnd in range(args.rounds):
        for label in (("A", "B") if rnd % 2 == 0 else ("B", "A")):
            cache = runs / f"cache-{label}"
            if "cold" in only:
                run(label, "cold", runs / f"cold-{uuid.uuid4().hex[:8]}", runs / f"cold-cache-{uuid.uuid4().hex[:8]}")
            if "warm" in only:
                run(label, "warm", runs / f"warm-{uuid.uuid4().hex[:8]}", cache)
            for _ in range(10 if "no-op" in only else 0):
                run(label, "no-op", runs / f"noop-{label}", cache, settle=False)
        for label in (("A", "B") if rnd % 2 == 0 and "rebuild" in only else ("B", "A") if "rebuild" in only
                      else ()):
            os.sync()
            time.sleep(0.2)
            shutil.rmtree(runs / f"rebuild-{label}")
            run(label, "rebuild", runs / f"rebuild-{label}", runs / f"cache-{label}", settle=False)
        print(f"ab: round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    shutil.rmtree(runs, ignore_errors=True)

    print(f"\nA = {args.a}, B = {args.b or 'working tree'}; {args.rounds} interleaved rounds, medians "
          f"({time.strftime('%Y-%m-%d %H:%M')})\n")
    print("| scenario | A | B | B ÷ A |\n|---|---|---|---|")
    for scenario in only:
        a, b = (statistics.median(times[(label, scenario)]) * 1000 for label in ("A", "B"))
        print(f"| {scenario} | {a:.1f} ms | {b:.1f} ms | {b / a:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
