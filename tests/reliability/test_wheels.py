"""Bad wheels and a damaged cache (CONTRACT.md items 1-4 and 7).

A working venv is rebuilt with requirements that pin a bad wheel: the build fails with exit
1 or 2 and one `create_venv: error:` line naming the wheel, the old venv is left (or put
back) byte for byte, no cache entry is made for the bad bytes, nothing is written outside,
and a later build with a good wheel of the same name works. Wheels changed after a build
(in place with size and mtime restored, renamed over, appended to) are noticed. An edit
through a venv's hard link into the cache, or a damaged cache entry, never reaches a later
venv.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import PYTHON, ToolRepo, WheelSpec, build_wheel
from tests.reliability._common_b import (
    BASE_PKGS,
    BASE_REQS,
    MEASURE,
    Member,
    Outside,
    Runner,
    assert_same_tree,
    cache_file_for,
    check_venv,
    expect_error,
    marker_wheels,
    raw_zip,
    record_for,
    replace_file,
    same_size_variant,
    sha256_file,
    site_packages,
    slow_only,
    token_wheel,
    tree_state,
    wheel_members,
    zeros_crc,
    zeros_deflated,
)
from tests.reliability.conftest import Faults

pytestmark = pytest.mark.e2e

NAME = "zeta"
FILENAME = f"{NAME}-1.0-py3-none-any.whl"
DIST_INFO = f"{NAME}-1.0.dist-info"
# A module big enough that a byte flipped in the middle of its deflated data is inside it.
MODULE = ("VERSION = '1.0'\n" + "".join(f"VALUE_{i} = {i * 7919 % 1000003}  # filler {i}\n"
                                        for i in range(300))).encode()
MiB = 1 << 20


def good_members(scratch: Path) -> dict[str, bytes]:
    return wheel_members(WheelSpec(NAME, "1.0", files={f"{NAME}.py": MODULE}), scratch)


def zipped(members: dict[str, bytes]) -> bytes:
    """`members` as a zip written with zipfile (duplicates allowed)."""
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name"
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return out.getvalue()


def flip_in_member(data: bytes, member: str) -> bytes:
    """Flip a byte in the middle of `member`'s deflated data; the zip directory still reads."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    assert info.compress_type == zipfile.ZIP_DEFLATED
    at = info.header_offset
    start = at + 30 + int.from_bytes(data[at + 26:at + 28], "little") + int.from_bytes(data[at + 28:at + 30], "little")
    pos = start + info.compress_size // 2
    bad = data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1:]
    assert zipfile.ZipFile(io.BytesIO(bad)).namelist()  # the directory still reads
    return bad


def with_members(scratch: Path, extra: list[Member], record: bool = True) -> bytes:
    """A good zeta wheel plus `extra` members (listed in RECORD too, as a real tool would)."""
    members = good_members(scratch)
    if record:
        listed = dict(members)
        listed.update({m.name: m.data for m in extra})
        members[f"{DIST_INFO}/RECORD"] = record_for(listed, DIST_INFO)
    return raw_zip([Member(n, d) for n, d in members.items()] + extra)


