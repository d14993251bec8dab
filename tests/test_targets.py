"""targets: declared Python versions and platforms as tags and marker environments."""

from __future__ import annotations

import pytest
from packaging.tags import Tag

from cros_venv import targets
from cros_venv.errors import InputError


def test_manylinux_expands_down_with_legacy_aliases() -> None:
    plats = targets.expand_platform("manylinux_2_17_x86_64")
    assert plats[:3] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_16_x86_64"]
    assert "manylinux2010_x86_64" in plats and plats[-2:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64"]
    assert targets.expand_platform("manylinux2014_aarch64")[0] == "manylinux_2_17_aarch64"
    assert targets.expand_platform("manylinux_2_17_aarch64")[-1] == "manylinux2014_aarch64"


def test_other_platforms() -> None:
    assert "macosx_10_9_x86_64" in targets.expand_platform("macosx_11_0_x86_64")
    assert "macosx_11_0_universal2" in targets.expand_platform("macosx_11_0_arm64")
    assert targets.expand_platform("win_amd64") == ["win_amd64"]
    assert targets.expand_platform("musllinux_1_2_x86_64") == [
        "musllinux_1_2_x86_64", "musllinux_1_1_x86_64", "musllinux_1_0_x86_64"]


@pytest.mark.parametrize("bad", ["linux", "manylinux_x86_64", "beos_5"])
def test_rejects_unknown_platforms(bad: str) -> None:
    with pytest.raises(InputError, match=f"--platform {bad}: not a platform tag"):
        targets.expand_platform(bad)


@pytest.mark.parametrize("bad", ["3", "2.7", "3.x", "311", "3.9.", "3.9.1.2", "3.9rc1"])
def test_rejects_bad_python_versions(bad: str) -> None:
    with pytest.raises(InputError, match="give a Python version as 3.N or 3.N.P"):
        targets.PythonVersion.parse(bad)


def test_declared_target_tags_and_environment() -> None:
    t = targets.declared("3.10", "macosx_11_0_arm64")
    assert t.tags[0] == Tag("cp310", "cp310", "macosx_11_0_arm64")
    assert Tag("cp310", "abi3", "macosx_11_0_arm64") in t.tag_rank
    assert Tag("py3", "none", "any") in t.tag_rank and Tag("cp311", "abi3", "macosx_11_0_arm64") not in t.tag_rank
    assert t.tag_rank[Tag("cp310", "cp310", "macosx_11_0_arm64")] < t.tag_rank[Tag("py3", "none", "any")]
    env = t.environment
    assert (env["python_version"], env["sys_platform"], env["platform_machine"]) == ("3.10", "darwin", "arm64")
    assert targets.declared("3.12", "win_amd64").environment["os_name"] == "nt"
    assert t.describe() == "Python 3.10 (3.10.20) on macosx_11_0_arm64 (best tag cp310-cp310-macosx_11_0_arm64)"


@pytest.mark.parametrize(("given", "label", "full"), [
    pytest.param("3.9", "Python 3.9 (3.9.25)", "3.9.25", id="minor-newest-patch"),
    pytest.param("3.13", "Python 3.13 (3.13.13)", "3.13.13", id="minor-newest-patch-313"),
    pytest.param("3.9.7", "Python 3.9.7", "3.9.7", id="exact"),
    pytest.param("3.30", "Python 3.30 (3.30.0: no 3.30 release known to this tool)", "3.30.0", id="unknown-minor"),
])
def test_a_declared_minor_means_its_newest_patch_release(given: str, label: str, full: str) -> None:
    t = targets.declared(given, "manylinux_2_17_x86_64")
    assert t.path == f"{label} on manylinux_2_17_x86_64"
    assert t.version == full and t.python_version == ".".join(full.split(".")[:2])
    assert t.environment["python_full_version"] == t.environment["implementation_version"] == full


def test_requires_python_excluding_early_patches_admits_a_declared_minor() -> None:
    from packaging.specifiers import SpecifierSet

    t = targets.declared("3.9", "manylinux_2_17_x86_64")
    assert SpecifierSet("!=3.9.0, !=3.9.1").contains(t.python_full_version)
