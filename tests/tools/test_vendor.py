"""bin/vendor_wheels: fill pip_packages/ for every declared target; nothing changes on failure.

The package index here is a local directory (`--find-links DIR --no-index`), so the tests
run offline; the code path is the one a real index takes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cros_venv.digest import file_sha256
from tests.conftest import PYTHON, ToolRepo, WheelSpec, build_wheel, snapshot

pytestmark = pytest.mark.e2e

BACKEND = '''
"""A PEP 517 backend with no dependencies: builds a one-module pure wheel."""
import base64, hashlib, os, zipfile

NAME, VERSION = "sdistpkg", "0.5"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}.py": b"VERSION = '0.5'\\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = "".join(
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).decode().rstrip('=')},{len(d)}\\n"
        for p, d in files.items()) + f"{dist_info}/RECORD,,\\n"
    files[f"{dist_info}/RECORD"] = record.encode()
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for p, d in files.items():
            zf.writestr(p, d)
    return name
'''


def failing_backend(message: str) -> str:
    """A PEP 517 backend whose build fails the way a compiled extension's does, saying `message`."""
    return f"import sys\n\ndef build_wheel(*args, **kwargs):\n    sys.stderr.write({message!r})\n    raise SystemExit(1)\n"


def make_sdist(directory: Path, name: str = "sdistpkg", backend: str = BACKEND) -> Path:
    out = directory / f"{name}-0.5.tar.gz"
    members = {
        f"{name}-0.5/pyproject.toml": b'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        f"{name}-0.5/backend.py": backend.encode(),
        f"{name}-0.5/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.5\n".encode(),
    }
    with tarfile.open(out, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A local stand-in for the package index."""
    reg = tmp_path / "registry"
    reg.mkdir()
    build_wheel(reg, WheelSpec("purepkg", "1.0"))
    build_wheel(reg, WheelSpec("purepkg", "2.0"))
    for py in ("311", "312"):
        build_wheel(reg, WheelSpec("binpkg", "2.0", tag=f"cp{py}-cp{py}-manylinux_2_17_x86_64"))
    make_sdist(reg)
    return reg


TARGETS = ("--python", "3.11", "--python", "3.12", "--platform", "manylinux_2_17_x86_64")


def vendor(repo: ToolRepo, registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return repo.command("vendor_wheels", *args, "--find-links", str(registry), "--no-index")


def test_vendors_pure_binary_and_sdist_packages_for_every_target(tool_repo: ToolRepo, registry: Path) -> None:
    reqs = tool_repo.requirements("r.txt", "purepkg==1.0\nbinpkg==2.0\nsdistpkg==0.5\n")
    out = vendor(tool_repo, registry, *TARGETS, str(reqs))
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(out.stdout.splitlines()) == [
        "added binpkg-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "added binpkg-2.0-cp312-cp312-manylinux_2_17_x86_64.whl",
        "added purepkg-1.0-py3-none-any.whl",
        "added sdistpkg-0.5-py3-none-any.whl",
    ]
    again = vendor(tool_repo, registry, *TARGETS, str(reqs))
    assert again.returncode == 0 and not any(line.startswith("added") for line in again.stdout.splitlines())
    assert "already there binpkg-2.0-cp312-cp312-manylinux_2_17_x86_64.whl" in again.stdout
    check = tool_repo.command("check_requirements", *TARGETS, str(reqs))
    assert check.returncode == 0, check.stdout


def test_hashes_are_written_pip_compile_style(tool_repo: ToolRepo, registry: Path, tmp_path: Path) -> None:
    reqs = tool_repo.requirements("r.txt", "# tools\npurepkg==1.0  # why\nbinpkg==2.0 ; python_version >= '3.11'\n")
    out = vendor(tool_repo, registry, *TARGETS, "--hashes", str(reqs))
    assert out.returncode == 0, out.stderr
    text = reqs.read_text()
    assert text.startswith("# tools\n# why\npurepkg==1.0 \\\n    --hash=sha256:")
    assert text.count("--hash=sha256:") == 3  # one for purepkg, one per binpkg wheel
    assert tool_repo.command("check_requirements", *TARGETS, str(reqs)).returncode == 0
    # The rewritten file still builds, and its hashes are enforced.
    venv = tool_repo.run(str(tmp_path / "v"), str(reqs))
    assert venv.returncode == 0, venv.stderr


def test_a_missing_platform_fails_and_changes_nothing(tool_repo: ToolRepo, registry: Path) -> None:
    reqs = tool_repo.requirements("r.txt", "purepkg==1.0\nbinpkg==2.0\n")
    before = snapshot(tool_repo.wheels)
    out = vendor(tool_repo, registry, "--python", "3.11", "--platform", "macosx_11_0_arm64", str(reqs))
    assert out.returncode == 1
    assert out.stderr.startswith("vendor_wheels: error: ") and "binpkg==2.0" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1
    assert snapshot(tool_repo.wheels) == before


def test_every_pin_is_tried_and_every_failure_told_with_its_reason(tool_repo: ToolRepo, registry: Path) -> None:
    make_sdist(registry, "needsheaders", failing_backend(
        "src/x.c:1:10: fatal error: libfoo/foo.h: No such file or directory\ncompilation terminated.\n"
        "error: command '/usr/bin/gcc' failed with exit code 1\n"))
    make_sdist(registry, "needscc", failing_backend("error: [Errno 2] No such file or directory: 'x86_64-linux-gnu-gcc'\n"))
    make_sdist(registry, "oddfail", failing_backend("error: the frobnicator is out of frobs\n"))
    reqs = tool_repo.requirements("r.txt", "purepkg==1.0\nneedsheaders==0.5\npurepkg2==1.0\nneedscc==0.5\n"
                                           "purepkg3==9.9\noddfail==0.5\n")
    reqs.write_text(reqs.read_text().replace("purepkg2==1.0", "purepkg==2.0 ; python_version < '3'")
                    .replace("purepkg3==9.9", "binpkg==9.9"))
    before = snapshot(tool_repo.wheels)
    out = vendor(tool_repo, registry, str(reqs))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    summary, *lines = out.stderr.splitlines()
    assert summary == ("vendor_wheels: error: 4 of the 5 pins that need wheels cannot be vendored (below, one a line); "
                       "nothing was changed: fix or drop them, then run again")
    here = "Python {}.{} on this machine".format(*sys.version_info)
    no_wheel = f"no wheel for {here} on the index, and building one from its sdist"
    assert lines == [
        f"vendor_wheels: error: {reqs}:2: needsheaders==0.5: {no_wheel} needs C headers that are not installed "
        "(libfoo/foo.h); pin a version that has wheels for it",
        f"vendor_wheels: error: {reqs}:4: needscc==0.5: {no_wheel} needs a compiler that is not installed "
        "(x86_64-linux-gnu-gcc); pin a version that has wheels for it",
        f"vendor_wheels: error: {reqs}:5: binpkg==9.9: no such version on the index (its newest: 2.0); "
        "pin one of its versions",
        f"vendor_wheels: error: {reqs}:6: oddfail==0.5: pip failed: error: the frobnicator is out of frobs",
    ]
    assert snapshot(tool_repo.wheels) == before


def test_offline_fails_clearly_and_changes_nothing(tool_repo: ToolRepo) -> None:
    reqs = tool_repo.requirements("r.txt", "purepkg==1.0\n")
    before = snapshot(tool_repo.wheels)
    # A port nothing listens on: the index cannot be reached, as when offline.
    out = tool_repo.command("vendor_wheels", "--index-url", "http://127.0.0.1:9/simple", str(reqs))
    assert out.returncode == 1
    assert out.stderr.strip() == ("vendor_wheels: error: cannot reach the package index for purepkg==1.0 (offline?); "
                                  "nothing was changed: run again with network access")
    assert snapshot(tool_repo.wheels) == before


@pytest.mark.skipif(subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0,
                    reason="unshare -n is not permitted here")
def test_with_no_network_at_all(tool_repo: ToolRepo) -> None:
    reqs = tool_repo.requirements("r.txt", "purepkg==1.0\n")
    before = snapshot(tool_repo.wheels)
    env = tool_repo.env(PATH=f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}")
    out = subprocess.run(["unshare", "-n", str(tool_repo.root / "bin" / "vendor_wheels"), str(reqs)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "cannot reach the package index" in out.stderr, out.stderr
    assert snapshot(tool_repo.wheels) == before


def test_bad_requirements_are_reported_before_any_download(tool_repo: ToolRepo, registry: Path) -> None:
    reqs = tool_repo.requirements("r.txt", "purepkg>=1.0\n")
    out = vendor(tool_repo, registry, str(reqs))
    assert out.returncode == 2 and f"{reqs}:1: purepkg is not pinned" in out.stderr


def test_hashes_are_keyed_by_name_and_version_per_line(tool_repo: ToolRepo, registry: Path) -> None:
    reqs = tool_repo.requirements("r.txt", 'purepkg==1.0 ; python_version < "3.12"\n'
                                           'purepkg==2.0 ; python_version >= "3.12"\n')
    out = vendor(tool_repo, registry, *TARGETS, "--hashes", str(reqs))
    assert out.returncode == 0, out.stderr
    one, two = (file_sha256(str(tool_repo.wheels / f"purepkg-{v}-py3-none-any.whl")) for v in ("1.0", "2.0"))
    assert reqs.read_text() == (f'purepkg==1.0 ; python_version < "3.12" \\\n    --hash=sha256:{one}\n'
                                f'purepkg==2.0 ; python_version >= "3.12" \\\n    --hash=sha256:{two}\n')
    check = tool_repo.command("check_requirements", *TARGETS, str(reqs))
    assert check.returncode == 0, check.stdout


A, B, C = "a" * 64, "b" * 64, "c" * 64
HASHED = [
    pytest.param("alpha==1.0\n", f"alpha==1.0 \\\n    --hash=sha256:{A}\n", id="plain"),
    pytest.param("alpha==1.0  # why\n", f"# why\nalpha==1.0 \\\n    --hash=sha256:{A}\n", id="comment"),
    pytest.param("alpha==1.0\t# why\n", f"# why\nalpha==1.0 \\\n    --hash=sha256:{A}\n", id="comment-after-tab"),
    pytest.param(f"Alpha \\\n  == 1.0.0 \\\n  --hash=sha256:{C}\n", f"Alpha == 1.0.0 \\\n    --hash=sha256:{A}\n",
                 id="continued-and-rehashed"),
    pytest.param('alpha[x]==1.0 ; python_version < "3.12"\n',
                 f'alpha[x]==1.0 ; python_version < "3.12" \\\n    --hash=sha256:{A}\n', id="marker-and-extras"),
    pytest.param("alpha==2.0\n", f"alpha==2.0 \\\n    --hash=sha256:{B} \\\n    --hash=sha256:{C}\n", id="two-wheels"),
    pytest.param("# head\n\n-r other.txt\n--no-index\nbeta==1.0\n", "# head\n\n-r other.txt\n--no-index\nbeta==1.0\n",
                 id="untouched"),
]


@pytest.mark.parametrize(("text", "expected"), HASHED)
def test_with_hashes(text: str, expected: str) -> None:
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from cros_venv.tools import vendor

    hashes = {(canonicalize_name("alpha"), Version("1.0")): [A], (canonicalize_name("alpha"), Version("2.0")): [C, B]}
    assert vendor.with_hashes(text, hashes) == expected


def test_a_newer_glibc_target_takes_an_older_manylinux_wheel(tool_repo: ToolRepo, registry: Path) -> None:
    """pip does not expand manylinux_2_28 to the manylinux_2_17 wheel the index has: every
    platform is passed to it. (Python 3.12: not the one running, so `pip wheel`'s fallback
    cannot find the wheel for it either.)"""
    reqs = tool_repo.requirements("r.txt", "binpkg==2.0\n")
    out = vendor(tool_repo, registry, "--python", "3.12", "--platform", "manylinux_2_28_x86_64", str(reqs))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["added binpkg-2.0-cp312-cp312-manylinux_2_17_x86_64.whl"]


def _lock(registry: Path, files: list[str], tamper: str = "") -> str:
    """A pylock.toml for purepkg 1.0 and binpkg 2.0 naming `files` of the registry by file:// URL."""
    out = 'lock-version = "1.0"\ncreated-by = "test"\n'
    for name, version in (("purepkg", "1.0"), ("binpkg", "2.0")):
        wheels = [f for f in files if f.startswith(f"{name}-{version}-")]
        rows = ", ".join(f'{{ url = "{(registry / f).as_uri()}", hashes = {{ sha256 = "'
                         f'{"0" * 64 if f == tamper else file_sha256(str(registry / f))}" }} }}' for f in wheels)
        out += f'\n[[packages]]\nname = "{name}"\nversion = "{version}"\nwheels = [{rows}]\n'
    return out


BINARY = [f"binpkg-2.0-cp{py}-cp{py}-manylinux_2_17_x86_64.whl" for py in ("311", "312")]


def test_a_lock_vendors_exactly_its_wheels_for_the_targets(tool_repo: ToolRepo, registry: Path) -> None:
    lock = tool_repo.requirements("pylock.toml", _lock(registry, ["purepkg-1.0-py3-none-any.whl", *BINARY]))
    result = vendor(tool_repo, registry, str(lock), "--python", "3.11", "--platform", "manylinux_2_17_x86_64")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"added {BINARY[0]}\nadded purepkg-1.0-py3-none-any.whl\n"  # not the cp312 wheel
    assert (tool_repo.wheels / BINARY[0]).read_bytes() == (registry / BINARY[0]).read_bytes()
    check = tool_repo.command("check_requirements", str(lock), "--python", "3.11", "--platform",
                              "manylinux_2_17_x86_64")
    assert (check.returncode, check.stdout) == (0, "")


def test_a_lock_whose_hash_does_not_match_changes_nothing(tool_repo: ToolRepo, registry: Path) -> None:
    lock = tool_repo.requirements("pylock.toml", _lock(registry, ["purepkg-1.0-py3-none-any.whl", *BINARY],
                                                       tamper=BINARY[1]))
    before = snapshot(tool_repo.wheels)
    result = vendor(tool_repo, registry, str(lock), *TARGETS)
    assert result.returncode == 1
    sha = file_sha256(str(registry / BINARY[1]))
    assert result.stderr == (f"vendor_wheels: error: {lock}:9: {BINARY[1]} fetched for binpkg==2.0 does not match the "
                             f"lock's hash (its sha256 is {sha}, the lock's {'0' * 64}); nothing was changed: check "
                             "where it came from, or lock again\n")
    assert snapshot(tool_repo.wheels) == before


def test_a_lock_with_no_wheel_for_a_target_says_so(tool_repo: ToolRepo, registry: Path) -> None:
    lock = tool_repo.requirements("pylock.toml", _lock(registry, ["purepkg-1.0-py3-none-any.whl", BINARY[0]]))
    result = vendor(tool_repo, registry, str(lock), *TARGETS)
    assert result.returncode == 1
    assert result.stderr.startswith(f"vendor_wheels: error: {lock}:9: binpkg==2.0: the lock names no wheel for "
                                    "Python 3.12 (3.12.13) on manylinux_2_17_x86_64")
    assert result.stderr.endswith(f"({BINARY[0]}); lock for that target too, or drop it\n")