def truncated(scratch: Path, tmp: Path) -> bytes:
    data = zipped(good_members(scratch))
    return data[:len(data) // 2]


def zero_bytes(scratch: Path, tmp: Path) -> bytes:
    return b""


def crc_module(scratch: Path, tmp: Path) -> bytes:
    return flip_in_member(zipped(good_members(scratch)), f"{NAME}.py")


def crc_metadata(scratch: Path, tmp: Path) -> bytes:
    return flip_in_member(zipped(good_members(scratch)), f"{DIST_INFO}/METADATA")


def dotdot_member(scratch: Path, tmp: Path) -> bytes:
    return with_members(scratch, [Member("../evil.py", b"EVIL = 1\n"),
                                  Member("../../../../../../../../evil_deep.py", b"EVIL = 2\n")])


def absolute_member(scratch: Path, tmp: Path) -> bytes:
    return with_members(scratch, [Member(str(tmp / "evil_abs.py"), b"EVIL = 1\n")])


def symlink_member(scratch: Path, tmp: Path) -> bytes:
    target = tmp / "symlink_target.txt"
    target.write_text("must stay as it is\n")
    return with_members(scratch, [Member(f"{NAME}_link.py", str(target).encode(), mode=0o120777),
                                  Member(f"{NAME}_up", b"../../../../../../../..", mode=0o120777)])


def duplicate_member(scratch: Path, tmp: Path) -> bytes:
    members = good_members(scratch)
    return raw_zip([Member(n, d) for n, d in members.items()] + [Member(f"{NAME}.py", b"VERSION = 'evil'\n")])


def lying_bomb(scratch: Path, tmp: Path) -> bytes:
    """A member whose headers claim 1000 bytes; its data inflates to 1 GiB of zeros."""
    return with_members(scratch, [Member(f"{NAME}/bomb.bin", b"\0" * 1000, raw=zeros_deflated(1024),
                                         crc=zeros_crc(1024), size=1000)])


def lying_metadata(scratch: Path, tmp: Path) -> bytes:
    """Named zeta 1.0; its METADATA says bar 2.0."""
    members = good_members(scratch)
    members[f"{DIST_INFO}/METADATA"] = b"Metadata-Version: 2.1\nName: bar\nVersion: 2.0\n\n"
    members[f"{DIST_INFO}/RECORD"] = record_for(members, DIST_INFO)
    return zipped(members)


BAD_WHEELS: dict[str, Callable[[Path, Path], bytes]] = {
    "truncated": truncated,
    "zero-bytes": zero_bytes,
    "crc-corrupt-module": crc_module,
    "crc-corrupt-metadata": crc_metadata,
    "dotdot-member": dotdot_member,
    "absolute-member": absolute_member,
    "symlink-member": symlink_member,
    "duplicate-member": duplicate_member,
    "bomb-1GiB-lying-size": lying_bomb,
    "lying-metadata": lying_metadata,
}
# Zips whose bytes are not a wheel anyone may unpack: no cache entry may exist for them.
# (lying-metadata is a well-formed zip, which a prefetch may unpack as a harmless entry.)
UNPACKABLE = set(BAD_WHEELS) - {"lying-metadata"}


def measured(runner: Runner, *args: str, fsize: int) -> tuple[subprocess.CompletedProcess[str], int, int]:
    """Run create_venv under a file size limit: (result, peak RSS of any process of it in MiB,
    MiB it wrote, to files or pipes).
    """
    out = runner.own / "measured"
    result = runner.run(*args, prefix=(PYTHON, "-c", MEASURE, str(out), str(fsize)))
    rss, written = map(int, out.read_text().split())
    return result, rss // 1024, written // MiB


@pytest.mark.parametrize("case", list(BAD_WHEELS), ids=list(BAD_WHEELS))
def test_a_bad_wheel_never_costs_the_old_venv(built: tuple[ToolRepo, Path, Path], tmp_path: Path,
                                              faults: Faults, slow: bool, case: str) -> None:
    slow_only(case, ["zero-bytes", "crc-corrupt-metadata"], slow)
    repo, venv_dir, reqs = built
    runner = Runner(repo, tmp_path)
    bad = BAD_WHEELS[case](runner.own / "scratch", tmp_path)
    wheel = repo.wheels / FILENAME
    wheel.write_bytes(bad)
    reqs.write_text(BASE_REQS + f"{NAME}==1.0\n")
    before = tree_state(venv_dir)
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()

    # Under --slow a second time: nothing cached by the first may help it through.
    for attempt in range(2 if slow else 1):
        faults.round()
        result, rss, written = measured(runner, str(venv_dir), str(reqs), fsize=256 * MiB)
        expect_error(result, {1, 2}, [FILENAME])
        assert "File too large" not in result.stderr, f"tried to write a file over 256 MiB: {result.stderr}"
        assert written < 100, f"attempt {attempt}: {written} MiB written while failing"
        assert rss < 400, f"attempt {attempt}: a process of the build grew to {rss} MiB"
        assert_same_tree(before, venv_dir)  # byte for byte: it worked before, so it works now
        if case in UNPACKABLE:
            assert not (repo.cache / "wheels" / hashlib.sha256(bad).hexdigest()).exists(), \
                "a cache entry was made for the bad bytes"
        assert not list(tmp_path.rglob("evil*")) and not list((repo.cache / "wheels").glob("evil*"))
    outside.check()

    # A good wheel of the same name now: builds and works.
    (runner.own / "good").mkdir()
    replace_file(wheel, build_wheel(runner.own / "good", WheelSpec(NAME, "1.0", files={f"{NAME}.py": MODULE})
                                    ).read_bytes())
    result = runner.run(str(venv_dir), str(reqs))
    assert result.returncode == 0, result.stderr
    check_venv(faults, venv_dir, {**BASE_PKGS, NAME: "1.0"})
    assert marker_wheels(venv_dir)[FILENAME] == sha256_file(wheel)
    if case == "symlink-member":
        assert (tmp_path / "symlink_target.txt").read_text() == "must stay as it is\n"


def test_an_honest_big_member(built: tuple[ToolRepo, Path, Path], tmp_path: Path, faults: Faults,
                              slow: bool) -> None:
    """200 MiB of zeros (64 MiB without --slow), sizes told truthfully: built (the file is whole) or refused in one
    line; either way with little memory, no file written twice over, the old venv kept if refused.
    """
    repo, venv_dir, reqs = built
    runner = Runner(repo, tmp_path)
    members = good_members(runner.own / "scratch")
    big = f"{NAME}/big.bin"
    mib = 200 if slow else 64
    h = hashlib.sha256()
    for _ in range(mib):
        h.update(bytes(MiB))
    digest = base64.urlsafe_b64encode(h.digest()).decode().rstrip("=")
    members[f"{DIST_INFO}/RECORD"] = members[f"{DIST_INFO}/RECORD"].replace(
        f"{DIST_INFO}/RECORD,,".encode(), f"{big},sha256={digest},{mib * MiB}\n{DIST_INFO}/RECORD,,".encode())
    bad = raw_zip([Member(n, d) for n, d in members.items()]
                  + [Member(big, b"", raw=zeros_deflated(mib), crc=zeros_crc(mib), size=mib * MiB)])
    wheel = repo.wheels / FILENAME
    wheel.write_bytes(bad)
    reqs.write_text(BASE_REQS + f"{NAME}==1.0\n")
    before = tree_state(venv_dir)
    outside = Outside(faults, [tmp_path], [venv_dir])
    sha = hashlib.sha256(bad).hexdigest()
    faults.inject()
    faults.round()
    try:
        result, rss, written = measured(runner, str(venv_dir), str(reqs), fsize=300 * MiB)
        assert rss < 400, f"a process of the build grew to {rss} MiB"
        assert written < 2 * mib + 50, f"{written} MiB written for a {mib} MiB file"
        if result.returncode == 0:
            check_venv(faults, venv_dir, {**BASE_PKGS, NAME: "1.0"})
            assert (site_packages(venv_dir) / NAME / "big.bin").stat().st_size == mib * MiB
        else:
            expect_error(result, {1, 2}, [FILENAME])
            assert_same_tree(before, venv_dir)
        outside.check()
    finally:
        shutil.rmtree(repo.cache / "wheels" / sha, ignore_errors=True)
        shutil.rmtree(venv_dir, ignore_errors=True)


# -- a wheel changed after a build ----------------------------------------------------------------

CHANGES = ["in-place-same-size-and-mtime", "renamed-over-same-size-and-mtime", "appended"]


@pytest.mark.parametrize("hashed", [False, True], ids=["no-hash", "hash"])
@pytest.mark.parametrize("how", CHANGES, ids=CHANGES)
def test_a_wheel_changed_after_the_build_is_noticed(wheelhouse: ToolRepo, tmp_path: Path, faults: Faults,
                                                    slow: bool, how: str, hashed: bool) -> None:
    if hashed and how != CHANGES[0] and not slow:
        pytest.skip("under --slow (the in-place change is the one a stat check misses)")
    repo = wheelhouse
    runner = Runner(repo, tmp_path)
    first = "first".ljust(24, "-")  # as long as same_size_variant's tokens
    wheel = token_wheel(repo.wheels, NAME, first)
    good = wheel.read_bytes()
    lines = ["alpha==1.0", "beta==1.0", f"{NAME}==1.0"]
    if hashed:
        files = ["alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", FILENAME]
        lines = [f"{line} --hash=sha256:{sha256_file(repo.wheels / f)}" for line, f in zip(lines, files)]
    reqs = repo.requirements("requirements.txt", "\n".join(lines) + "\n")
    venv_dir = tmp_path / "venv"
    assert runner.run(str(venv_dir), str(reqs)).returncode == 0
    pkgs = {**BASE_PKGS, NAME: "1.0"}
    assert check_venv(faults, venv_dir, pkgs)[NAME] == first
    before = tree_state(venv_dir)

    st = wheel.stat()
    token = None
    if how == "appended":
        with open(wheel, "ab") as tail:
            tail.write(b"\0trailing bytes\0" * 4)
    else:
        new, token = same_size_variant(NAME, len(good), runner.own / "variants")
        if how.startswith("in-place"):  # cp -p / touch -r: same inode, same size, mtime put back
            with open(wheel, "r+b") as f:
                f.write(new)
        else:  # rsync: a new file renamed over the old one, same size and mtime
            replace_file(wheel, new)
        os.utime(wheel, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (wheel.stat().st_size, wheel.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    changed = sha256_file(wheel)
    assert changed != hashlib.sha256(good).hexdigest()
    outside = Outside(faults, [tmp_path], [venv_dir])
    faults.inject()
    faults.round()
    result = runner.run(str(venv_dir), str(reqs))

    if hashed:  # the wheel no longer matches its --hash: bad input, nothing changed
        expect_error(result, {2}, [FILENAME])
        assert_same_tree(before, venv_dir)
        outside.check()
        replace_file(wheel, good)
        outside.rebase()
        result = runner.run(str(venv_dir), str(reqs))
        assert result.returncode == 0, result.stderr
        assert check_venv(faults, venv_dir, pkgs)[NAME] == first
    elif result.returncode == 0:  # rebuilt with the new bytes
        tokens = check_venv(faults, venv_dir, pkgs)
        assert marker_wheels(venv_dir)[FILENAME] == changed, "the marker still records the old wheel"
        if token is not None:
            assert tokens[NAME] == token, "the venv still has the old wheel's files"
    else:
        assert how == "appended", f"a valid changed wheel was refused: {result.stderr}"
        expect_error(result, {1, 2}, [FILENAME])
        assert_same_tree(before, venv_dir)
    outside.check()
    state = tree_state(venv_dir)
    again = runner.run(str(venv_dir), str(reqs))  # then a run with no new fault is fine
    assert again.returncode in (0, 2), again.stderr
    if again.returncode == 0 and tree_state(venv_dir) != state:
        check_venv(faults, venv_dir, pkgs)


# -- the cache behind the hard links ---------------------------------------------------------------


def unique_eta(repo: ToolRepo, runner: Runner, faults: Faults, tmp: Path) -> tuple[Path, Path, bytes, Path]:
    """A venv of a wheel no other test has (so damage to its cache entry stays in this test):
    (venv, requirements, the module's bytes, the installed module).
    """
    token_wheel(repo.wheels, "eta", uuid.uuid4().hex)
    reqs = repo.requirements("eta.txt", "eta==1.0\n")
    first = tmp / "first"
    result = runner.run(str(first), str(reqs))
    assert result.returncode == 0, result.stderr
    check_venv(faults, first, {"eta": "1.0"})
    module = site_packages(first) / "eta.py"
    return first, reqs, module.read_bytes(), module


EDITS = ["overwrite-same-size", "append", "truncate"]


@pytest.mark.parametrize("edit", EDITS, ids=EDITS)
def test_an_edit_in_a_venv_never_reaches_a_later_venv(wheelhouse: ToolRepo, tmp_path: Path, faults: Faults,
                                                      slow: bool, edit: str) -> None:
    slow_only(edit, ["append", "truncate"], slow)
    runner = Runner(wheelhouse, tmp_path)
    _, reqs, original, module = unique_eta(wheelhouse, runner, faults, tmp_path)
    with open(module, "r+b") as f:  # in place: through the hard link, if it is one
        if edit == "overwrite-same-size":
            f.write(original.replace(b"VERSION = '1.0'", b"VERSION = 'BAD'"))
        elif edit == "append":
            f.seek(0, os.SEEK_END)
            f.write(b"VERSION = 'edited'\n")
        else:
            f.truncate(0)
    faults.inject()
    faults.round()
    second = tmp_path / "second"
    result = runner.run(str(second), str(reqs))
    assert result.returncode == 0, result.stderr
    assert (site_packages(second) / "eta.py").read_bytes() == original, "the edit reached the new venv"
    check_venv(faults, second, {"eta": "1.0"})


DAMAGE = ["file-deleted", "read-only", "file-truncated", "entry-emptied", "metadata-edited"]


@pytest.mark.parametrize("damage", DAMAGE, ids=DAMAGE)
def test_a_damaged_cache_entry_is_not_trusted(wheelhouse: ToolRepo, tmp_path: Path, faults: Faults,
                                              slow: bool, damage: str) -> None:
    slow_only(damage, ["read-only", "entry-emptied", "file-truncated"], slow)
    runner = Runner(wheelhouse, tmp_path)
    _, reqs, original, module = unique_eta(wheelhouse, runner, faults, tmp_path)
    cached = cache_file_for(wheelhouse.cache, module)
    if cached is None:  # not a hard link: the entry by the wheel's sha256, as README documents
        cached = wheelhouse.cache / "wheels" / sha256_file(wheelhouse.wheels / "eta-1.0-py3-none-any.whl") / "eta.py"
    assert cached.is_file(), "cannot find the cache entry of eta"
    entry = cached.parent
    if damage == "file-deleted":
        cached.unlink()
    elif damage == "read-only":
        for dirpath, dirnames, filenames in os.walk(entry):
            for n in filenames:
                os.chmod(os.path.join(dirpath, n), 0o444)
            for n in dirnames:
                os.chmod(os.path.join(dirpath, n), 0o555)
        os.chmod(entry, 0o555)
    elif damage == "file-truncated":
        os.truncate(cached, 0)
    elif damage == "entry-emptied":
        for child in list(entry.iterdir()):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        meta = entry / "eta-1.0.dist-info" / "METADATA"
        meta.write_text(meta.read_text().replace("Version: 1.0", "Version: 9.9"))
    faults.inject()
    faults.round()
    second = tmp_path / "second"
    result = runner.run(str(second), str(reqs))
    assert result.returncode == 0, result.stderr
    assert (site_packages(second) / "eta.py").read_bytes() == original, "the damage reached the new venv"
    check_venv(faults, second, {"eta": "1.0"})
    if damage == "read-only":
        os.chmod(entry, 0o755)
