#!/usr/bin/env python3
"""Benchmark create_venv against python -m venv + pip, virtualenv + pip, and uv.

    python3 bench/bench.py [--python PATH] [--rounds N] [--scratch DIR]

The one online step: the wheel set and the peers (uv, virtualenv) are downloaded into a
scratch directory (default bench/.scratch, git-ignored; never committed). Every timed run
is offline: local wheels only. Runs are interleaved (each round runs every tool once per
scenario) and the table shows medians. Prints a Markdown table for the README.

Scenarios (pip is installed in every venv):
  cold    empty caches, new venv directory
  warm    the same wheels seen before (caches kept), new venv directory
  rebuild warm, but on the same path each time, the previous venv deleted just before the
          run (`rm -rf .venv && ./create_venv ...`; the deletion itself is not timed)
  no-op   the venv is already up to date (pip: `pip install -r` again; uv: `uv pip sync`)

Every timed run gets the same small environment (`clean_env`: PATH, HOME, the locale and
little else), not this process's: the machine's own settings would be timed, not the tools.

Methods, all printed. "Interleaved" (cold, warm, no-op): each round runs every tool once
per scenario, with `sync` and a short pause before each run (so that no run pays for
another's writeback), and nothing is deleted until every run is done. ext4's inode
allocator skips inodes freed in the last minute (fs/ext4/ialloc.c, recently_deleted; it
checks that when the file system has no journal, as on this machine), so deleting one run's
~8,000 files made the next run's file creation several times slower (perf: find_inode_bit
and recently_deleted at the top), and more so with every round: a measure of the
deletions, not of the tools. "Rebuild" includes that on purpose, since it is what
a user who deletes .venv and builds again waits for: `sync` and a pause, then the previous
venv is deleted, then the timed run starts at once; uv and create_venv alternate (in
turn first), the pip-based tools run after them (their deletions would otherwise
precede the fast tools' runs). It runs last so that its deletions touch no other figure.
"Back to back": for uv and create_venv only, the same command run N times in a row with
nothing in between (as hyperfine or a shell loop would time it: each run also pays for
the writeback the previous one left). "Direct": uv's warm commands timed with
time.perf_counter around the two subprocess.run calls and nothing else, alternating with
this harness on the same kind of new directory: what the harness itself adds.

uv queries every interpreter it has not seen at that path (it runs the venv's python once
and caches the answer under the path), so in a new directory `uv pip install -p
DIR/bin/python` starts Python once more than it does when the same path is rebuilt: most
of the difference between the warm and rebuild rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cros_venv import toolchain  # noqa: E402

# A realistic set for an infra repo: HTTP, protobuf/gRPC-era Google libraries, crypto, XML, tests.
PACKAGES = [
    "requests", "protobuf", "cryptography", "lxml", "pytest", "google-auth", "googleapis-common-protos",
    "pyyaml", "python-dateutil", "attrs", "jinja2", "click", "psutil", "mock", "tabulate", "six",
    "cachetools", "wrapt", "pyparsing",
]
DEFAULT_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3"

Run = Callable[[Path, Path], list[list[str]]]  # (venv dir, cache dir) -> commands


KEPT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TERM", "TMPDIR")


def clean_env(**extra: str) -> dict[str, str]:
    """What a user's shell would have: only KEPT of this process's environment, no pip
    config. Nothing else: a machine's own settings would time it, not the tools (with
    SSL_CERT_DIR set, as on this project's machine, every uv call reads each certificate in
    that directory even offline, ~5 ms a call; pip reads PIP_* and its config files)."""
    env = {k: v for k, v in os.environ.items() if k in KEPT}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def online_env() -> dict[str, str]:
    """For the one online step (downloading the wheel set and the peers): this process's
    environment (a proxy's CA bundle, ...) without pip's and uv's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUALENV_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def timed(commands: list[list[str]], env: dict[str, str], settle: bool = True) -> tuple[float, float]:
    """(seconds, peak RSS in MiB of any process) for running `commands` one after another.

    `settle`: sync and pause first, so that this run does not pay for the last one's writeback.
    """
    if settle:
        os.sync()  # let the previous run's writes and deletes settle: this disk's metadata cost varies a lot
        time.sleep(0.2)
    start = time.perf_counter()
    peak = 0
    for cmd in commands:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}):\n{err}")
        if proc.stderr:
            proc.stderr.close()
        peak = max(peak, usage.ru_maxrss)
    return time.perf_counter() - start, peak / 1024


