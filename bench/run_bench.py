#!/usr/bin/env python3
"""Benchmark bin/python_venv (and `create_venv REQUIREMENTS`) against `uv run` and the venv's own python.

    python3 bench/run_bench.py [--python PATH] [--rounds N] [--scratch DIR]

A PEP 723 script that imports two small packages, its spec up to date (the shared venv
built, uv's cache warm), run by:
  direct        the shared venv's bin/python script.py (the floor: no wrapper)
  python_venv   python -I -S bin/python_venv script.py (the spec from the PEP 723 block)
  python_venv -r  the same with `-r requirements.txt`
  uv run        uv run --offline --no-index --find-links WHEELS -p PYTHON script.py
and the shared venv's lookup alone (`create_venv REQUIREMENTS`, which prints its path).

Two methods, both printed: interleaved (each round runs every command once, `sync` and a
pause before each) and back to back (each command N times in a row, nothing between).
The wheels and uv are downloaded into the scratch directory (bench/.scratch by default,
git-ignored, shared with bench.py) on first use; every timed run is offline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import DEFAULT_PYTHON, clean_env, make_repo, prepare  # noqa: E402

PACKAGES = ("six", "cachetools")  # two small pure-Python packages of the bench set (each imports in ~1 ms)


def run(cmd: list[str], env: dict[str, str], settle: bool) -> float:
    if settle:
        os.sync()
        time.sleep(0.2)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or proc.stdout.strip() != "ok":
        raise SystemExit(f"run_bench: {' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=DEFAULT_PYTHON if os.path.exists(DEFAULT_PYTHON) else sys.executable)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--scratch", type=Path, default=HERE / ".scratch")
    args = parser.parse_args()
    python: str = args.python
    scratch: Path = args.scratch.resolve()
    wheels, tools, _, _ = prepare(scratch, python)
    repo = make_repo(scratch / "run-repo", wheels)
    work = scratch / "run-work"
    work.mkdir(exist_ok=True)
    pins = []
    for name in PACKAGES:
        found = sorted(wheels.glob(f"{name}-*.whl"))
        if not found:
            raise SystemExit(f"run_bench: no {name} wheel in {wheels}")
        pins.append(f"{name}=={found[-1].name.split('-')[1]}")
    script = work / "script.py"
    block = "".join(f'#   "{p}",\n' for p in pins)
    script.write_text(f"# /// script\n# requires-python = \">=3.9\"\n# dependencies = [\n{block}# ]\n# ///\n"
                      f"import {', '.join(PACKAGES)}\nprint('ok')\n")
    reqs = work / "requirements.txt"
    reqs.write_text("".join(p + "\n" for p in pins))
    cache, uv_cache = work / "cache", work / "uv-cache"
    env = clean_env(CROS_VENV_CACHE=str(cache), PATH=f"{os.path.dirname(python)}:{os.environ.get('PATH', '')}")
    uv = str(tools / "bin" / "uv")
    create = [python, "-I", "-S", str(repo / "create_venv"), str(reqs)]
    venv = subprocess.run(create, env=env, capture_output=True, text=True, check=True).stdout.strip()
    wrapper = [python, "-I", "-S", str(repo / "bin" / "python_venv")]
    commands = {
        "direct: VENV/bin/python script.py": [f"{venv}/bin/python", str(script)],
        "python_venv script.py (PEP 723)": [*wrapper, str(script)],
        "python_venv -r requirements.txt script.py": [*wrapper, "-r", str(reqs), str(script)],
        "uv run script.py (PEP 723)": [uv, "run", "-q", "--offline", "--no-index", "--find-links", str(wheels),
                                       "--cache-dir", str(uv_cache), "-p", python, str(script)],
    }
    for cmd in commands.values():  # up to date before timing
        run(cmd, env, settle=False)
    lookup = [*create]
    interleaved: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, cmd in commands.items():
            interleaved.setdefault(name, []).append(run(cmd, env, settle=True))
    back: dict[str, list[float]] = {}
    for name, cmd in commands.items():
        back[name] = [run(cmd, env, settle=False) for _ in range(args.rounds)]
    lookups = []
    for _ in range(args.rounds):
        os.sync()
        time.sleep(0.1)
        start = time.perf_counter()
        out = subprocess.run(lookup, env=env, capture_output=True, text=True, check=True).stdout.strip()
        lookups.append(time.perf_counter() - start)
        assert out == venv, (out, venv)

    def med(values: list[float]) -> float:
        return statistics.median(values) * 1000

    version = subprocess.check_output([python, "-c", "import platform; print(platform.python_version())"], text=True)
    print(f"\nA PEP 723 script importing {' and '.join(PACKAGES)}, spec up to date, CPython {version.strip()}, "
          f"{os.cpu_count()} cores, medians of {args.rounds}, {time.strftime('%Y-%m-%d')}\n")
    print("| command | interleaved | back to back |")
    print("|---|---|---|")
    for name in commands:
        print(f"| {name} | {med(interleaved[name]):.1f} ms | {med(back[name]):.1f} ms |")
    direct, uv_name = "direct: VENV/bin/python script.py", "uv run script.py (PEP 723)"
    for name in list(commands)[1:3]:
        print(f"\n{name}: overhead over direct {med(interleaved[name]) - med(interleaved[direct]):.1f} ms "
              f"interleaved, {med(back[name]) - med(back[direct]):.1f} ms back to back; "
              f"÷ uv run {med(interleaved[name]) / med(interleaved[uv_name]):.2f}× interleaved, "
              f"{med(back[name]) / med(back[uv_name]):.2f}× back to back")
    print(f"\ncreate_venv REQUIREMENTS (the shared venv exists; prints its path): {med(lookups):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
