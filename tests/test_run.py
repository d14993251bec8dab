"""bin/python_venv: python in the shared venv of a spec, exec'd in place."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from cros_venv import run
from tests.conftest import PYTHON, ToolRepo

pytestmark = pytest.mark.e2e

REQS = "alpha==1.0\nbeta==1.0\n"


@pytest.fixture
def repo(wheelhouse: ToolRepo, tmp_path: Path) -> ToolRepo:
    return ToolRepo(wheelhouse.root, tmp_path / "cache")


def python_venv(repo: ToolRepo, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), *args], env=env or repo.env(),
                          capture_output=True, text=True, timeout=120, cwd=cwd, input=input)


def test_runs_code_in_the_venv_and_passes_everything_through(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    code = ("import sys, os, alpha; print(alpha.VERSION, sys.prefix); print(sys.stdin.read().upper()); "
            "print('to stderr', file=sys.stderr); print(os.environ['CROS_VENV_SPEC_PATH'], "
            "os.environ['CROS_VENV_DEPTH'], os.environ['MY_VAR']); sys.exit(7)")
    result = python_venv(repo, "-r", str(reqs), "--", "-c", code, env=repo.env(MY_VAR="kept", PIP_NO_INDEX="x"),
                         input="hello")
    assert result.returncode == 7, result.stderr
    lines = result.stdout.splitlines()
    venv = repo.run(str(reqs)).stdout.strip()
    assert lines == [f"1.0 {venv}", "HELLO", f"{reqs} 1 kept"]
    assert result.stderr == "to stderr\n"


def test_no_process_is_left_between_the_caller_and_python(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    assert python_venv(repo, "-r", str(reqs), "--", "-c", "pass").returncode == 0  # built
    proc = subprocess.Popen([PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), "-r", str(reqs), "--",
                             "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"],
                            env=repo.env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert int(proc.stdout.readline()) == proc.pid  # exec'd: the same process
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_scripts_and_modules_and_their_arguments(repo: ToolRepo, tmp_path: Path) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    script = tmp_path / "tool.py"
    script.write_text("import sys, beta; print(beta.VERSION, sys.argv[1:])\n")
    result = python_venv(repo, "-r", str(reqs), str(script), "a", "--flag")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1.0 ['a', '--flag']\n"
    module = python_venv(repo, "-r", str(reqs), "--", "-m", "json.tool", "--sort-keys", input='{"b": 1, "a": 2}')
    assert module.returncode == 0, module.stderr
    assert module.stdout.split() == ["{", '"a":', "2,", '"b":', "1", "}"]


def test_a_nested_run_without_a_spec_reuses_the_parents(repo: ToolRepo, tmp_path: Path) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    inner = tmp_path / "inner.py"
    inner.write_text("import sys, os, alpha; print(sys.prefix, os.environ['CROS_VENV_DEPTH'])\n")
    outer = ("import subprocess, sys; sys.exit(subprocess.call([sys.argv[1], '-I', '-S', sys.argv[2], sys.argv[3]]))")
    result = python_venv(repo, "-r", str(reqs), "--", "-c", outer, PYTHON, str(repo.root / "bin" / "python_venv"),
                         str(inner))
    assert result.returncode == 0, result.stderr
    prefix, depth = result.stdout.split()
    assert Path(prefix).parent == repo.cache / "venvs" and depth == "2"


def test_a_loop_of_reexecs_stops_with_one_line(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    result = python_venv(repo, "-r", str(reqs), "--", "-c", "pass", env=repo.env(CROS_VENV_DEPTH="8"))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "CROS_VENV_DEPTH" in result.stderr


def test_bad_requirements_are_one_line_and_run_nothing(repo: ToolRepo, tmp_path: Path) -> None:
    reqs = repo.requirements("requirements.txt", "zeta==1.0\n")
    result = python_venv(repo, "-r", str(reqs), "--", "-c", "print('ran')")
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "zeta" in result.stderr
    usage = python_venv(repo, "-r")
    assert usage.returncode == 2 and "-r needs a value" in usage.stderr


def test_eight_at_once_on_a_cold_cache_build_once(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    procs = [subprocess.Popen([PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), "-r", str(reqs), "--",
                               "-c", "import sys, alpha; print(sys.prefix)"],
                              env=repo.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    assert len(list((repo.cache / "venvs" / ".d").iterdir())) == 1


@pytest.mark.parametrize(("argv", "script"), [
    (["x.py", "a"], "x.py"),
    (["-u", "x.py"], "x.py"),
    (["-W", "ignore", "x.py"], "x.py"),
    (["-Wignore", "x.py"], "x.py"),
    (["-c", "pass", "x.py"], None),
    (["-m", "mod"], None),
    (["-"], None),
    (["-X", "dev", "-B", "y.py"], "y.py"),
    ([], None),
])
def test_which_argument_is_the_script(argv: list[str], script: str | None) -> None:
    assert run.script_of(argv) == script


def test_our_options_stop_at_the_first_that_is_not_ours() -> None:
    args = run.parse(["-r", "r.txt", "--python", "python3.11", "-c", "pass"])
    assert (args.requirements, args.python, args.python_args) == ("r.txt", "python3.11", ["-c", "pass"])
    args = run.parse(["--spec=s.vpython3", "--", "-r", "x"])
    assert (args.spec, args.python_args) == ("s.vpython3", ["-r", "x"])
    with pytest.raises(run.UsageError):
        run.parse(["-r", "a", "--spec", "b"])


def test_overhead_path_imports_little(repo: ToolRepo) -> None:
    """The path to an up-to-date venv imports no `os`, json, re or vendored library."""
    reqs = repo.requirements("requirements.txt", REQS)
    assert python_venv(repo, "-r", str(reqs), "--", "-c", "pass").returncode == 0
    probe = (f"import sys; sys.argv = ['python_venv', '-r', {str(reqs)!r}, '--', '-c', 'pass']; sys.path.insert(0, {str(repo.root)!r}); "
             "import posix; posix.execve = lambda *a: (print(sorted(sys.modules)), sys.exit(0)); "
             "from cros_venv.run import main; main(sys.argv[1:])")
    out = subprocess.run([PYTHON, "-I", "-S", "-c", probe], env=repo.env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    modules = set(eval(out.stdout))
    assert not modules & {"os", "json", "re", "subprocess", "packaging", "argparse"}, modules
