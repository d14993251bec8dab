"""bin/check_requirements: the presubmit check of requirements files against pip_packages/."""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from packaging.utils import canonicalize_name

from cros_venv import wheels
from cros_venv.cache import Cache
from cros_venv.tools import check as checker
from tests.conftest import ToolRepo, WheelSpec, build_wheel

pytestmark = pytest.mark.e2e
LINE = re.compile(r"^\S.*:\d+: ")


def check(repo: ToolRepo, *args: str, cwd: Path | None = None) -> tuple[int, list[str]]:
    out = repo.command("check_requirements", *args, cwd=cwd)
    lines = out.stdout.splitlines()
    assert all(LINE.match(line) for line in lines), out.stdout
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, lines


def test_a_good_file_passes_and_unused_wheels_are_warnings(wheelhouse: ToolRepo) -> None:
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    code, lines = check(wheelhouse, str(reqs))
    assert code == 0
    unused = sorted(Path(line.split(":0:")[0]).name for line in lines)
    assert unused == ["beta-2.0-py3-none-any.whl", "delta-1.0-py3-none-any.whl", "gamma-1.0-py3-none-any.whl"]
    assert all(": warning: no given requirements file uses this wheel" in line for line in lines)
    code, lines = check(wheelhouse, "--strict", str(reqs))
    assert code == 1 and len(lines) == 3 and not any("warning" in line for line in lines)


def test_every_file_is_checked(wheelhouse: ToolRepo) -> None:
    one = wheelhouse.requirements("one.txt", "alpha==1.0\nbeta==1.0\n")
    two = wheelhouse.requirements("two.txt", "beta==2.0\ngamma[fast]==1.0\ndelta==1.0\n")
    assert check(wheelhouse, "--strict", str(one), str(two)) == (0, [])


def test_requirement_problems_come_with_file_and_line(wheelhouse: ToolRepo) -> None:
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta>=1\n--index-url https://x\n")
    code, lines = check(wheelhouse, str(reqs))
    assert code == 1
    assert any(line.startswith(f"{reqs}:2: beta is not pinned") for line in lines)
    assert any(line.startswith(f"{reqs}:3: --index-url would install from outside") for line in lines)


def test_missing_wheel_and_closure_problems_name_the_fix(wheelhouse: ToolRepo) -> None:
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nepsilon==9.0\n")
    code, lines = check(wheelhouse, str(reqs))
    assert code == 1
    assert any(line.startswith(f"{reqs}:1: alpha==1.0 needs beta>=1.0, which is not pinned") for line in lines)
    missing = next(line for line in lines if "no wheel for epsilon==9.0" in line)
    assert missing.startswith(f"{reqs}:2: ") and "fix: pip " in missing


def test_unused_wheels_are_not_reported_while_a_file_does_not_resolve(wheelhouse: ToolRepo) -> None:
    """alpha needs beta, which r.txt does not pin: which wheels r.txt would use is unknown."""
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\n")
    code, lines = check(wheelhouse, "--strict", str(reqs))
    assert code == 1
    assert lines == [f"{reqs}:1: alpha==1.0 needs beta>=1.0, which is not pinned; add beta==2.0 to the requirements",
                     f"{wheelhouse.wheels}:0: warning: which wheels are unused is not reported: {reqs} did not "
                     "resolve (above); fix that and run again"]


def test_several_unpinned_dependencies_are_one_summary_then_pins_to_paste(wheelhouse: ToolRepo) -> None:
    reqs = wheelhouse.requirements("r.txt", "# old, pinned at the top only\ngamma[fast]==1.0\nalpha==1.0\n")
    code, lines = check(wheelhouse, str(reqs), cwd=wheelhouse.root)  # in the checkout: bin/vendor_wheels
    assert code == 1
    summary, *pins, note = lines
    assert summary == (f"{reqs}:2: {reqs} is not closed: 2 dependencies of its pins are not pinned; keep every pin "
                       f"and add the closure with its wheels: bin/vendor_wheels --lock {reqs} -o "
                       f"{reqs} (the dependencies below; by hand: add each line after its `FILE:LINE: `, versions "
                       f"from {wheelhouse.wheels}, VERSION: none fits)")
    assert pins == [f"{reqs}:2: delta==1.0  # needed by gamma==1.0 (delta==1.0)",
                    f"{reqs}:3: beta==2.0  # needed by alpha==1.0 (beta>=1.0)"]
    assert "which wheels are unused is not reported" in note
    reqs.write_text(reqs.read_text() + "".join(line.split(": ", 1)[1] + "\n" for line in pins))  # pasted
    assert check(wheelhouse, str(reqs))[0] == 0


