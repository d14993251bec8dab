"""extract: a wheel read and unpacked exactly, or refused (unsafe names, symlinks, duplicates, bad CRCs, lying sizes)."""

from __future__ import annotations

import os
import re
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from cros_venv import extract
from cros_venv.digest import Hashed, file_sha256, stamp
from cros_venv.errors import BuildError
from cros_venv.extract import LEGACY_MANIFEST, MANIFEST, WheelRead, extract_wheel
from tests.conftest import WheelSpec, build_wheel


def extracted(dest: Path) -> set[str]:
    """The wheel's members in `dest` (its MANIFEST, which must be there, aside)."""
    found = {os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs}
    assert MANIFEST in found and LEGACY_MANIFEST in found
    return found - {MANIFEST, LEGACY_MANIFEST}


def zip_of(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_unpacks_members_read_only_with_executable_bits_and_returns_their_hash(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, WheelSpec("alpha", files={"alpha/__init__.py": b"",
                                                            "alpha-1.0.data/scripts/run": b"#!python\n"}))
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_wheel(str(wheel), str(dest)) == file_sha256(str(wheel))
    assert extracted(dest) == {"alpha/__init__.py", "alpha-1.0.data/scripts/run", "alpha-1.0.dist-info/METADATA",
                               "alpha-1.0.dist-info/WHEEL", "alpha-1.0.dist-info/RECORD"}
    assert os.stat(dest / "alpha-1.0.data/scripts/run").st_mode & 0o777 == 0o555
    assert os.stat(dest / "alpha/__init__.py").st_mode & 0o777 == 0o444


@pytest.mark.parametrize("member", ["/etc/evil", "../evil", "pkg/../../evil", "pkg\\evil", MANIFEST, LEGACY_MANIFEST],
                         ids=["absolute", "dotdot", "nested-dotdot", "backslash", "our-manifest", "our-json-manifest"])
def test_refuses_unsafe_members(tmp_path: Path, member: str) -> None:
    wheel = zip_of(tmp_path / "evil-1.0-py3-none-any.whl", {member: b"x"})
    with pytest.raises(BuildError, match="unsafe member"):
        extract_wheel(str(wheel), str(tmp_path))
    assert not (tmp_path.parent / "evil").exists()


def test_refuses_symlink_members(tmp_path: Path) -> None:
    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BuildError, match="symlink member"):
        extract_wheel(str(wheel), str(dest))
    assert not os.path.lexists(dest / "link")


def test_refuses_a_member_given_twice(tmp_path: Path) -> None:
    wheel = tmp_path / "twice-1.0-py3-none-any.whl"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/a.py", b"first")
        zf.writestr("pkg/a.py", b"second")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BuildError, match="has the member 'pkg/a.py' twice"):
        extract_wheel(str(wheel), str(dest))


