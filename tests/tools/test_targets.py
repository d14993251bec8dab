"""targets: declared Python versions and platforms as tags and marker environments."""

from __future__ import annotations

import pytest
from packaging.tags import Tag

from cros_venv.errors import InputError
from cros_venv.tools import targets
from tests.conftest import no_hang


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


def test_any_is_a_wheel_tag_not_a_platform() -> None:
    """A break-it session found `--platform any` checked as Windows (markers saw win32)."""
    with pytest.raises(InputError, match="--platform any: `any` is the tag of pure-Python wheels, not a platform"):
        targets.expand_platform("any")


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
    assert targets.declared("3.7", "manylinux2014_x86_64").tags[0] == Tag("cp37", "cp37m", "manylinux_2_17_x86_64")
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


OUT_OF_RANGE = [
    pytest.param("--platform", "manylinux_2_2000000_x86_64", "manylinux_2_5_x86_64 to manylinux_2_99_x86_64",
                 id="glibc-minor-huge"),
    pytest.param("--platform", "manylinux_2_4_x86_64", "manylinux_2_5_x86_64 to manylinux_2_99_x86_64",
                 id="glibc-minor-too-old"),
    pytest.param("--platform", "manylinux_2_16_aarch64", "manylinux_2_17_aarch64 to manylinux_2_99_aarch64",
                 id="glibc-minor-too-old-arm"),
    pytest.param("--platform", "manylinux_3_17_x86_64", "manylinux_2_5_x86_64 to manylinux_2_99_x86_64",
                 id="glibc-major"),
    pytest.param("--platform", "manylinux_2_" + "9" * 5000 + "_x86_64", "manylinux_2_5_x86_64 to", id="glibc-digits"),
    pytest.param("--platform", "musllinux_1_999999_x86_64", "musllinux_1_0_x86_64 to musllinux_1_99_x86_64",
                 id="musl-minor"),
    pytest.param("--platform", "musllinux_2_1_x86_64", "musllinux_1_0_x86_64 to musllinux_1_99_x86_64",
                 id="musl-major"),
    pytest.param("--platform", "macosx_999999_0_arm64", "macosx_10_0_arm64 to macosx_99_99_arm64", id="mac-major"),
    pytest.param("--platform", "macosx_9_0_x86_64", "macosx_10_0_x86_64 to macosx_99_99_x86_64", id="mac-old"),
    pytest.param("--platform", "macosx_11_100_arm64", "macosx_10_0_arm64 to macosx_99_99_arm64", id="mac-minor"),
    pytest.param("--python", "3.100000", "3.6 to 3.99", id="python-minor-huge"),
    pytest.param("--python", "3." + "9" * 5000, "3.6 to 3.99", id="python-digits"),
    pytest.param("--python", "3.5", "3.6 to 3.99", id="python-too-old"),
    pytest.param("--python", "3.11.100", "3.11.0 to 3.11.99", id="python-patch"),
]


@pytest.mark.parametrize(("option", "value", "allowed"), OUT_OF_RANGE)
def test_rejects_numbers_out_of_range_naming_the_range(option: str, value: str, allowed: str) -> None:
    with pytest.raises(InputError) as info:
        targets.declared(value if option == "--python" else "3.11",
                         value if option == "--platform" else "manylinux_2_17_x86_64")
    (message,) = info.value.problems
    assert message.startswith(f"{option} {value[:40]}") and allowed in message, message
    assert len(message) < 300


@pytest.mark.parametrize("bad", ["manylinux_2_١٧_x86_64", "linux_x86_64\n", "macosx_11_0_ärm64"])
def test_platform_tags_are_ascii(bad: str) -> None:
    with pytest.raises(InputError, match="not a platform tag"):
        targets.expand_platform(bad)


def test_python_versions_are_ascii() -> None:
    with pytest.raises(InputError, match="give a Python version as 3.N"):
        targets.PythonVersion.parse("3.١١")


@pytest.mark.parametrize("platform", ["manylinux_2_99_x86_64", "macosx_99_99_x86_64", "musllinux_1_99_aarch64"])
def test_the_largest_allowed_targets_are_built_in_linear_time(platform: str) -> None:
    with no_hang():
        t = targets.declared("3.99", platform)
    assert len(t.tags) == len(set(t.tags)) > 10_000