def test_several_missing_wheels_are_one_summary_with_the_vendor_command(wheelhouse: ToolRepo) -> None:
    reqs = wheelhouse.requirements("r.txt", "epsilon==9.0\nzeta==1.0\nbeta==7.0\n")
    target = ("--python", "3.12", "--platform", "manylinux_2_17_x86_64")
    code, lines = check(wheelhouse, *target, str(reqs), cwd=wheelhouse.root.parent)  # as from a repo beside it
    assert code == 1
    assert lines[0] == (
        f"{reqs}:1: 3 pins have no wheel in {wheelhouse.wheels} for Python 3.12 (3.12.13) on manylinux_2_17_x86_64 "
        f"(best tag cp312-cp312-manylinux_2_17_x86_64); add them all: infra_virtualenv/bin/vendor_wheels "
        f"{reqs} --python 3.12 --platform manylinux_2_17_x86_64; or, if not every dependency is pinned yet, pin the "
        f"closure too: infra_virtualenv/bin/vendor_wheels --lock {reqs} -o {reqs} --python 3.12 --platform "
        "manylinux_2_17_x86_64 (the pins below; -v: each one's tags and pip command)")
    assert lines[1:4] == [
        f"{reqs}:1: no wheel for epsilon==9.0", f"{reqs}:2: no wheel for zeta==1.0",
        f"{reqs}:3: no wheel for beta==7.0 (2 other wheels of beta present)"]
    code, verbose = check(wheelhouse, *target, "-v", str(reqs), cwd=wheelhouse.root.parent)
    assert verbose[0] == lines[0] and all("; fix: pip " in line for line in verbose[1:4])


def test_a_wheel_for_another_platform_only(wheelhouse: ToolRepo) -> None:
    wheelhouse.add_wheel(WheelSpec("native", "1.0", tag="cp311-cp311-macosx_11_0_arm64"))
    reqs = wheelhouse.requirements("r.txt", "native==1.0\n")
    code, lines = check(wheelhouse, "--python", "3.11", "--platform", "macosx_11_0_arm64",
                        "--platform", "manylinux_2_17_x86_64", str(reqs))
    assert code == 1
    (line,) = [line for line in lines if "native" in line and "warning" not in line]
    assert line.startswith(f"{reqs}:1: [Python 3.11 (3.11.15) on manylinux_2_17_x86_64] no wheel for native==1.0")
    assert "native-1.0-cp311-cp311-macosx_11_0_arm64.whl" in line
    assert line.endswith("fix: pip download --only-binary=:all: --no-deps --python-version 3.11 --implementation cp "
                         "--abi cp311 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform "
                         "manylinux_2_16_x86_64 --platform manylinux_2_15_x86_64 --platform manylinux_2_14_x86_64 "
                         "--platform manylinux_2_13_x86_64 --platform manylinux_2_12_x86_64 --platform "
                         "manylinux2010_x86_64 --platform manylinux_2_11_x86_64 --platform manylinux_2_10_x86_64 "
                         "--platform manylinux_2_9_x86_64 --platform manylinux_2_8_x86_64 --platform manylinux_2_7_x86_64 "
                         "--platform manylinux_2_6_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 "
                         "-d pip_packages native==1.0")
    code, _ = check(wheelhouse, "--python", "3.11", "--platform", "macosx_11_0_arm64", str(reqs))
    assert code == 0


