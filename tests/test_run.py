"""bin/python_venv: python in the shared venv of a spec, exec'd in place."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from cros_venv import run
from tests.conftest import OTHER_PYTHONS, PYTHON, ToolRepo

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
    venv = os.path.realpath(repo.run(str(reqs)).stdout.strip())  # the directory it holds, not the link
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
    assert Path(prefix).parent == repo.cache / "venvs" / ".d" and depth == "2"


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


@pytest.mark.parametrize("mode", ["-r", "pep723"])
def test_the_way_to_an_up_to_date_venv_imports_little(repo: ToolRepo, tmp_path: Path, mode: str) -> None:
    """No `os`, json, re, subprocess or vendored library before the exec (each costs 1-10 ms)."""
    reqs = repo.requirements("requirements.txt", REQS)
    script = tmp_path / "s.py"
    script.write_text("# /// script\n# dependencies = [\"alpha==1.0\", \"beta==1.0\"]\n# ///\nimport alpha\n")
    argv = ["-r", str(reqs), "--", "-c", "pass"] if mode == "-r" else [str(script)]
    assert python_venv(repo, *argv).returncode == 0
    probe = (f"import sys; sys.path.insert(0, {str(repo.root)!r}); "
             "import posix; posix.execve = lambda *a: (print(sorted(sys.modules)), sys.exit(0)); "
             f"from cros_venv.run import main; main({argv!r})")
    out = subprocess.run([PYTHON, "-I", "-S", "-c", probe], env=repo.env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    modules = set(eval(out.stdout))
    assert "cros_venv.fastpath" in modules
    assert not modules & {"os", "json", "re", "subprocess", "packaging", "argparse", "tomllib", "cros_venv.build"}


# -- the spec, found as specs.py says --------------------------------------------------------

PEP723 = "# /// script\n# requires-python = \">=3.9\"\n# dependencies = [\"alpha==1.0\", \"beta==BETA\"]\n# ///\n"
VPYTHON = """# A spec in the shape Chromium checks in.
python_version: "PYVER"
wheel: <
  name: "infra/python/wheels/alpha-py2_py3"
  version: "version:1.0"
