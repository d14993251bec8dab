"""Shared venvs: `create_venv REQUIREMENTS` finds or builds an immutable venv in the cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ToolRepo, make_tool_repo, venv_python

pytestmark = pytest.mark.e2e

REQS = "alpha==1.0\nbeta==1.0\n"


@pytest.fixture
def repo(wheelhouse: ToolRepo, tmp_path: Path) -> ToolRepo:
    """The wheelhouse with a cache of its own (each test's shared venvs are its own)."""
    return ToolRepo(wheelhouse.root, tmp_path / "cache")


def shared(repo: ToolRepo, reqs: Path, *args: str) -> Path:
    result = repo.run(*args, str(reqs))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # the path, and nothing else, on stdout
    return Path(lines[0])


def real_dirs(repo: ToolRepo) -> list[str]:
    return sorted(p.name for p in (repo.cache / "venvs" / ".d").iterdir())


def test_prints_the_path_of_a_working_venv_in_the_cache(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    path = shared(repo, reqs)
    assert path.parent == repo.cache / "venvs" and path.name.startswith("py3.")
    assert path.is_symlink() and Path(os.path.realpath(path)).parent == repo.cache / "venvs" / ".d"
    out = venv_python(path, "import alpha, beta, sys; print(alpha.VERSION, sys.prefix)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.0", str(path)]
    script = subprocess.run([str(path / "bin" / "alpha-cli")], capture_output=True, text=True)
    assert script.stdout == "alpha says hi\n"
    # its scripts name the directory that never moves, not the link
    head = "".join((path / "bin" / "alpha-cli").read_text().splitlines(keepends=True)[:2])
    assert f"{os.path.realpath(path)}/bin/python" in head and f"{path}/" not in head


def test_the_second_call_finds_it_without_building(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    first = shared(repo, reqs)
    before = real_dirs(repo)
    result = repo.run("-v", str(reqs))
    assert result.returncode == 0 and result.stdout == f"{first}\n"
    assert "building" not in result.stderr
    assert real_dirs(repo) == before
    # the plain command line is answered by the fast path: a request file names the venv
    requests = list((repo.cache / "venvs" / ".requests").iterdir())
    assert len(requests) == 1 and requests[0].read_text().startswith(first.name + "\n")


def test_same_requirements_elsewhere_and_another_checkout_share_the_venv(repo: ToolRepo, tmp_path: Path) -> None:
    first = shared(repo, repo.requirements("requirements.txt", REQS))
    other_file = tmp_path / "elsewhere" / "reqs.txt"
    other_file.parent.mkdir()
    other_file.write_text("# the same pins, in another order\nbeta==1.0\nalpha==1.0\n")
    assert shared(repo, other_file) == first
    checkout = make_tool_repo(tmp_path / "second_checkout", repo.cache)
    for wheel in repo.wheels.iterdir():
        if not (checkout.wheels / wheel.name).exists():
            shutil.copy2(wheel, checkout.wheels / wheel.name)
    assert shared(checkout, other_file) == first
    assert len(real_dirs(repo)) == 1


def test_different_requirements_get_different_venvs(repo: ToolRepo) -> None:
    a = shared(repo, repo.requirements("a.txt", REQS))
    b = shared(repo, repo.requirements("b.txt", "alpha==1.0\nbeta==2.0\n"))
    assert a != b
    assert venv_python(b, "import beta; print(beta.VERSION)").stdout == "2.0\n"


def test_pip_may_look_but_not_change_it(repo: ToolRepo) -> None:
    path = shared(repo, repo.requirements("requirements.txt", REQS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    pip = [str(path / "bin" / "python"), "-m", "pip"]
    listed = subprocess.run([*pip, "list"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and "alpha" in listed.stdout
    assert subprocess.run([*pip, "check"], capture_output=True, text=True, env=env).returncode == 0
    for change in (["install", "gamma"], ["uninstall", "-y", "beta"]):
        result = subprocess.run([*pip, *change], capture_output=True, text=True, env=env)
        assert result.returncode != 0
        assert "this shared venv is read-only, build a private venv with create_venv DIR REQUIREMENTS" in result.stderr
    assert venv_python(path, "import beta").returncode == 0
    assert shared(repo, repo.requirements("requirements.txt", REQS)) == path


def test_a_damaged_venv_is_replaced_beside_the_old_one(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    path = shared(repo, reqs)
    old = Path(os.path.realpath(path))
    next(old.glob("lib/python*/site-packages/beta.py")).unlink()
    again = shared(repo, reqs)
    assert again == path  # the same name: callers keep their path
    new = Path(os.path.realpath(again))
    assert new != old and old.is_dir()  # the old one is left for GC (a process may run from it)
    assert venv_python(again, "import beta; print(beta.VERSION)").stdout == "1.0\n"


def test_a_killed_build_publishes_nothing(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    killed = repo.run(str(reqs), env=repo.env(CROS_VENV_TEST_KILL="installed"))
    assert killed.returncode != 0 and killed.stdout == ""
    assert not [p for p in (repo.cache / "venvs").iterdir() if p.is_symlink()]
    path = shared(repo, reqs)
    assert venv_python(path, "import alpha").returncode == 0


def test_eight_at_once_build_once(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    procs = [repo.start(str(reqs)) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    assert len(real_dirs(repo)) == 1


def test_bad_input_is_one_line(repo: ToolRepo, tmp_path: Path) -> None:
    missing = repo.run(str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.splitlines()) == 1 and "nope.txt" in missing.stderr
    unknown = repo.run(str(repo.requirements("r.txt", "zeta==9.9\n")))
    assert unknown.returncode == 2 and unknown.stdout == "" and "zeta" in unknown.stderr
    compiled = repo.run("--compile", str(repo.requirements("c.txt", REQS)))
    assert compiled.returncode == 2 and "--compile" in compiled.stderr and compiled.stdout == ""
    assert not (repo.cache / "venvs").exists() or not [p for p in (repo.cache / "venvs").iterdir() if p.is_symlink()]


def test_a_private_venv_is_unchanged_by_it(built: tuple[ToolRepo, Path, Path]) -> None:
    repo, venv_dir, reqs = built
    before = (venv_dir / ".cros_venv.json").read_bytes()
    shared(repo, reqs)
    assert (venv_dir / ".cros_venv.json").read_bytes() == before
    assert repo.run(str(venv_dir), str(reqs)).returncode == 0
    assert (venv_dir / ".cros_venv.json").read_bytes() == before


# -- found by an independent break-it session ------------------------------------------------

def test_a_link_turned_to_another_specs_venv_is_not_trusted(repo: ToolRepo) -> None:
    one = repo.requirements("one.txt", REQS)
    two = repo.requirements("two.txt", "alpha==1.0\nbeta==2.0\n")
    link = shared(repo, one)
    other = shared(repo, two)
    tmp = link.with_name(link.name + ".x")
    tmp.symlink_to(os.readlink(other))
    os.replace(tmp, link)
    assert shared(repo, one) == link  # the fast path must not take the other venv for this one
    assert venv_python(link, "import beta; print(beta.VERSION)").stdout == "1.0\n"


def test_an_edit_through_a_venv_never_reaches_the_tools_own_code(repo: ToolRepo) -> None:
    link = shared(repo, repo.requirements("one.txt", "packaging==26.3\n"))
    module = next(Path(os.path.realpath(link)).glob("lib/python*/site-packages/packaging/__init__.py"))
    with open(module, "a") as f:  # in place: the same inode as the cache entry the tool imports from
        f.write("print('PWNED from a venv edit')\n")
    result = repo.run(str(repo.requirements("two.txt", REQS)))  # a build: the tool imports packaging
    assert result.returncode == 0, result.stderr
    assert "PWNED" not in result.stdout + result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_a_directory_put_in_place_of_the_link_is_moved_aside(repo: ToolRepo) -> None:
    reqs = repo.requirements("requirements.txt", REQS)
    link = shared(repo, reqs)
    real = os.path.realpath(link)
    link.unlink()
    shutil.copytree(real, link, symlinks=True)
    assert shared(repo, reqs) == link
    assert link.is_symlink() and venv_python(link, "import alpha").returncode == 0
    assert [n for n in real_dirs(repo) if "-moved-" in n]  # kept for GC, not deleted under a user


# -- found by an independent break-it session (round 10) -------------------------------------

READ_ONLY = "this shared venv is read-only, build a private venv with create_venv DIR REQUIREMENTS"


BYPASSES = [  # (environment, pip options): each would get past a guard that lives in pip's configuration
    ({"PIP_CONFIG_FILE": os.devnull}, []),
    ({"PIP_CONSTRAINT": ""}, []),
    ({}, ["--isolated"]),
    ({"PIP_CONFIG_FILE": os.devnull, "PIP_CONSTRAINT": ""}, ["--isolated"]),
]


def test_pip_configuration_does_not_get_around_the_read_only_guard(repo: ToolRepo) -> None:
    path = shared(repo, repo.requirements("requirements.txt", REQS))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    wheels = str(repo.root / "pip_packages")
    for i, (env, pip_args) in enumerate(BYPASSES):
        pips = [[str(path / "bin" / "python"), "-m", "pip"]] + ([[str(path / "bin" / "pip")]] if i == 3 else [])
        for pip in pips:
            for change in (["install", "--no-index", "--find-links", wheels, "gamma==1.0"],
                           ["uninstall", "-y", "beta"]):
                result = subprocess.run([*pip, *pip_args, *change], capture_output=True, text=True,
                                        env={**clean, **env})
                assert result.returncode != 0, (env, pip_args, pip, change, result.stdout)
                assert READ_ONLY in result.stderr
    assert venv_python(path, "import beta").returncode == 0
    assert venv_python(path, "import gamma").returncode != 0
    env, pip_args = BYPASSES[3]
    for look in (["list"], ["check"], ["freeze"], ["show", "alpha"], ["install", "--help"]):
        result = subprocess.run([str(path / "bin" / "python"), "-m", "pip", *pip_args, *look], capture_output=True,
                                text=True, env={**clean, **env})
        assert result.returncode == 0, (look, result.stderr)
        if look == ["freeze"]:
            assert "alpha==1.0" in result.stdout
    assert shared(repo, repo.requirements("requirements.txt", REQS)) == path  # unchanged: no rebuild


def test_a_shared_venv_without_its_guard_is_replaced(repo: ToolRepo) -> None:
    path = shared(repo, repo.requirements("requirements.txt", REQS))
    real = os.path.realpath(path)
    next(Path(real).glob("lib/python*/site-packages/_cros_venv_read_only.pth")).unlink()
    assert shared(repo, repo.requirements("requirements.txt", REQS)) == path
    assert os.path.realpath(path) != real
    assert list(Path(os.path.realpath(path)).glob("lib/python*/site-packages/_cros_venv_read_only.pth"))
