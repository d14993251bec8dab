"""The caller's environment (CONTRACT.md items 1-3 and 10): hostile PIP_*, PYTHON* and
VIRTUALENV_* variables and config files, a fake python3 first on PATH, umask 077, the C
locale, no HOME, a missing TMPDIR, bad --python and lock timeouts, no network at all.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import PYTHON, ToolRepo
from tests.reliability._common_b import (
    BASE_PKGS,
    BASE_REQS,
    Outside,
    Runner,
    assert_same_tree,
    check_venv,
    expect_error,
    site_packages,
    slow_only,
    token_wheel,
    tree_state,
)
from tests.reliability.conftest import Faults

pytestmark = pytest.mark.e2e



def sentinel_script(path: Path, sentinel: Path, status: int = 1) -> None:
    """An executable that leaves `sentinel` behind if anything runs it."""
    path.write_text(f"#!/bin/sh\necho \"$0 $*\" >> '{sentinel}'\nexit {status}\n")
    path.chmod(0o755)


def hostile_pip(tmp: Path) -> dict[str, str]:
    return {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "http://127.0.0.1:9/extra",
            "PIP_TRUSTED_HOST": "127.0.0.1", "PIP_NO_INDEX": "0", "PIP_FIND_LINKS": "/nonexistent",
            "PIP_REQUIRE_VIRTUALENV": "1", "PIP_TARGET": str(tmp / "pip-target"),
            "PIP_PREFIX": str(tmp / "pip-prefix"), "PIP_USER": "1", "PIP_NO_CACHE_DIR": "0",
            "PIP_CACHE_DIR": str(tmp / "pip-cache"), "PIP_ONLY_BINARY": "none", "PIP_NO_BINARY": ":all:"}


PIP_CONF = """[global]
index-url = http://127.0.0.1:9/simple
find-links = /nonexistent
no-index = false
require-virtualenv = true
target = {tmp}/pip-target
cache-dir = {tmp}/pip-cache
[install]
user = true
prefix = {tmp}/pip-prefix
"""
VIRTUALENV_INI = """[virtualenv]
system_site_packages = true
prompt = HOSTILEPROMPT
activators = fish
no_pip = false
override_app_data = {tmp}/appdata
symlink_app_data = true
"""


def pip_config_file(tmp: Path) -> dict[str, str]:
    conf = tmp / "hostile" / "pip.conf"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text(PIP_CONF.format(tmp=tmp))
    return {"PIP_CONFIG_FILE": str(conf)}


def user_config_files(tmp: Path) -> dict[str, str]:
    """pip's and virtualenv's per-user config files, where they look for them."""
    home = tmp / "home"
    for rel in (".config/pip/pip.conf", ".pip/pip.conf"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(PIP_CONF.format(tmp=tmp))
    (home / ".config/virtualenv").mkdir(parents=True, exist_ok=True)
    (home / ".config/virtualenv/virtualenv.ini").write_text(VIRTUALENV_INI.format(tmp=tmp))
    return {"XDG_CONFIG_HOME": str(home / ".config"), "-PIP_CONFIG_FILE": ""}


FAKE_MODULES = ("packaging", "installer", "virtualenv", "pip", "json", "hashlib", "argparse", "email", "csv",
                "subprocess", "cros_venv", "_virtualenv", "distlib", "filelock", "platformdirs")


def pythonpath(tmp: Path) -> dict[str, str]:
    """PYTHONPATH first with modules the tool (or its children) import, each raising."""
    fake = tmp / "fake_modules"
    for name in FAKE_MODULES:
        (fake / name).mkdir(parents=True, exist_ok=True)
        (fake / name / "__init__.py").write_text(f"raise RuntimeError('hostile {name} from PYTHONPATH')\n")
    return {"PYTHONPATH": str(fake)}


def python_flags(tmp: Path) -> dict[str, str]:
    startup = tmp / "hostile" / "startup.py"
    startup.parent.mkdir(exist_ok=True)
    startup.write_text(f"open({str(tmp / 'startup-ran')!r}, 'w').close()\n")
    return {"PYTHONSTARTUP": str(startup), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONOPTIMIZE": "2",
            "PYTHONWARNINGS": "error", "PYTHONDEVMODE": "1", "PYTHONHASHSEED": "12345", "PYTHONSAFEPATH": "1",
            "PYTHONNOUSERSITE": "1", "PYTHONUSERBASE": str(tmp / "userbase"), "PYTHONUTF8": "0",
            "PYTHONIOENCODING": "ascii:strict"}


def pythonexecutable(tmp: Path) -> dict[str, str]:
    """Python takes sys.executable from it: the tool must not re-run itself through it."""
    sentinel_script(tmp / "hostile-python", tmp / "sentinel")
    return {"PYTHONEXECUTABLE": str(tmp / "hostile-python")}


def pythonhome(tmp: Path) -> dict[str, str]:
    return {"PYTHONHOME": "/nonexistent"}


def pythoninspect(tmp: Path) -> dict[str, str]:
    return {"PYTHONINSPECT": "1"}


def virtual_env(tmp: Path) -> dict[str, str]:
    """An active venv elsewhere, its bin first on PATH with a pip and virtualenv that must not run."""
    bin_dir = tmp / "hostile" / "active-venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("pip", "pip3", "virtualenv", "uv"):
        sentinel_script(bin_dir / name, tmp / "sentinel")
    return {"VIRTUAL_ENV": str(bin_dir.parent), "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "CONDA_PREFIX": str(bin_dir.parent)}


def virtualenv_vars(tmp: Path) -> dict[str, str]:
    ini = tmp / "hostile" / "virtualenv.ini"
    ini.parent.mkdir(exist_ok=True)
    ini.write_text(VIRTUALENV_INI.format(tmp=tmp))
    return {"VIRTUALENV_PYTHON": "/nonexistent/python", "VIRTUALENV_SYSTEM_SITE_PACKAGES": "1",
            "VIRTUALENV_PROMPT": "HOSTILEPROMPT", "VIRTUALENV_ACTIVATORS": "fish", "VIRTUALENV_COPIES": "1",
            "VIRTUALENV_OVERRIDE_APP_DATA": str(tmp / "appdata"), "VIRTUALENV_CONFIG_FILE": str(ini),
            "VIRTUALENV_NO_SETUPTOOLS": "0", "VIRTUALENV_SEEDER": "nonexistent", "VIRTUALENV_CREATOR": "venv",
            "VIRTUALENV_CLEAR": "1"}


HOSTILE: dict[str, Callable[[Path], dict[str, str]]] = {
    "PIP_vars": hostile_pip,
    "PIP_CONFIG_FILE": pip_config_file,
    "user-pip-and-virtualenv-config": user_config_files,
    "PYTHONPATH-fake-modules": pythonpath,
    "PYTHON-flags-and-startup": python_flags,
    "PYTHONEXECUTABLE": pythonexecutable,
    "PYTHONHOME": pythonhome,
    "PYTHONINSPECT": pythoninspect,
    "VIRTUAL_ENV": virtual_env,
    "VIRTUALENV_vars": virtualenv_vars,
}


def plain_python_run(runner: Runner, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`./create_venv` (the polyglot: `python3 -I -S` from PATH) for PYTHONHOME, which kills any
    interpreter started without -I before a line of the tool runs; `PY create_venv` otherwise.
    """
    if "PYTHONHOME" in env:
        env = {**env, "PATH": f"{os.path.dirname(PYTHON)}:{env['PATH']}"}
        return runner.run(*args, env=env, python=None)
    return runner.run(*args, env=env)


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_variables_do_not_reach_the_build(runner: Runner, reqs: Path, tmp_path: Path, faults: Faults,
                                                  slow: bool, case: str) -> None:
    slow_only(case, ["user-pip-and-virtualenv-config"], slow)
    extra = HOSTILE[case](tmp_path)
    env = runner.env(drop=[k[1:] for k in extra if k.startswith("-")],
                     **{k: v for k, v in extra.items() if not k.startswith("-")})
    venv_dir = tmp_path / "the venv"  # a path the shells quote: virtualenv runs for this venv
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = plain_python_run(runner, str(venv_dir), str(reqs), env=env)
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, BASE_PKGS)
    cfg = (venv_dir / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg, cfg
    assert (venv_dir / "bin" / "activate").is_file()
    assert "HOSTILEPROMPT" not in (venv_dir / "bin" / "activate").read_text()
    assert os.path.islink(venv_dir / "bin" / "python") or not extra.get("VIRTUALENV_COPIES")
    assert not (tmp_path / "sentinel").exists() and not (tmp_path / "startup-ran").exists()
    state = tree_state(venv_dir)
    faults.round()
    result = plain_python_run(runner, str(venv_dir), str(reqs), env=env)  # the no-op path too
    assert result.returncode == 0, result.stderr
    assert_same_tree(state, venv_dir, "an up-to-date venv")
    outside.check()


@pytest.mark.parametrize("how", ["interpreter-runs-create_venv", "--python"])
def test_a_fake_python3_first_on_path(runner: Runner, reqs: Path, tmp_path: Path, slow: bool, faults: Faults,
                                      how: str) -> None:
    slow_only(how, ["--python"], slow)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    for name in ("python3", "python", f"python3.{sys.version_info[1]}", "virtualenv", "pip"):
        sentinel_script(fake / name, tmp_path / "sentinel")
    env = runner.env(PATH=f"{fake}:{os.environ['PATH']}")
    venv_dir = tmp_path / "fake python venv"
    outside = Outside(faults, [tmp_path], [venv_dir])
    args = ("--python", PYTHON) if how == "--python" else ()
    faults.inject()
    faults.round()
    result = runner.run(*args, str(venv_dir), str(reqs), env=env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "sentinel").exists(), (tmp_path / "sentinel").read_text()
    check_venv(faults, venv_dir, BASE_PKGS)
    assert runner.run(*args, str(venv_dir), str(reqs), env=env).returncode == 0
    outside.check()


def test_umask_077(runner: Runner, wheelhouse: ToolRepo, tmp_path: Path, faults: Faults) -> None:
    token_wheel(wheelhouse.wheels, "eta", uuid.uuid4().hex)  # unpacked under this umask too
    reqs = wheelhouse.requirements("r.txt", BASE_REQS + "eta==1.0\n")
    venv_dir = tmp_path / "venv"
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs), prefix=("sh", "-c", 'umask 077 && exec "$@"', "sh"))
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, {**BASE_PKGS, "eta": "1.0"})
    writable = []
    for dirpath, dirnames, filenames in os.walk(venv_dir):
        for name in [*dirnames, *filenames, "."]:
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022:
                writable.append(f"{os.path.join(dirpath, name)} {stat.filemode(st.st_mode)}")
    assert not writable, f"group/world writable under umask 077: {writable[:10]}"
    assert os.stat(site_packages(venv_dir) / "eta.py").st_mode & 0o400
    outside.check()