def test_a_dependency_missing_on_one_target_only(wheelhouse: ToolRepo) -> None:
    wheelhouse.add_wheel(WheelSpec("compat", "1.0", requires=['backport>=1 ; python_version < "3.11"']))
    reqs = wheelhouse.requirements("r.txt", "compat==1.0\n")
    code, lines = check(wheelhouse, "--python", "3.10", "--python", "3.11", "--platform", "manylinux_2_17_x86_64",
                        str(reqs))
    errors = [line for line in lines if "warning" not in line]
    assert code == 1 and len(errors) == 1
    assert errors[0].startswith(f"{reqs}:1: [Python 3.10 (3.10.20) on manylinux_2_17_x86_64] compat==1.0 needs backport>=1")


def test_hashes_are_checked(wheelhouse: ToolRepo) -> None:
    reqs = wheelhouse.requirements("r.txt", f"beta==1.0 --hash=sha256:{'0' * 64}\n")
    code, lines = check(wheelhouse, str(reqs))
    assert code == 1 and any(line.startswith(f"{reqs}:1: beta-1.0-py3-none-any.whl does not match any --hash")
                             for line in lines)


def patch_headers(wheel: Path, local: tuple[int, int], central: tuple[int, int]) -> None:
    """OR `value` into the 16-bit field at `offset` of every local and central zip header:
    (6, 1) / (8, 1) marks members encrypted, (8, 99) / (10, 99) sets a compression method
    zipfile does not know (with 0 in it: deflate, 8, becomes 107).
    """
    data = bytearray(wheel.read_bytes())
    for signature, (offset, value) in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        i = data.find(signature)
        while i >= 0:
            field = int.from_bytes(data[i + offset:i + offset + 2], "little") | value
            data[i + offset:i + offset + 2] = field.to_bytes(2, "little")
            i = data.find(signature, i + 4)
    wheel.write_bytes(bytes(data))


def inflate_metadata(wheel: Path, padding: int) -> None:
    """Give the wheel's METADATA a body of `padding` bytes (deflated to a few KiB: a zip bomb)."""
    with zipfile.ZipFile(wheel) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    name = next(m for m in members if m.endswith(".dist-info/METADATA"))
    members[name] += b"x" * padding
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)


@pytest.mark.parametrize("damage", ["lfs-pointer", "truncated", "bad-crc", "bad-name", "competing", "wrong-metadata",
                                    "directory", "dangling-symlink", "encrypted", "unknown-compression",
                                    "metadata-bomb"])