>
wheel {
  name: "infra/python/wheels/beta/${vpython_platform}"
  version: "version:2.0"
}
"""


def _on_path(tmp_path: Path, **links: str) -> str:
    """A PATH whose first directory holds `python3` (the test interpreter) and `links`."""
    bin_dir = tmp_path / "path-bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in {"python3": PYTHON, **links}.items():
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(target)
    return f"{bin_dir}:{os.environ.get('PATH', '')}"


def test_a_pep723_script_runs_in_the_venv_of_its_block(repo: ToolRepo, tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text("#!/usr/bin/env python_venv\n" + PEP723.replace("BETA", "1.0")
                      + "import sys, beta; print(beta.VERSION, sys.argv[1:])\n")
    script.chmod(0o755)
    env = repo.env(PATH=f"{repo.root / 'bin'}:{_on_path(tmp_path)}")
    result = subprocess.run([str(script), "x"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1.0 ['x']\n"
    script.write_text(script.read_text().replace("beta==1.0", "beta==2.0"))  # the block changed: its venv too
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout == "2.0 []\n", result.stderr


def test_a_vpython_spec_beside_the_script_wins_over_its_pep723_block(repo: ToolRepo, tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text(PEP723.replace("BETA", "1.0") + "import beta; print(beta.VERSION)\n")
    assert python_venv(repo, str(script)).stdout == "1.0\n"
    version = subprocess.check_output([PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], text=True)
    (tmp_path / "tool.py.vpython3").write_text(VPYTHON.replace("PYVER", version.strip()))
    env = repo.env(PATH=_on_path(tmp_path, **{f"python{version.strip()}": PYTHON}))
    result = python_venv(repo, str(script), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2.0\n"


def test_vpython_python_version_picks_the_interpreter(repo: ToolRepo, tmp_path: Path) -> None:
    others = [p for p in OTHER_PYTHONS if p != PYTHON]
    if not others:
        pytest.skip("no second interpreter on this machine")
    other = others[0]
    version = subprocess.check_output([other, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                      text=True).strip()
    spec = tmp_path / "spec.vpython3"
    spec.write_text(VPYTHON.replace("PYVER", version))
    code = "import sys, alpha; print('%d.%d' % sys.version_info[:2])"
    result = python_venv(repo, "--spec", str(spec), "--", "-c", code,
                         env=repo.env(PATH=_on_path(tmp_path, **{f"python{version}": other})))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{version}\n"
    missing = python_venv(repo, "--spec", str(spec), "--", "-c", code, env=repo.env(PATH=str(tmp_path / "nowhere")))
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert f"python{version}" in missing.stderr


def test_spec_errors_are_one_line(repo: ToolRepo, tmp_path: Path) -> None:
    bare = tmp_path / "bare.py"
    bare.write_text("print('ran')\n")
    result = python_venv(repo, str(bare))
    assert result.returncode == 2 and result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert "no venv spec" in result.stderr and "PEP 723" in result.stderr and ".vpython3" in result.stderr
    too_new = tmp_path / "new.py"
    too_new.write_text(PEP723.replace(">=3.9", ">=9.0").replace("BETA", "1.0"))
    result = python_venv(repo, str(too_new))
    assert result.returncode == 2 and "requires Python >=9.0" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    local = tmp_path / "local.py.vpython3"
    local.write_text('wheel: < name: "infra/python/wheels/psutil/${vpython_platform}" '
                     'version: "version:5.8.0.chromium.3" >\n')
    (tmp_path / "local.py").write_text("pass\n")
    result = python_venv(repo, str(tmp_path / "local.py"))
    assert result.returncode == 2 and "psutil" in result.stderr and len(result.stderr.splitlines()) == 1
    unpinned = tmp_path / "loose.py"
    unpinned.write_text(PEP723.replace("beta==BETA", "beta"))
    result = python_venv(repo, str(unpinned))
    assert result.returncode == 2 and "beta" in result.stderr and result.stdout == ""


def test_a_nested_run_reuses_the_parents_interpreter_too(repo: ToolRepo, tmp_path: Path) -> None:
    others = [p for p in OTHER_PYTHONS if p != PYTHON]
    if not others:
        pytest.skip("no second interpreter on this machine")
    version = subprocess.check_output([others[0], "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                      text=True).strip()
    spec = tmp_path / "outer.vpython3"
    spec.write_text(VPYTHON.replace("PYVER", version))
    inner = tmp_path / "inner.py"
    inner.write_text("import sys, alpha; print('%d.%d' % sys.version_info[:2], sys.prefix)\n")
    outer = "import subprocess, sys; sys.exit(subprocess.call([sys.argv[1], '-I', '-S', sys.argv[2], sys.argv[3]]))"
    result = python_venv(repo, "--spec", str(spec), "--", "-c", outer, PYTHON, str(repo.root / "bin" / "python_venv"),
                         str(inner), env=repo.env(PATH=_on_path(tmp_path, **{f"python{version}": others[0]})))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == version
    assert len(list((repo.cache / "venvs" / ".d").iterdir())) == 1  # the outer venv, reused


def _readme_block(after: str, language: str) -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start:text.index("```", start)]


@pytest.mark.parametrize(("after", "language"), [("A wrapper in shell", "sh"), ("The same in Python", "python")])
def test_the_readme_wrappers_work_from_a_dependent_repo(repo: ToolRepo, tmp_path: Path, after: str,
                                                        language: str) -> None:
    dependent = repo.root.parent / "my_repo"  # beside the tool's checkout, which is named infra_virtualenv
    (dependent / "bin").mkdir(parents=True)
    (dependent / "my_tool").mkdir()
    (dependent / "my_tool" / "__main__.py").write_text("import sys, alpha; print(alpha.VERSION, sys.argv[1:])\n")
    (dependent / "requirements.txt").write_text(REQS)
    wrapper = dependent / "bin" / "my_tool"
    wrapper.write_text(_readme_block(after, language))
    wrapper.chmod(0o755)
    env = repo.env(PATH=_on_path(tmp_path))
    result = subprocess.run([str(wrapper), "a b", "-c"], env=env, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)  # not the repo: my_tool is found all the same
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1.0 ['a b', '-c']\n"
    elsewhere = tmp_path / "elsewhere"  # CROS_VENV_HOME overrides where the tool is found
    shutil.move(str(repo.root), str(elsewhere))
    moved = subprocess.run([str(wrapper), "x"], env={**env, "CROS_VENV_HOME": str(elsewhere)}, capture_output=True,
                           text=True, timeout=120, cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == "1.0 ['x']\n"


# -- found by an independent break-it session ------------------------------------------------

@pytest.mark.parametrize("closed", ["0", "1", "2", "012"])
def test_closed_standard_streams_still_run_the_program(repo: ToolRepo, tmp_path: Path, closed: str) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    out = tmp_path / "out.txt"
    code = f"import alpha; open({str(out)!r}, 'w').write(alpha.VERSION); raise SystemExit(5)"
    argv = [PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), "-r", str(reqs), "--", "-c", code]
    closing = "".join(f" {fd}>&-" if fd != "0" else " <&-" for fd in closed)
    script = " ".join(shlex.quote(a) for a in argv) + closing  # a cold cache the first time: forked workers too
    result = subprocess.run(["sh", "-c", script], env=repo.env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 5, result.stderr
    assert out.read_text() == "1.0"


def test_problems_in_a_pep723_block_name_the_script(repo: ToolRepo, tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text("# /// script\n# dependencies = [\"alpha==1.0\", \"beta\"]\n# ///\n")
    result = python_venv(repo, str(script))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"python_venv: error: {script}:2: ")
    assert "beta" in result.stderr and "/specs/" not in result.stderr
    assert "--lock" not in result.stderr  # the lock step writes pip's format: no advice to lock a script


def test_odd_values_are_one_line_errors(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    for depth in ("abc", "-1"):
        result = python_venv(repo, "-r", str(reqs), "--", "-c", "pass", env=repo.env(CROS_VENV_DEPTH=depth))
        assert result.returncode == 2 and "is not a count of nested runs" in result.stderr
    result = python_venv(repo, "--spec")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "python_venv: error: --spec needs a value; see python_venv --help"]
    gc = repo.command("venv_gc", "--max-age-days", "nan")
    assert gc.returncode == 2 and "--max-age-days" in gc.stderr


# -- found by an independent break-it session (round 10) -------------------------------------

def _from_pipe(repo: ToolRepo, option: str, text: str, *python_args: str) -> subprocess.CompletedProcess[str]:
    """python_venv OPTION /dev/fd/N PYTHON_ARGS, N a pipe holding `text` (as `--spec <(...)`)."""
    read, write = os.pipe()
    os.write(write, text.encode())
    os.close(write)
    try:
        return subprocess.run([PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), option, f"/dev/fd/{read}",
                               "--", *python_args], env=repo.env(), capture_output=True, text=True, timeout=120,
                              pass_fds=(read,))
    finally:
        os.close(read)


@pytest.mark.parametrize("option", ["--spec", "-r"])
def test_a_spec_from_a_pipe_is_read_once_and_nested_runs_get_a_copy(repo: ToolRepo, tmp_path: Path,
                                                                   option: str) -> None:
    inner = tmp_path / "inner.py"
    inner.write_text("import sys, beta; print(beta.VERSION)\n")
    outer = ("import os, subprocess, sys, alpha; spec = os.environ['CROS_VENV_SPEC_PATH']; "
             "print(alpha.VERSION, os.path.isfile(spec), open(spec).read().count('beta==2.0'), flush=True); "
             "sys.exit(subprocess.call([sys.argv[1], '-I', '-S', sys.argv[2], sys.argv[3]]))")
    result = _from_pipe(repo, option, "alpha==1.0\nbeta==2.0\n", "-c", outer, PYTHON,
                        str(repo.root / "bin" / "python_venv"), str(inner))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1.0 True 1\n2.0\n"  # built from what the pipe held; the child found it again


def test_problems_in_a_converted_spec_name_its_own_file_and_line(repo: ToolRepo, tmp_path: Path) -> None:
    spec = tmp_path / "tool.vpython3"
    spec.write_text('# a spec\nwheel: <\n  name: "infra/python/wheels/alpha-py3"\n  version: "version:1.0"\n>\n'
                    'wheel: <name: "infra/python/wheels/beta-py3" version: "version:1.0">\n'
                    'wheel: <\n  name: "infra/python/wheels/zeta-py3"\n  version: "version:9.0"\n>\n')
    for _ in range(2):  # converted, then the converted copy found in the cache
        result = python_venv(repo, "--spec", str(spec), "--", "-c", "pass")
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
        assert result.stderr.startswith(f"python_venv: error: {spec}:7: ") and "zeta" in result.stderr
        assert "/specs/" not in result.stderr
    piped = _from_pipe(repo, "--spec", "alpha==1.0\nbeta==1.0\nzeta==1.0\n", "-c", "pass")
    assert piped.returncode == 2 and "/specs/" not in piped.stderr
    assert piped.stderr.startswith("python_venv: error: /") and ":3: " in piped.stderr and "zeta" in piped.stderr


def test_a_cache_that_cannot_be_written_is_one_line_naming_it(repo: ToolRepo, tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text(PEP723.replace("BETA", "1.0"))
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = python_venv(repo, str(script), env=repo.env(CROS_VENV_CACHE=str(blocked / "cache")))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"{blocked}/cache" in result.stderr and "CROS_VENV_CACHE" in result.stderr and "Errno" not in result.stderr


def test_the_program_runs_from_the_directory_it_holds_even_if_the_link_moves(repo: ToolRepo) -> None:
    """venvs/NAME turned to another directory between the lock and the exec (a rebuild): the
    program still runs from the directory python_venv locked, which GC will not remove."""
    reqs = repo.requirements("requirements.txt", REQS)
    link = Path(repo.run(str(reqs)).stdout.strip())
    locked = os.path.realpath(link)
    other = os.path.realpath(repo.run(str(repo.requirements("b.txt", "alpha==1.0\nbeta==2.0\n"))).stdout.strip())
    argv = ["-r", str(reqs), "--", "-c", "import os, sys, beta; print(beta.VERSION, os.path.realpath(sys.prefix))"]
    probe = (f"import os, sys; sys.path.insert(0, {str(repo.root)!r}); from cros_venv import run; hold = run._hold\n"
             "def relinked(venv):\n"
             "    held = hold(venv)\n"
             f"    os.symlink({other!r}, venv + '.new'); os.replace(venv + '.new', venv)\n"
             "    return held\n"
             f"run._hold = relinked; sys.exit(run.main({argv!r}))")
    result = subprocess.run([PYTHON, "-I", "-S", "-c", probe], env=repo.env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert os.path.realpath(link) == other  # the link did move
    assert result.stdout == f"1.0 {locked}\n"


def test_verbose_steps_are_python_venvs_and_in_its_usage(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    result = python_venv(repo, "-r", str(reqs), "-v", "-c", "print('ran')")
    assert result.returncode == 0 and result.stdout == "ran\n", result.stderr
    steps = result.stderr.splitlines()
    assert steps and all(line.startswith("python_venv: [") for line in steps), steps
    assert "[-v]" in python_venv(repo, "--help").stdout


def test_a_deleted_current_directory_is_one_line_saying_so(repo: ToolRepo, tmp_path: Path) -> None:
    repo.requirements("requirements.txt", REQS)
    gone = tmp_path / "gone"
    gone.mkdir()
    proc = subprocess.run(["sh", "-c", f'cd {shlex.quote(str(gone))} && rmdir "$PWD" && exec "$@"', "sh",
                           PYTHON, "-I", "-S", str(repo.root / "bin" / "python_venv"), "-r", "r.txt", "--", "-c",
                           "pass"], env=repo.env(), capture_output=True, text=True, timeout=60)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("python_venv:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert f"the current directory ({gone}) no longer exists" in errors[0] and "Errno" not in errors[0]