@pytest.mark.parametrize("coercion", [True, False], ids=["LC_ALL=C", "LC_ALL=C-no-coercion"])
def test_the_c_locale_with_unicode_paths(runner: Runner, wheelhouse: ToolRepo, tmp_path: Path, faults: Faults,
                                         slow: bool, coercion: bool) -> None:
    slow_only(str(coercion), ["False"], slow)
    reqs = wheelhouse.requirements("réqs 日本.txt", BASE_REQS)
    drop = ["LANG", "LANGUAGE", "LC_CTYPE", "LC_MESSAGES", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONCOERCECLOCALE"]
    extra = {"LC_ALL": "C"} if coercion else {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    env = runner.env(drop=drop, **extra)
    (tmp_path / "é 日本").mkdir()
    venv_dir = tmp_path / "é 日本" / "venv ü"
    outside = Outside(faults, [tmp_path], [venv_dir], mine=[reqs])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs), env=env)
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, BASE_PKGS)
    state = tree_state(venv_dir)
    assert runner.run(str(venv_dir), str(reqs), env=env).returncode == 0
    assert_same_tree(state, venv_dir, "an up-to-date venv")
    reqs.write_text(BASE_REQS + "nope==1.0\n")  # an error naming a unicode path: one line
    expect_error(runner.run(str(venv_dir), str(reqs), env=env), {2}, ["réqs 日本.txt:3:"])
    assert_same_tree(state, venv_dir)
    outside.check()


