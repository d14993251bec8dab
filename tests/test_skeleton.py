"""skeleton: the cached virtualenv template gives exactly what virtualenv writes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cros_venv import skeleton, toolchain
from cros_venv.cache import Cache
from tests.conftest import PYTHON, REPO

if TYPE_CHECKING:
    from _pytest.mark import ParameterSet

Entry = tuple[str, bytes, int]  # (kind: file, link or dir; contents or link target; mode)


def tree(root: Path) -> dict[str, Entry]:
    """Every file, symlink and directory under `root`, by path relative to it."""
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.fsencode(os.readlink(p)), 0)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", Path(p).read_bytes(), stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("dir" if stat.S_ISDIR(st.st_mode) else "other", b"", stat.S_IMODE(st.st_mode))
    return out


def run_virtualenv(cache: Cache, dest: str, driver: str = "direct") -> None:
    roots = toolchain.unpack(cache, toolchain.VIRTUALENV)
    cmd = skeleton.command(dest, PYTHON, roots, os.path.join(cache.root, "virtualenv"), driver=driver)
    skeleton.finish(skeleton.start(cmd, os.environ, None))


def _pyenv_root() -> Path:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            return Path(out)
    return Path.home() / ".pyenv"


def _interpreters() -> list[ParameterSet]:
    """Every CPython 3.9+ on this machine: pyenv's versions, the system's, the one running the
    tests. A version expected on CI machines (3.9 to 3.13, /usr/bin/python3) that is absent
    here is a skip, so the report shows what was not compared.
    """
    found: dict[str, str] = {}  # real path -> test id
    minors = set()
    def version(python: Path) -> list[int]:
        return [int(p) if p.isdigit() else -1 for p in python.parent.parent.name.split(".")]

    for python in sorted((_pyenv_root() / "versions").glob("3.*/bin/python3"), key=version):
        parts = version(python)
        if len(parts) >= 2 and parts[1] >= 9 and os.access(python, os.X_OK):
            found.setdefault(os.path.realpath(python), f"pyenv-{python.parent.parent.name}")
            minors.add(parts[1])
    if os.access("/usr/bin/python3", os.X_OK):
        found.setdefault(os.path.realpath("/usr/bin/python3"), "system")
    found.setdefault(PYTHON, "running")
    params = [pytest.param(python, id=name) for python, name in found.items()]
    params += [pytest.param("", id=f"pyenv-3.{minor}", marks=pytest.mark.skip(reason=f"no pyenv Python 3.{minor} here"))
               for minor in range(9, 14) if minor not in minors]
    if "system" not in found.values():
        params.append(pytest.param("", id="system", marks=pytest.mark.skip(reason="no /usr/bin/python3 here")))
    return params


def _differences(expected: dict[str, Entry], got: dict[str, Entry]) -> list[str]:
    """What differs between two trees, a line a path, in terms a reader can act on."""
    out = []
    for rel in sorted(expected.keys() | got.keys()):
        if rel not in got:
            out.append(f"{rel}: missing")
        elif rel not in expected:
            out.append(f"{rel}: not written by virtualenv's command line")
        elif got[rel][0] != expected[rel][0]:
            out.append(f"{rel}: a {got[rel][0]}, not a {expected[rel][0]}")
        elif got[rel][0] == "link" and got[rel][1] != expected[rel][1]:
            out.append(f"{rel}: links to {got[rel][1]!r}, not {expected[rel][1]!r}")
        elif got[rel][1] != expected[rel][1]:
            want, have = expected[rel][1].splitlines(), got[rel][1].splitlines()
            n = next((n for n, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
            lines = [repr(x[n]) if n < len(x) else "nothing" for x in (have, want)]
            out.append(f"{rel}: contents differ (line {n + 1}: {lines[0]}, not {lines[1]})")
        elif got[rel][2] != expected[rel][2]:
            out.append(f"{rel}: mode {oct(got[rel][2])}, not {oct(expected[rel][2])}")
    return out


@pytest.mark.parametrize("python", _interpreters())
def test_the_direct_driver_writes_what_virtualenvs_command_line_writes(tmp_path: Path, shared_cache: Path,
                                                                        python: str) -> None:
    """skeleton_child.direct uses virtualenv's private internals: it must write the same
    bytes as `python -m virtualenv` from the vendored wheels with the same options, on
    every interpreter here, or the day a virtualenv upgrade changes them this fails and
    names the files. The same venv path for all three runs (so nothing needs normalising):
    the file list, contents, modes and symlink targets must match. "direct-only" makes a
    failure inside the direct driver an error (create_venv would fall back to cli_run);
    cli_run, the fallback, must write the same too.
    """
    cache = Cache(str(shared_cache))
    cache.ensure_dirs()
    roots = toolchain.unpack(cache, toolchain.VIRTUALENV)
    env = {k: v for k, v in os.environ.items()  # what build.clean_environment leaves
           if not k.startswith(("PIP_", "VIRTUALENV_", "PYTHON")) and k not in ("VIRTUAL_ENV", "__PYVENV_LAUNCHER__")}
    env.update(PIP_CONFIG_FILE=os.devnull, VIRTUALENV_CONFIG_FILE=os.devnull)
    dest = tmp_path / "venv"
    options = ["--no-seed", "--no-periodic-update", "--no-download", "--quiet"]
    runs = {
        "command line": [python, "-B", "-m", "virtualenv", str(dest), *options, "--app-data", str(tmp_path / "app-0")],
        "direct": skeleton.command(str(dest), python, roots, str(tmp_path / "app-1"), driver="direct-only"),
        "cli_run": skeleton.command(str(dest), python, roots, str(tmp_path / "app-2"), driver="cli"),
    }
    trees = {}
    for name, cmd in runs.items():
        run_env = dict(env, PYTHONPATH=os.pathsep.join(roots)) if name == "command line" else env
        out = subprocess.run(cmd, env=run_env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        assert out.returncode == 0, f"{name} failed on {python}:\n{out.stdout}{out.stderr}"
        trees[name] = tree(dest)
        os.rename(dest, tmp_path / name)
    assert "bin/activate" in trees["command line"] and "pyvenv.cfg" in trees["command line"]
    for name in ("direct", "cli_run"):
        differences = _differences(trees["command line"], trees[name])
        assert not differences, (f"{name} wrote another venv than virtualenv's command line on {python} "
                                 f"(compare the two under {tmp_path}):\n" + "\n".join(differences))


def test_a_forked_template_maker_writes_what_a_started_one_writes(tmp_path: Path, shared_cache: Path) -> None:
    """create_venv forks the template maker when the target is the interpreter running it;
    the template must be the one a started child (`python -I -S -B CHILD`) makes.
    """
    code = """
