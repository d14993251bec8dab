"""skeleton: the cached virtualenv template gives exactly what virtualenv writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cros_venv import skeleton, toolchain
from cros_venv.cache import Cache
from tests.conftest import PYTHON


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


def run_virtualenv(cache: Cache, dest: str) -> None:
    roots = toolchain.unpack(cache, toolchain.VIRTUALENV)
    proc = skeleton.start(skeleton.command(dest, PYTHON, roots, os.path.join(cache.root, "virtualenv")), os.environ, None)
    skeleton.finish(proc)


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