@pytest.mark.parametrize("cache", ["CROS_VENV_CACHE", "XDG_CACHE_HOME"])
def test_home_unset(runner: Runner, reqs: Path, tmp_path: Path, faults: Faults, slow: bool, cache: str) -> None:
    slow_only(cache, ["XDG_CACHE_HOME"], slow)
    venv_dir = tmp_path / "venv"
    drop = ["HOME", "XDG_CACHE_HOME"]
    extra: dict[str, str] = {}
    if cache == "XDG_CACHE_HOME":  # a cache of its own: a cold build
        drop.append("CROS_VENV_CACHE")
        extra["XDG_CACHE_HOME"] = str(runner.own / "xdg")
    env = runner.env(drop=drop, **extra)
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs), env=env)
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, BASE_PKGS)
    if cache == "XDG_CACHE_HOME":
        assert (runner.own / "xdg" / "cros_venv" / "wheels").is_dir()
    outside.check()


def test_tmpdir_missing(runner: Runner, wheelhouse: ToolRepo, tmp_path: Path, faults: Faults) -> None:
    token_wheel(wheelhouse.wheels, "eta", uuid.uuid4().hex)  # something to unpack
    reqs = wheelhouse.requirements("r.txt", BASE_REQS + "eta==1.0\n")
    venv_dir = tmp_path / "tmpdir venv"  # quoted by shells: virtualenv runs for it
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs), env=runner.env(TMPDIR="/nonexistent/tmp"))
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, {**BASE_PKGS, "eta": "1.0"})
    outside.check()