import os, sys
sys.path.insert(0, sys.argv[1])
from cros_venv import skeleton, toolchain
from cros_venv.cache import Cache
cache = Cache(sys.argv[2])
cache.ensure_dirs()
for name, fork in (("forked", True), ("started", False)):
    job = skeleton.TemplateJob(skeleton.Templates(os.path.join(sys.argv[3], name)), os.path.realpath(sys.executable),
                               toolchain.VIRTUALENV[0], lambda: [], os.path.join(sys.argv[3], "app-data-" + name),
                               cache.root)
    if not fork:
        skeleton.can_fork = lambda: False  # as if a thread were running: no fork
    job.launch()
    print(name, type(job.proc).__name__, job.wait())
"""
    base = os.path.realpath(PYTHON)
    out = subprocess.run([base, "-I", "-S", "-c", code, str(REPO), str(shared_cache), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["forked", "Forked"] and out[3:5] == ["started", "Popen"]
    trees = {}
    for name, template in (("forked", out[2]), ("started", out[5])):
        dest = tmp_path / "venv"
        skeleton.instantiate(template, str(dest))
        trees[name] = tree(dest)
        os.rename(dest, tmp_path / f"venv-{name}")
    assert trees["forked"] == trees["started"]
    assert "bin/activate" in trees["forked"]


def test_the_direct_driver_falls_back_to_the_command_line(tmp_path: Path, shared_cache: Path) -> None:
    """A virtualenv whose internals moved (here: `virtualenv.activation` no longer exports an
    activator the direct driver imports): the child still makes the venv, with cli_run.
    """
    cache = Cache(str(shared_cache))
    cache.ensure_dirs()
    roots = toolchain.unpack(cache, toolchain.VIRTUALENV)
    moved = tmp_path / "virtualenv-moved"
    shutil.copytree(roots[0], moved)  # roots[0] is virtualenv's own wheel
    init = moved / "virtualenv" / "activation" / "__init__.py"
    init.write_text(init.read_text() + "\ndel NushellActivator\n")
    dest = tmp_path / "venv"
    cmd = skeleton.command(str(dest), PYTHON, [str(moved), *roots[1:]], str(tmp_path / "app-data"))
    skeleton.finish(skeleton.start(cmd, os.environ, None))
    assert (dest / "bin" / "activate.nu").is_file()  # cli_run found the activator by its entry point
    assert (dest / "pyvenv.cfg").is_file()


def test_template_copy_is_identical_to_running_virtualenv(tmp_path: Path, shared_cache: Path) -> None:
    cache = Cache(str(shared_cache))
    cache.ensure_dirs()
    templates = skeleton.Templates(str(tmp_path / "templates"))
    staging, dest = templates.staging()
    run_virtualenv(cache, dest)
    final = templates.path_for(PYTHON, toolchain.VIRTUALENV[0])
    templates.commit(staging, final)

    direct = tmp_path / "some" / "venv-dir_1.2"
    run_virtualenv(cache, str(direct))
    copied = tmp_path / "copy" / "venv-dir_1.2"
    os.makedirs(copied.parent)
    os.rename(direct, copied)  # the same path for both, so the trees must match byte for byte
    skeleton.instantiate(final, str(direct))
    assert tree(direct) == tree(copied)
    assert str(direct).encode() in (direct / "bin" / "activate").read_bytes()
    out = subprocess.run([str(direct / "bin" / "python"), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert out.stdout.strip() == str(direct)


@pytest.mark.parametrize(("path", "plain"), [("/a/b-c_d.e/f", True), ("/a b/c", False), ("/a/'b", False), ("/a/$b", False)])
def test_only_plain_paths_use_the_template(path: str, plain: bool) -> None:
    assert skeleton.is_plain(path) is plain


def test_two_racing_commits_leave_one_template(tmp_path: Path) -> None:
    templates = skeleton.Templates(str(tmp_path))
    a, _ = templates.staging()
    b, _ = templates.staging()
    for t in (a, b):
        os.makedirs(os.path.join(t, "venv"))
        templates.commit(t, str(tmp_path / "final"))
    assert sorted(os.listdir(tmp_path)) == ["final"]


def test_plain_paths_are_the_ones_shlex_leaves_unquoted() -> None:
    import shlex

    for path in ["/home/u/venv", "/a b", "/é", "/a'b", "/x@%+=:,./-_9", "", "/tab\t", "/$HOME", "/a*b", "/~u"]:
        assert skeleton.is_plain(path) == (shlex.quote(path) == path or path == ""), path
