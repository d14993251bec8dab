"""procs: the one seam for child processes (forks, started programs, first lines with a deadline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cros_venv import procs
from tests.conftest import REPO


def gone(pid: int) -> bool:
    """Was `pid`, a child of this process, reaped? (A zombie or a running child is not.)"""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


# -- first_line --------------------------------------------------------------------------------


def test_first_line_is_the_answer_without_its_newline() -> None:
    assert procs.first_line(["/bin/sh", "-c", "echo '  /usr/bin/python3  '"]) == "/usr/bin/python3"


def test_more_lines_after_the_answer_do_not_fail_the_program() -> None:
    """The pipe stays open until it exits: its later lines are no SIGPIPE (a failure)."""
    for _ in range(20):  # the race this guards against: the reader closing the pipe early
        assert procs.first_line(["/bin/sh", "-c", "echo /usr/bin/python3; sleep 0.01; echo more"]) == "/usr/bin/python3"


def test_first_line_of_a_program_that_prints_nothing_is_none() -> None:
    assert procs.first_line(["/bin/sh", "-c", "exit 0"]) is None


def test_first_line_of_a_program_that_fails_is_none() -> None:
    assert procs.first_line(["/bin/sh", "-c", "echo /usr/bin/python3; exit 3"]) is None


def test_first_line_of_a_program_that_cannot_run_is_none(tmp_path: Path) -> None:
    assert procs.first_line([str(tmp_path / "missing"), "-c", "pass"]) is None


@pytest.mark.parametrize("answers", [False, True], ids=["silent", "answers"])
def test_a_program_that_never_exits_is_killed_after_the_deadline(tmp_path: Path, answers: bool) -> None:
    pid_file = tmp_path / "pid"
    say = "echo /usr/bin/python3; " if answers else ""
    start = time.monotonic()
    assert procs.first_line(["/bin/sh", "-c", f"echo $$ > {pid_file}; {say}exec sleep 60"],
                            timeout=0.5, grace=0.3) is None
    assert time.monotonic() - start < 5
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped: its pid is free again
        os.kill(pid, 0)


def test_reading_stops_at_the_first_newline_even_if_the_pipe_stays_open() -> None:
    """A wrapper that leaves a process behind holding stdout (a pyenv shim's helper)."""
    start = time.monotonic()
    assert procs.first_line(["/bin/sh", "-c", "sleep 30 & echo /usr/bin/python3"], timeout=60) == "/usr/bin/python3"
    assert time.monotonic() - start < 15  # not until the leftover sleep ends (30 s)


# -- run, spawn --------------------------------------------------------------------------------


def test_run_captures_output_and_leaves_the_status_to_the_caller(tmp_path: Path) -> None:
    out = procs.run(["/bin/sh", "-c", "pwd; echo err >&2; exit 4"], cwd=str(tmp_path))
    assert (out.returncode, out.stdout, out.stderr) == (4, os.fsencode(tmp_path) + b"\n", b"err\n")
    text = procs.run_text(["/bin/sh", "-c", 'echo "$X"'], env={"X": "from env"})
    assert (text.returncode, text.stdout) == (0, "from env\n")


def test_run_gives_the_child_an_empty_stdin_when_asked() -> None:
    assert procs.run_text(["/bin/sh", "-c", "cat; echo end"], stdin_null=True).stdout == "end\n"


def test_run_kills_a_child_past_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(procs.Timeout, match="did not finish in 0.3 s"):
        procs.run(["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], timeout=0.3)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_run_of_a_missing_program_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        procs.run([str(tmp_path / "missing")])


def test_spawn_merges_output_passes_only_the_given_descriptors(tmp_path: Path) -> None:
    kept = os.open(tmp_path / "kept", os.O_RDWR | os.O_CREAT)
    other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)
    try:
        code = ("import os, sys; print('out'); print('err', file=sys.stderr, flush=True); "
                "print([fd for fd in (int(sys.argv[1]), int(sys.argv[2])) if os.path.exists(f'/proc/self/fd/{fd}')])")
        proc = procs.spawn([sys.executable, "-c", code, str(kept), str(other)], os.environ, (kept,))
        out, _ = proc.communicate()
    finally:
        os.close(kept)
        os.close(other)
    assert proc.returncode == 0
    assert sorted(out.decode().splitlines()) == sorted(["out", "err", f"[{kept}]"])


# -- forks -------------------------------------------------------------------------------------


def test_forked_collects_the_functions_output_and_status() -> None:
    def child() -> int:  # os.write: pytest has replaced sys.stdout
        os.write(1, b"to stdout\n")
        os.write(2, b"to stderr\n")
        return 5

    forked = procs.Forked(child)
    out, _ = forked.communicate()
    assert forked.returncode == 5
    assert sorted(out.decode().splitlines()) == ["to stderr", "to stdout"]
    assert gone(forked.pid)


def test_a_fork_whose_function_raises_exits_1() -> None:
    def child() -> int:
        raise RuntimeError("boom")

    forked = procs.Forked(child)
    forked.communicate()
    assert forked.returncode == 1


def test_fork_is_refused_while_another_thread_runs() -> None:
    assert procs.can_fork()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not procs.can_fork()
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("with_proc", [True, False], ids=["proc", "no-proc"])
def test_a_forked_child_keeps_only_the_descriptors_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                with_proc: bool) -> None:
    """Workers and the template maker must not hold the venv's lock (or anything else)."""
    if not with_proc:
        listdir = os.listdir

        def no_proc(path: str = ".") -> list[str]:
            if path == "/proc/self/fd":
                raise FileNotFoundError(path)
            return listdir(path)

        monkeypatch.setattr(os, "listdir", no_proc)
    lock = os.open(tmp_path / "venv.lock", os.O_RDWR | os.O_CREAT)
    read, write = os.pipe()

    def child() -> int:
        procs.close_all_but(write)
        still_open = []
        for fd in (lock, read):
            try:
                os.fstat(fd)
                still_open.append(fd)
            except OSError:
                pass
        os.write(write, json.dumps(still_open).encode())
        return 0

    pid = procs.fork(child)
    os.close(write)
    answer = os.read(read, 1000)
    _, status = os.waitpid(pid, 0)
    os.close(read)
    os.close(lock)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(answer) == []


def test_importing_it_costs_nothing_but_os() -> None:
    """fastpath (the no-op path) may use first_line: no subprocess, typing, signal or threading."""
    code = ("import os, sys; before = set(sys.modules); sys.path.insert(0, sys.argv[1]); import cros_venv.procs; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(REPO)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["__future__", "cros_venv", "cros_venv.procs"]