def bad_pythons(tmp: Path, slow: bool) -> dict[str, str]:
    (tmp / "not-executable").write_text("#!/bin/sh\nexit 0\n")
    found = {"/etc/passwd": "/etc/passwd", "/bin/true": "/bin/true", "missing": str(tmp / "no" / "python3")}
    if slow:
        found.update({"/bin/false": "/bin/false", "a-directory": "/usr/bin",
                      "not-executable": str(tmp / "not-executable")})
    for old in ("2.7", "3.6", "3.8") if slow else ("3.8",):
        for p in Path("/root/.pyenv/versions").glob(f"{old}.*/bin/python{old}"):
            found[f"python{old}"] = str(p)
    return found


def test_bad_python_is_bad_input_whether_or_not_dir_exists(runner: Runner, reqs: Path, tmp_path: Path,
                                                           faults: Faults, slow: bool) -> None:
    """--python that is no usable interpreter: exit 2 with one line, the same line whether
    DIR exists or not, DIR not created, an existing venv untouched.
    """
    venv_dir = tmp_path / "venv"
    pythons = bad_pythons(tmp_path, slow)
    outside = Outside(faults, [tmp_path], [venv_dir])
    skeletons = runner.repo.cache / "skeletons"
    templates = sorted(os.listdir(skeletons)) if skeletons.is_dir() else []
    problems = []
    first = {}
    for name, path in pythons.items():
        faults.inject()
        faults.round()
        result = runner.run("--python", path, str(venv_dir), str(reqs))
        first[name] = result.stderr
        try:
            expect_error(result, {2}, [path])
            assert not venv_dir.exists(), "DIR was created"
        except AssertionError as e:
            problems.append(f"{name} (no DIR): {e}")
    assert (sorted(os.listdir(skeletons)) if skeletons.is_dir() else []) == templates, "a template was made"
    assert runner.run(str(venv_dir), str(reqs)).returncode == 0
    state = tree_state(venv_dir)
    for name, path in pythons.items():
        faults.inject()
        faults.round()
        result = runner.run("--python", path, str(venv_dir), str(reqs))
        try:
            expect_error(result, {2}, [path])
            assert result.stderr == first[name], f"another message when DIR exists: {result.stderr!r} " \
                                                 f"vs {first[name]!r}"
            assert_same_tree(state, venv_dir)
        except AssertionError as e:
            problems.append(f"{name} (DIR exists): {e}")
    assert not problems, "\n".join(problems)
    check_venv(faults, venv_dir, BASE_PKGS)
    outside.check()


