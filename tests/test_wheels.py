"""wheels: indexing a wheelhouse by filename (only regular files) and reading a wheel's METADATA."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from packaging.tags import Tag
from packaging.utils import canonicalize_name

from cros_venv import wheels
from cros_venv.errors import BuildError
from cros_venv.interpreter import Target
from tests.conftest import WheelSpec, build_wheel
from tests.test_requirements import ENV_311
from tests.tools.test_check import inflate_metadata, patch_headers

TAGS = ("cp311-cp311-linux_x86_64", "cp311-cp311-manylinux_2_17_x86_64", "cp311-abi3-manylinux_2_17_x86_64",
        "cp311-none-manylinux_2_17_x86_64", "py3-none-manylinux_2_17_x86_64", "cp311-none-any", "py3-none-any")
TARGET = Target("/usr/bin/python3.11", "3.11.7", "cpython", "cp311",
                tuple(Tag(*t.split("-")) for t in TAGS), ENV_311)


def house(tmp_path: Path, *filenames: str) -> wheels.Wheelhouse:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for f in filenames:
        (tmp_path / f).write_bytes(b"")
    return wheels.Wheelhouse.scan(str(tmp_path))


def test_scan_indexes_by_normalised_name_and_skips_invalid_names(tmp_path: Path) -> None:
    h = house(tmp_path, "Foo_Bar-1.0-py3-none-any.whl", "not-a-wheel.whl", "README.txt")
    assert list(h.wheels) == ["foo-bar"]
    assert h.invalid == ("not-a-wheel.whl",)


def test_read_metadata_from_a_real_wheel(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, WheelSpec("alpha", "1.0", requires=["beta>=1"], requires_python=">=3.9"))
    (w,) = wheels.Wheelhouse.scan(str(tmp_path)).wheels[canonicalize_name("alpha")]
    m = wheels.read_metadata(w)
    assert m.get_all("Requires-Dist") == ["beta>=1"] and m["Requires-Python"] == ">=3.9"
    path.write_bytes(b"not a zip")
    with pytest.raises(Exception, match="cannot read the metadata"):
        wheels.read_metadata(w)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda p: patch_headers(p, (6, 1), (8, 1)), id="encrypted"),
    pytest.param(lambda p: patch_headers(p, (8, 99), (10, 99)), id="unknown-compression"),
    pytest.param(lambda p: inflate_metadata(p, 16 << 20), id="metadata-bomb"),
])
def test_read_metadata_of_a_zip_that_zipfile_cannot_read(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    path = build_wheel(tmp_path, WheelSpec("alpha", "1.0"))
    damage(path)
    (w,) = wheels.Wheelhouse.scan(str(tmp_path)).wheels[canonicalize_name("alpha")]
    with pytest.raises(BuildError, match=r"^cannot read the metadata of .*alpha-1.0-py3-none-any.whl \(.*\); replace"):
        wheels.read_metadata(w)