def make_repo(repo: Path, wheels: Path) -> Path:
    """A scratch copy of this repo whose pip_packages/ also holds the benchmark's wheels."""
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "pip_packages").mkdir(parents=True)
    shutil.copy2(REPO / "create_venv", repo / "create_venv")
    shutil.copytree(REPO / "cros_venv", repo / "cros_venv", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "bin", repo / "bin", symlinks=True)
    for w in [*(REPO / "pip_packages").glob("*.whl"), *wheels.glob("*.whl")]:
        if not (repo / "pip_packages" / w.name).exists():
            try:
                os.link(w, repo / "pip_packages" / w.name)
            except OSError:  # a scratch directory on another file system
                shutil.copy2(w, repo / "pip_packages" / w.name)
    return repo


def fill(directory: Path, prefix: str, count: int) -> None:
    """`count` small valid wheels that no requirements file names."""
    for i in range(count):
        name = f"{prefix}{i:03d}"
        with zipfile.ZipFile(directory / f"{name}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"{name}.py", "")
            zf.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
            zf.writestr(f"{name}-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            zf.writestr(f"{name}-1.0.dist-info/RECORD", "")


def prepare(scratch: Path, python: str) -> tuple[Path, Path, Path, Path]:
    """Wheel set, peers and a scratch copy of this repo whose pip_packages holds the set."""
    wheels = scratch / "wheels"
    if not wheels.is_dir() or not any(wheels.glob("*.whl")):
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels), *PACKAGES],
                       check=True, env=online_env())
        shutil.copy2(REPO / "pip_packages" / toolchain.PIP, wheels / toolchain.PIP)
    tools = scratch / "tools"
    if not (tools / "bin" / "uv").exists():
        subprocess.run([python, "-m", "venv", str(tools)], check=True)
        subprocess.run([str(tools / "bin/python"), "-m", "pip", "install", "-q", "uv", "virtualenv"],
                       check=True, env=online_env())
    repo = make_repo(scratch / "repo", wheels)
    reqs = scratch / "requirements.txt"
    pins = []
    for w in sorted(wheels.glob("*.whl")):
        name, version = w.name.split("-")[:2]
        pins.append(f"{name}=={version}\n")
    reqs.write_text("".join(pins))
    return wheels, tools, repo, reqs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=DEFAULT_PYTHON if os.path.exists(DEFAULT_PYTHON) else sys.executable)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scratch", type=Path, default=REPO / "bench" / ".scratch")
    args = parser.parse_args()
    python: str = args.python
    scratch: Path = args.scratch.resolve()
    wheels, tools, repo, reqs = prepare(scratch, python)
    n_wheels = len(list(wheels.glob("*.whl")))
    size = sum(w.stat().st_size for w in wheels.glob("*.whl")) / 2**20
    files = sum(len(zipfile.ZipFile(w).namelist()) for w in wheels.glob("*.whl"))
    runs = scratch / "runs"
    trash: list[Path] = []  # deleted at the end (see the docstring)
    if runs.exists():  # a previous run's files: moved aside now, deleted at the end
        old = scratch / f"runs-old-{uuid.uuid4().hex[:8]}"
        runs.rename(old)
        trash.append(old)
    trash.extend(scratch.glob("runs-old-*"))
    runs.mkdir()
    W, R, uv = str(wheels), str(reqs), str(tools / "bin" / "uv")
    pip_args = ["-m", "pip", "install", "-q", "--no-index", "--find-links", W, "-r", R]

    peers: dict[str, dict[str, Run]] = {
        "python -m venv + pip install --no-index": {
            "build": lambda d, c: [[python, "-m", "venv", str(d)], [str(d / "bin/python"), *pip_args]],
            "noop": lambda d, c: [[str(d / "bin/python"), *pip_args]],
        },
        "virtualenv + pip": {
            "build": lambda d, c: [[str(tools / "bin/virtualenv"), "-q", "--no-periodic-update", "--app-data", str(c),
                                    "-p", python, str(d)], [str(d / "bin/python"), *pip_args]],
            "noop": lambda d, c: [[str(d / "bin/python"), *pip_args]],
        },
        "uv venv + uv pip install --offline": {
            "build": lambda d, c: [[uv, "venv", "-q", "--cache-dir", str(c), "-p", python, str(d)],
                                   [uv, "pip", "install", "-q", "--cache-dir", str(c), "--offline", "--no-index",
                                    "--find-links", W, "-r", R, "-p", str(d / "bin/python")]],
            "noop": lambda d, c: [[uv, "pip", "sync", "-q", "--cache-dir", str(c), "--offline", "--no-index",
                                   "--find-links", W, R, "-p", str(d / "bin/python")]],
        },
        "create_venv": {
            "build": lambda d, c: [[str(repo / "create_venv"), str(d), R]],
            "noop": lambda d, c: [[str(repo / "create_venv"), str(d), R]],
        },
    }
    uv_name = "uv venv + uv pip install --offline"
    env_path = f"{os.path.dirname(python)}:{os.environ.get('PATH', '')}"
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for rnd in range(args.rounds):
        for name, run in peers.items():
            warm_cache = runs / f"cache-{abs(hash(name))}"
            for scenario in ("cold", "warm", "noop"):
                venv_dir = runs / f"venv-{uuid.uuid4().hex[:8]}"
                cache = runs / f"cold-{uuid.uuid4().hex[:8]}" if scenario == "cold" else warm_cache
                env = clean_env(PATH=env_path, CROS_VENV_CACHE=str(cache))
                if scenario == "noop":
                    venv_dir = runs / f"noop-{abs(hash(name))}"
                    if not venv_dir.exists():
                        timed(run["build"](venv_dir, cache), env)
                    results.setdefault((name, scenario), []).append(timed(run["noop"](venv_dir, cache), env))
                else:
                    if scenario == "warm" and not cache.exists():
                        timed(run["build"](runs / f"prime-{uuid.uuid4().hex[:8]}", cache), env)
                    results.setdefault((name, scenario), []).append(timed(run["build"](venv_dir, cache), env))
                    trash.append(venv_dir)
                    if scenario == "cold":
                        trash.append(cache)
        print(f"bench: round {rnd + 1}/{args.rounds} done", file=sys.stderr)

    # The second method: back to back, no sync or pause between runs.
    back_to_back: dict[tuple[str, str], list[float]] = {}
    for name in ("uv venv + uv pip install --offline", "create_venv"):
        run = peers[name]
        cache = runs / f"cache-{abs(hash(name))}"
        env = clean_env(PATH=env_path, CROS_VENV_CACHE=str(cache))
        noop_dir = runs / f"noop-{abs(hash(name))}"
        os.sync()
        for _ in range(args.rounds * 2):
            venv_dir = runs / f"b2b-{uuid.uuid4().hex[:8]}"
            b2b_warm = timed(run["build"](venv_dir, cache), env, settle=False)[0]
            back_to_back.setdefault((name, "warm"), []).append(b2b_warm)
            trash.append(venv_dir)
        for _ in range(args.rounds * 2):
            b2b_noop = timed(run["noop"](noop_dir, cache), env, settle=False)[0]
            back_to_back.setdefault((name, "noop"), []).append(b2b_noop)

    print("bench: back to back done", file=sys.stderr)

    # "Direct": uv's warm commands with nothing but perf_counter around the two subprocess.run
    # calls (no sync, no pause, no wait4, no pipe), alternating with the harness, new dirs both.
    uv_cache = runs / f"cache-{abs(hash(uv_name))}"
    uv_env = clean_env(PATH=env_path, CROS_VENV_CACHE=str(uv_cache))
    bare: list[float] = []
    harness: list[float] = []
    os.sync()
    for _ in range(args.rounds * 2):
        venv_dir = runs / f"bare-{uuid.uuid4().hex[:8]}"
        commands = peers[uv_name]["build"](venv_dir, uv_cache)
        start = time.perf_counter()
        for cmd in commands:
            subprocess.run(cmd, env=uv_env, check=True)
        bare.append(time.perf_counter() - start)
        trash.append(venv_dir)
        venv_dir = runs / f"harness-{uuid.uuid4().hex[:8]}"
        harness.append(timed(peers[uv_name]["build"](venv_dir, uv_cache), uv_env, settle=False)[0])
        trash.append(venv_dir)

    # The no-op does not grow with pip_packages/: the same venv, interleaved, from a copy of
    # the repo with 500 unrelated wheels added.
    repo500 = make_repo(scratch / "repo500", wheels)
    fill(repo500 / "pip_packages", "unrelated", 500)
    noop_env = clean_env(PATH=env_path, CROS_VENV_CACHE=str(runs / "cache-noop"))
    base: list[float] = []
    more: list[float] = []
    for r in (repo, repo500):
        timed([[str(r / "create_venv"), str(runs / f"noop-{r.name}"), R]], noop_env)
    for _ in range(args.rounds * 4):
        for r, out in ((repo, base), (repo500, more)):
            out.append(timed([[str(r / "create_venv"), str(runs / f"noop-{r.name}"), R]], noop_env)[0])

    # check_requirements on a 100-wheel pip_packages/: the first run reads every zip, later
    # runs only stat what they read before.
    fill(repo / "pip_packages", "filler", 100 - len(list((repo / "pip_packages").glob("*.whl"))))
    check_env = clean_env(PATH=env_path, CROS_VENV_CACHE=str(runs / "cache-check"))
    check_cmd = [[str(repo / "bin" / "check_requirements"), R]]
    n_check = len(list((repo / "pip_packages").glob("*.whl")))
    first_check = timed(check_cmd, check_env)[0]
    checks = [timed(check_cmd, check_env)[0] for _ in range(args.rounds)]

    # "Rebuild": `rm -rf .venv && ./create_venv ...`, last, since it deletes on purpose. Each
    # tool's venv is built once untimed at its path, so every timed run follows a deletion.
    # uv and create_venv alternate which goes first; the slow pip-based tools run after them.
    fast = [uv_name, "create_venv"]
    slow = [n for n in peers if n not in fast]
    order = [fast if rnd % 2 == 0 else fast[::-1] for rnd in range(args.rounds)] + [slow] * args.rounds
    for name in peers:
        cache = runs / f"cache-{abs(hash(name))}"
        timed(peers[name]["build"](runs / f"rebuild-{abs(hash(name))}", cache),
              clean_env(PATH=env_path, CROS_VENV_CACHE=str(cache)))
    for names_in_turn in order:
        for name in names_in_turn:
            cache = runs / f"cache-{abs(hash(name))}"
            venv_dir = runs / f"rebuild-{abs(hash(name))}"
            env = clean_env(PATH=env_path, CROS_VENV_CACHE=str(cache))
            os.sync()  # as in `timed`: the last run's writeback settles, then the deletion, then the run
            time.sleep(0.2)
            shutil.rmtree(venv_dir)
            results.setdefault((name, "rebuild"), []).append(timed(peers[name]["build"](venv_dir, cache), env,
                                                                    settle=False))
    trash.extend(runs / f"rebuild-{abs(hash(name))}" for name in peers)
    print("bench: rebuild done", file=sys.stderr)

    for path in set(trash):
        shutil.rmtree(path, ignore_errors=True)

    def med(name: str, scenario: str, i: int = 0) -> float:
        return statistics.median(r[i] for r in results[(name, scenario)])

    version = subprocess.check_output([python, "-c", "import platform; print(platform.python_version())"], text=True)
    print(f"\n{n_wheels} wheels ({size:.0f} MB, {files:,} files), pip in every venv, "
          f"CPython {version.strip()}, {os.cpu_count()} cores, medians of {args.rounds} runs per cell, "
          f"{time.strftime('%Y-%m-%d')}\n")
    names = list(peers)
    print("| scenario | " + " | ".join(names) + " | create_venv ÷ uv |")
    print("|---" * (len(names) + 2) + "|")
    for scenario, label in (("cold", "cold: empty caches, new venv dir"),
                            ("warm", "warm: wheels seen before, new venv dir"),
                            ("rebuild", "rebuild: warm, same dir, the old venv deleted just before (`rm -rf`)"),
                            ("noop", "no-op: the venv is up to date")):
        cells = []
        for name in names:
            t = med(name, scenario)
            cells.append(f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s")
        ratio = med("create_venv", scenario) / med(uv_name, scenario)
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio:.2f}× |")
    mem = [f"{med(n, 'cold', 1):.0f} MiB" for n in names]
    print("| peak memory (cold) | " + " | ".join(mem) + " | |")
    uv_w, cv_w = (statistics.median(back_to_back[(n, "warm")]) for n in (uv_name, "create_venv"))
    uv_n, cv_n = (statistics.median(back_to_back[(n, "noop")]) for n in (uv_name, "create_venv"))
    print(f"\nBack to back ({args.rounds * 2} runs each, no sync between, medians): warm {cv_w * 1000:.0f} ms vs "
          f"uv {uv_w * 1000:.0f} ms ({cv_w / uv_w:.2f}×); no-op {cv_n * 1000:.1f} ms vs uv {uv_n * 1000:.1f} ms "
          f"({cv_n / uv_n:.2f}×)")
    print(f"uv warm, new dir, timed directly (perf_counter around the two subprocess.run calls only) vs by this "
          f"harness, alternating, {args.rounds * 2} each: {statistics.median(bare) * 1000:.0f} ms vs "
          f"{statistics.median(harness) * 1000:.0f} ms")
    with_500, without = statistics.median(more), statistics.median(base)
    print(f"\nno-op with 500 unrelated wheels added to pip_packages/: {with_500 * 1000:.1f} ms "
          f"vs {without * 1000:.1f} ms without ({with_500 / without:.2f}×)")
    print(f"check_requirements, {n_check} wheels in pip_packages/: {first_check * 1000:.0f} ms with an empty "
          f"cache (every zip opened), {statistics.median(checks) * 1000:.0f} ms after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