def test_broken_wheels_in_pip_packages(wheelhouse: ToolRepo, tmp_path: Path, damage: str) -> None:
    wheel = build_wheel(tmp_path, WheelSpec("omega", "1.0", files={"omega.py": b"X = 1\n" * 500}))
    dest = wheelhouse.wheels / wheel.name
    data = wheel.read_bytes()
    expected = {
        "lfs-pointer": "is a Git LFS pointer, not a wheel",
        "truncated": "is not a valid zip, truncated or corrupt",
        "bad-crc": "is corrupt (omega.py fails its CRC check)",
        "bad-name": "is not a valid wheel file name",
        "competing": "competes with omega-1.0-py2.py3-none-any.whl for omega==1.0 on tag py3-none-any",
        "wrong-metadata": "says it is omega 1.0 in its METADATA, not psi 1.0",
        "directory": "is a directory, not a wheel file; remove it, or put the wheel file there",
        "dangling-symlink": "is a broken symbolic link, not a wheel file; remove it, or link it to the wheel file",
        "encrypted": "is not a valid zip, truncated or corrupt (File 'omega.py' is encrypted",
        "unknown-compression": "is not a valid zip, truncated or corrupt (That compression method is not supported)",
        "metadata-bomb": "is not a valid zip, truncated or corrupt (its omega-1.0.dist-info/METADATA would be "
                         "16777264 bytes unpacked",
    }[damage]
    if damage == "lfs-pointer":
        dest.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 1234\n")
    elif damage == "truncated":
        dest.write_bytes(data[: len(data) - 40])
    elif damage == "bad-crc":
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf, zipfile.ZipFile(wheel) as src:
            for info in src.infolist():
                zf.writestr(info.filename, src.read(info.filename), zipfile.ZIP_STORED)
        raw = dest.read_bytes()
        i = raw.index(b"X = 1")
        dest.write_bytes(raw[:i] + b"Y" + raw[i + 1:])
    elif damage == "bad-name":
        dest = wheelhouse.wheels / "omega_1.0.whl"
        shutil.copy(wheel, dest)
    elif damage == "encrypted":
        dest.write_bytes(data)
        patch_headers(dest, (6, 1), (8, 1))
    elif damage == "unknown-compression":
        dest.write_bytes(data)
        patch_headers(dest, (8, 99), (10, 99))
    elif damage == "metadata-bomb":
        dest.write_bytes(data)
        inflate_metadata(dest, 16 << 20)
    elif damage == "directory":
        dest.mkdir()
    elif damage == "dangling-symlink":
        dest.symlink_to(wheelhouse.wheels / "gone.whl")
    elif damage == "competing":
        shutil.copy(wheel, dest)
        shutil.copy(wheel, wheelhouse.wheels / "omega-1.0-py2.py3-none-any.whl")
        dest = wheelhouse.wheels / "omega-1.0-py3-none-any.whl"
    else:
        dest = wheelhouse.wheels / "psi-1.0-py3-none-any.whl"
        shutil.copy(wheel, dest)
    reqs = wheelhouse.requirements("r.txt", "beta==1.0\n")
    if damage == "bad-crc":  # the bytes are only read with --strict
        assert check(wheelhouse, str(reqs))[0] == 0
    code, lines = check(wheelhouse, "--strict", str(reqs))
    assert code == 1
    (line,) = [line for line in lines if line.startswith(str(dest)) and "no given requirements file" not in line]
    assert line.startswith(f"{dest}:0: {expected}"), line
    if damage in ("truncated", "bad-crc", "wrong-metadata"):
        assert line.endswith("replace it: pip wheel --no-deps -w pip_packages " +
                             ("psi" if damage == "wrong-metadata" else "omega") + "==1.0")


def test_a_broken_wheel_that_is_pinned_is_reported_once(wheelhouse: ToolRepo) -> None:
    (wheelhouse.wheels / "beta-1.0-py3-none-any.whl").write_text("version https://git-lfs.github.com/spec/v1\n")
    reqs = wheelhouse.requirements("r.txt", "alpha==1.0\nbeta==1.0\n")
    code, lines = check(wheelhouse, str(reqs))
    assert code == 1
    assert [line for line in lines if "warning" not in line] == [
        f"{wheelhouse.wheels / 'beta-1.0-py3-none-any.whl'}:0: is a Git LFS pointer, not a wheel; "
        "fetch it with `git lfs pull` (or commit the wheel itself)"]


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--platform", "nowhere"], "--platform nowhere: not a platform tag", id="platform"),
    pytest.param(["--platform", "manylinux_2_2000000_x86_64"], "--platform manylinux_2_2000000_x86_64: out of range; "
                 "the allowed range is manylinux_2_5_x86_64 to manylinux_2_99_x86_64", id="platform-range"),
    pytest.param(["--python", "3.100000"], "--python 3.100000: out of range; the allowed range is 3.6 to 3.99",
                 id="python-range"),
])
def test_bad_arguments(wheelhouse: ToolRepo, args: list[str], message: str) -> None:
    out = wheelhouse.command("check_requirements", *args, "r.txt")
    assert out.returncode == 2 and out.stderr.startswith(f"check_requirements: error: {message}")
    assert len(out.stderr.splitlines()) == 1


