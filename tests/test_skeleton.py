"""skeleton: the cached virtualenv template gives exactly what virtualenv writes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cros_venv import skeleton, toolchain
from cros_venv.cache import Cache
from tests.conftest import OTHER_PYTHONS, PYTHON, REPO

PYTHONS = [PYTHON, *OTHER_PYTHONS, *(["/usr/bin/python3"] if os.path.exists("/usr/bin/python3") else [])]


def tree(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                out[rel] = Path(p).read_bytes() + oct(os.stat(p).st_mode).encode()
            else:
                out[rel] = "dir"
    return out


def run_virtualenv(cache: Cache, dest: str, driver: str = "direct") -> None:
    roots = toolchain.unpack(cache, toolchain.VIRTUALENV)
    cmd = skeleton.command(dest, PYTHON, roots, os.path.join(cache.root, "virtualenv"), driver=driver)
    skeleton.finish(skeleton.start(cmd, os.environ, None))


@pytest.mark.parametrize("python", PYTHONS)
def test_the_direct_driver_writes_what_virtualenvs_command_line_writes(tmp_path: Path, shared_cache: Path,
                                                                        python: str) -> None:
    """skeleton_child.direct calls virtualenv's classes without its CLI: the same bytes, for
    every interpreter we build for (each is run both ways at the same path).
    """
    cache = Cache(str(shared_cache))
    cache.ensure_dirs()
    roots = toolchain.unpack(cache, toolchain.VIRTUALENV)
    dest = tmp_path / "venv"
    trees = {}
    for driver in ("cli", "direct"):
        cmd = skeleton.command(str(dest), python, roots, str(tmp_path / f"app-data-{driver}"), driver=driver)
        skeleton.finish(skeleton.start(cmd, os.environ, None))
        trees[driver] = tree(dest)
        os.rename(dest, tmp_path / driver)
    assert trees["direct"] == trees["cli"]
    assert "bin/activate" in trees["direct"] and "pyvenv.cfg" in trees["direct"]


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