LOCK_TIMEOUTS = {
    "env-abc": ({"CROS_VENV_LOCK_TIMEOUT": "abc"}, ()),
    "env-abc-with-help": ({"CROS_VENV_LOCK_TIMEOUT": "abc"}, ("--help",)),
    "env-nan": ({"CROS_VENV_LOCK_TIMEOUT": "nan"}, ()),
    "arg-nan": ({}, ("--lock-timeout", "nan")),
    "arg-abc": ({}, ("--lock-timeout", "abc")),
}


@pytest.mark.parametrize("case", list(LOCK_TIMEOUTS), ids=list(LOCK_TIMEOUTS))
def test_a_bad_lock_timeout_is_one_line(runner: Runner, reqs: Path, tmp_path: Path, faults: Faults,
                                        case: str) -> None:
    extra, args = LOCK_TIMEOUTS[case]
    venv_dir = tmp_path / "venv"
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(*args, str(venv_dir), str(reqs), env=runner.env(**extra))
    expect_error(result, {2}, ["CROS_VENV_LOCK_TIMEOUT" if extra else "lock-timeout"])
    assert not venv_dir.exists()
    outside.check()


@pytest.mark.parametrize("how", ["--python", "interpreter-runs-create_venv"])
def test_a_venvs_own_python_as_the_interpreter(built: tuple[ToolRepo, Path, Path], tmp_path: Path,
                                               faults: Faults, slow: bool, how: str) -> None:
    slow_only(how, ["interpreter-runs-create_venv"], slow)
    repo, first, reqs = built
    runner = Runner(repo, tmp_path)
    venv_dir = tmp_path / "second"
    python = str(first / "bin" / "python")
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.round()
    if how == "--python":
        result = runner.run("--python", python, str(venv_dir), str(reqs))
    else:
        result = runner.run(str(venv_dir), str(reqs), python=python)
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, BASE_PKGS)
    state = tree_state(venv_dir)
    again = (runner.run("--python", python, str(venv_dir), str(reqs)) if how == "--python"
             else runner.run(str(venv_dir), str(reqs), python=python))
    assert again.returncode == 0, again.stderr
    assert_same_tree(state, venv_dir, "an up-to-date venv")
    outside.check()


def test_no_network_at_all(runner: Runner, wheelhouse: ToolRepo, tmp_path: Path, faults: Faults) -> None:
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n is not permitted here")
    token_wheel(wheelhouse.wheels, "eta", uuid.uuid4().hex)
    reqs = wheelhouse.requirements("r.txt", BASE_REQS + "eta==1.0\n")
    venv_dir = tmp_path / "offline venv"
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs), prefix=("unshare", "-n"))
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, {**BASE_PKGS, "eta": "1.0"})
    assert runner.run(str(venv_dir), str(reqs), prefix=("unshare", "-n")).returncode == 0
    outside.check()