def test_a_declared_minor_is_checked_as_its_newest_patch_release(tool_repo: ToolRepo) -> None:
    tool_repo.add_wheel(WheelSpec("picky", "1.0", requires_python="!=3.9.0, !=3.9.1"))
    reqs = tool_repo.requirements("r.txt", "picky==1.0\n")
    assert check(tool_repo, "--python", "3.9", "--platform", "manylinux_2_17_x86_64", "--strict", str(reqs)) == (0, [])
    code, lines = check(tool_repo, "--python", "3.9.1", "--python", "3.9", "--platform", "manylinux_2_17_x86_64",
                        str(reqs))
    assert code == 1 and lines == [
        f"{reqs}:1: [Python 3.9.1 on manylinux_2_17_x86_64] picky-1.0-py3-none-any.whl requires Python "
        "!=3.9.0, !=3.9.1, but the target is Python 3.9.1; pin another version"]


@dataclass(frozen=True)
class Memory:
    """check.Verified over one real wheel, counting the wheels verify() actually opens."""

    cache: Cache
    wheel: wheels.Wheel
    opened: list[str]

    def verdict(self) -> str | None:
        verified = checker.Verified(self.cache, os.path.dirname(self.wheel.path))
        problem = verified.check(self.wheel, crc=True)
        verified.save()
        return problem

    @property
    def path(self) -> Path:
        return Path(checker.Verified(self.cache, os.path.dirname(self.wheel.path)).path)


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Memory:
    cache = Cache(str(tmp_path / "cache"))
    cache.ensure_dirs()
    (tmp_path / "pip_packages").mkdir()
    path = build_wheel(tmp_path / "pip_packages", WheelSpec("omega", "1.0", files={"omega.py": b"X = 1\n" * 500}))
    (wheel,) = wheels.Wheelhouse.scan(str(path.parent)).wheels[canonicalize_name("omega")]
    opened: list[str] = []
    verify = checker.verify

    def counting(w: wheels.Wheel, crc: bool) -> str | None:
        opened.append(w.filename)
        return verify(w, crc)

    monkeypatch.setattr(checker, "verify", counting)
    return Memory(cache, wheel, opened)


def _keep_mtime(path: Path, change: Callable[[], object]) -> None:
    st = os.stat(path)
    change()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _chmod_round_trip(path: Path) -> None:
    """Changes only the ctime (waiting out the clock's granularity)."""
    before = os.stat(path)
    deadline = time.monotonic() + 2
    while os.stat(path).st_ctime_ns == before.st_ctime_ns and time.monotonic() < deadline:
        time.sleep(0.005)
        os.chmod(path, 0o600)
        os.chmod(path, stat.S_IMODE(before.st_mode))


def _replace(path: Path) -> None:
    copy = path.with_suffix(".copy")
    shutil.copy2(path, copy)
    os.replace(copy, path)


def _corrupt_in_place(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b"X = 1")
    data[i] = ord("Y")
    path.write_bytes(bytes(data))


CHANGES = [
    pytest.param(lambda p: _keep_mtime(p, lambda: p.write_bytes(p.read_bytes() + b"\0")), id="size-mtime-restored"),
    pytest.param(lambda p: os.utime(p, ns=(0, os.stat(p).st_mtime_ns + 10**9)), id="mtime"),
    pytest.param(_chmod_round_trip, id="ctime-chmod-round-trip"),
    pytest.param(lambda p: _keep_mtime(p, lambda: _replace(p)), id="inode-file-replaced"),
]