@pytest.mark.parametrize("how", ["small-deflated", "stored", "streamed-member", "streamed-wheel"])
def test_every_way_of_reading_a_member_gives_its_bytes(tmp_path: Path, how: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Small members come from the wheel's bytes in one zlib call; big members, and
    members of big wheels, are streamed by zipfile. Each way yields the exact bytes.
    """
    if how == "streamed-member":
        monkeypatch.setattr(extract, "WHOLE_MEMBER", 100)
    if how == "streamed-wheel":
        monkeypatch.setattr(extract, "WHOLE", 100)
    payload = {f"pkg/m{i}.py": os.urandom(500) + b"x" * 5000 for i in range(5)}
    method = zipfile.ZIP_STORED if how == "stored" else zipfile.ZIP_DEFLATED
    wheel = zip_of(tmp_path / "pkg-1.0-py3-none-any.whl", {**payload, "pkg-1.0.dist-info/METADATA": b"Name: pkg\n"},
                   method)
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_wheel(str(wheel), str(dest)) == file_sha256(str(wheel))
    for name, data in payload.items():
        assert (dest / name).read_bytes() == data


def test_a_member_whose_crc_does_not_match_is_refused(tmp_path: Path) -> None:
    wheel = zip_of(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/data.txt": b"0123456789" * 10}, zipfile.ZIP_STORED)
    data = bytearray(wheel.read_bytes())
    data[data.index(b"0123456789") + 3] ^= 1  # stored: the bytes still read, the CRC no longer matches
    wheel.write_bytes(bytes(data))
    with pytest.raises(BuildError, match="is not a valid wheel.*CRC"):
        extract_wheel(str(wheel), str(tmp_path))


@pytest.mark.parametrize("whole", [True, False], ids=["from-the-bytes", "streamed"])
def test_a_member_that_inflates_past_its_declared_size_is_never_written_past_it(
        tmp_path: Path, whole: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip bomb: the directory declares 100 bytes, the stream inflates to 10 MB."""
    if not whole:
        monkeypatch.setattr(extract, "WHOLE", 100)
    wheel = zip_of(tmp_path / "bomb-1.0-py3-none-any.whl", {"pkg/bomb.txt": b"\0" * (10 << 20)})
    data = bytearray(wheel.read_bytes())
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = data.index(signature)
        struct.pack_into("<I", data, at + size_at, 100)
    wheel.write_bytes(bytes(data))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BuildError, match="bomb-1.0-py3-none-any.whl is not a valid wheel"):
        extract_wheel(str(wheel), str(dest))
    written = dest / "pkg" / "bomb.txt"
    assert not written.exists() or written.stat().st_size <= 100


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_file_that_is_not_a_zip_is_one_line_naming_it(tmp_path: Path, damage: str) -> None:
    wheel = build_wheel(tmp_path, WheelSpec("alpha", files={"alpha.py": b"A = 1\n" * 1000}))
    data = wheel.read_bytes()
    wheel.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(BuildError, match=rf"^{re.escape(str(wheel))} is not a valid wheel \(.*\); replace it with a good copy$"):
        extract_wheel(str(wheel), str(tmp_path / "out"))


def test_a_wheel_read_whole_is_hashed_and_unpacked_from_memory(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, WheelSpec("alpha"))
    read = WheelRead.of(str(wheel))
    assert read.hashed == Hashed(file_sha256(str(wheel)), stamp(wheel.stat()))
    assert read.metadata() == "Metadata-Version: 2.1\nName: alpha\nVersion: 1.0\n\n"
    wheel.write_bytes(b"changed after it was read")
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_wheel(str(wheel), str(dest), read) == read.hashed.sha256
    assert "alpha.py" in extracted(dest)


@pytest.mark.parametrize("damage", ["not-a-zip", "metadata-does-not-inflate", "no-metadata"])
def test_a_wheel_whose_metadata_cannot_be_read_has_none(tmp_path: Path, damage: str) -> None:
    """Whoever needs the METADATA then reads the wheel itself and reports the problem."""
    wheel = tmp_path / "bad-1.0-py3-none-any.whl"
    if damage == "not-a-zip":
        wheel.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    else:
        name = "bad-1.0.dist-info/METADATA" if damage != "no-metadata" else "bad.py"
        zip_of(wheel, {name: b"Name: bad\n" * 2000})
        data = bytearray(wheel.read_bytes())
        body = data.index(b"PK\x03\x04") + 30 + len(name)
        data[body + 5:body + 7] = bytes(b ^ 0xFF for b in data[body + 5:body + 7])  # a broken deflate stream
        wheel.write_bytes(bytes(data))
    read = WheelRead.of(str(wheel))
    assert read.metadata() is None
    assert (read.zf is None) == (damage == "not-a-zip")
    (tmp_path / "out").mkdir()
    with pytest.raises(BuildError, match="is not a valid wheel"):
        extract_wheel(str(wheel), str(tmp_path / "out"), read)