def test_a_verified_wheel_is_remembered(memory: Memory) -> None:
    assert memory.verdict() is None and memory.verdict() is None
    assert memory.opened == ["omega-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("change", CHANGES)
def test_the_remembered_verdict_is_not_used_once_the_file_changed(memory: Memory, change: Callable[[Path], None]) -> None:
    memory.verdict()
    change(Path(memory.wheel.path))
    memory.verdict()
    assert len(memory.opened) == 2


def test_a_wheel_corrupted_in_place_with_its_size_and_mtime_kept_is_verified_again(memory: Memory) -> None:
    """Only the ctime tells: git's index keys a file by it too."""
    assert memory.verdict() is None
    path = Path(memory.wheel.path)
    _keep_mtime(path, lambda: _corrupt_in_place(path))
    problem = memory.verdict()
    assert problem is not None and problem.startswith("is corrupt (omega.py fails its CRC check)")


BAD_MEMORY: list[Any] = [
    pytest.param(lambda p: p.mkdir(), id="unreadable-directory"),
    pytest.param(lambda p: p.write_bytes(p.read_bytes()[:20]), id="truncated"),
    pytest.param(lambda p: p.write_bytes(b"\xff\xfe\x00"), id="not-utf8"),
    pytest.param(lambda p: p.write_text("[1, 2]"), id="json-list"),
    pytest.param(lambda p: p.write_text('{"format": 2, "wheels": []}'), id="wheels-a-list"),
    pytest.param(lambda p: p.write_text(re.sub(r"\[\d+", '["1"', p.read_text())), id="strings-not-numbers"),
    pytest.param(lambda p: p.write_text(re.sub(r"\[(\d+)", r"[\1.0", p.read_text())), id="floats-not-ints"),
    pytest.param(lambda p: p.write_text(re.sub(r", \d+\]", "]", p.read_text())), id="too-short"),
    pytest.param(lambda p: p.write_text(p.read_text().replace('"format": 2', '"format": 1')), id="other-format"),
    pytest.param(lambda p: p.write_text("[" * 100_000), id="nested-too-deeply"),
]


@pytest.mark.parametrize("damage", BAD_MEMORY)
def test_a_bad_memory_file_is_ignored_and_rebuilt(memory: Memory, damage: Callable[[Path], None]) -> None:
    memory.verdict()
    is_dir = False
    try:
        damage(memory.path)
    except FileExistsError:  # unreadable-directory: replace the file by a directory
        memory.path.unlink()
        damage(memory.path)
        is_dir = True
    assert memory.verdict() is None
    assert len(memory.opened) == 2
    if not is_dir:
        assert memory.verdict() is None and len(memory.opened) == 2  # rebuilt


def test_a_lock_is_checked_for_each_declared_target(tool_repo: ToolRepo) -> None:
    from cros_venv.digest import file_sha256

    pure = build_wheel(tool_repo.wheels, WheelSpec("pure", "1.0"))
    old = build_wheel(tool_repo.wheels, WheelSpec("old", "1.0"))
    binary = build_wheel(tool_repo.wheels, WheelSpec("binpkg", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64"))
    rows = {"pure": (pure, ""), "old": (old, "marker = \"python_version < '3.11'\"\n"),
            "binpkg": (binary, "")}
    text = 'lock-version = "1.0"\ncreated-by = "test"\n'
    for name, (wheel, marker) in rows.items():
        version = wheel.name.split("-")[1]
        text += (f'\n[[packages]]\nname = "{name}"\nversion = "{version}"\n{marker}wheels = [{{ name = "{wheel.name}", '
                 f'url = "https://x/{wheel.name}", hashes = {{ sha256 = "{file_sha256(str(wheel))}" }} }}]\n')
    lock = tool_repo.requirements("pylock.toml", text)
    ok = tool_repo.command("check_requirements", str(lock), "--python", "3.11", "--platform", "manylinux_2_17_x86_64")
    assert (ok.returncode, ok.stdout) == (0, f"{old}:0: warning: no given requirements file uses this wheel for any "
                                             "target; remove it, or pass the files and targets that use it\n")
    bad = tool_repo.command("check_requirements", str(lock), "--python", "3.10", "--platform", "manylinux_2_17_x86_64")
    assert bad.returncode == 1
    line, unused = bad.stdout.splitlines()
    assert unused == (f"{tool_repo.wheels}:0: warning: which wheels are unused is not reported: {lock} did not "
                      "resolve (above); fix that and run again")
    assert line.startswith(f"{lock}:15: the lock names no wheel of binpkg==2.0 that fits Python 3.10 (3.10.20) on "
                           f"manylinux_2_17_x86_64 (best tag cp310-cp310-manylinux_2_17_x86_64) ({binary.name}): "
                           "it was not made for this interpreter; lock again with it among the targets")
    assert line.endswith("-o pylock.toml --python 3.10 ...), or use an interpreter it was made for")
