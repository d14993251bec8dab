"""wheels: choosing a wheel per pin for the target's tags; the closure and hash checks."""

from __future__ import annotations

import os
import sys
from email.message import Message
from pathlib import Path
from typing import Callable

import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import canonicalize_name
from packaging.version import Version

from cros_venv import requirements, wheels
from cros_venv.errors import BuildError, InputError
from cros_venv.interpreter import Target
from cros_venv.reqlines import Pin
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


def pins(tmp_path: Path, text: str) -> tuple[requirements.Pins, requirements.Pins]:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return requirements.applicable(requirements.load([str(path)]), ENV_311)


def meta(requires: list[str] | None = None, requires_python: str | None = None) -> Message:
    """METADATA headers for alpha 1.0 (resolve() below renames them for the wheel asked)."""
    m = Message()
    m["Name"], m["Version"] = "alpha", "1.0"
    for r in requires or []:
        m["Requires-Dist"] = r
    if requires_python:
        m["Requires-Python"] = requires_python
    return m


def resolve(tmp_path: Path, text: str, h: wheels.Wheelhouse, metas: dict[str, Message]) -> dict[str, wheels.Resolved]:
    wanted, constraints = pins(tmp_path, text)
    chosen = wheels.resolve(wanted, constraints, h, TARGET, lambda w: named(metas.get(w.name, meta()), w))
    return {str(k): v for k, v in chosen.items()}


def named(m: Message, w: wheels.Wheel) -> Message:
    """`m` with the wheel's own name and version, unless a test made it say otherwise."""
    if (m["Name"], m["Version"]) == ("alpha", "1.0"):
        m.replace_header("Name", w.name)
        m.replace_header("Version", str(w.version))
    return m


def test_scan_indexes_by_normalised_name_and_skips_invalid_names(tmp_path: Path) -> None:
    h = house(tmp_path, "Foo_Bar-1.0-py3-none-any.whl", "not-a-wheel.whl", "README.txt")
    assert list(h.wheels) == ["foo-bar"]
    assert h.invalid == ("not-a-wheel.whl",)


def test_picks_the_wheel_with_the_best_tag(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "alpha-1.0-cp311-abi3-manylinux_2_17_x86_64.whl",
              "alpha-1.0-cp39-cp39-manylinux_2_17_x86_64.whl", "alpha-2.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    chosen = resolve(tmp_path, "alpha==1.0\n", h, {})
    assert chosen["alpha"].wheel.filename == "alpha-1.0-cp311-abi3-manylinux_2_17_x86_64.whl"


def test_version_equality_follows_pep440(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0.0-py3-none-any.whl")
    assert resolve(tmp_path, "alpha==1.0\n", h, {})["alpha"].wheel.filename == "alpha-1.0.0-py3-none-any.whl"


def test_missing_wheel_names_pin_tags_present_wheels_and_fix(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-cp39-cp39-manylinux_2_17_x86_64.whl", "alpha-0.9-py3-none-any.whl")
    with pytest.raises(InputError) as info:
        resolve(tmp_path, "alpha==1.0\n", h, {})
    (msg,) = info.value.problems
    assert "requirements.txt:1: no wheel for alpha==1.0" in msg
    assert "best tag cp311-cp311-linux_x86_64" in msg
    assert f"its tags: cp311-cp311-linux_x86_64, cp311-cp311-manylinux_2_17_x86_64, cp311-abi3-manylinux_2_17_x86_64, " \
           f"... {len(TAGS)} in all" in msg
    assert "alpha-0.9-py3-none-any.whl, alpha-1.0-cp39-cp39-manylinux_2_17_x86_64.whl" in msg
    assert msg.endswith("fix: pip download --only-binary=:all: --no-deps --python-version 3.11 --implementation cp "
                        "--abi cp311 --platform manylinux_2_17_x86_64 -d pip_packages alpha==1.0")


def test_missing_pure_wheel_suggests_pip_wheel(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-0.9-py3-none-any.whl")
    with pytest.raises(InputError, match=r"fix: pip wheel --no-deps -w pip_packages alpha==1.0$"):
        resolve(tmp_path, "alpha==1.0\n", h, {})


def test_closure_accepts_pinned_dependencies(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-2.0-py3-none-any.whl")
    chosen = resolve(tmp_path, "alpha==1.0\nbeta==2.0\n", h, {"alpha": meta(["beta>=2", "win-only ; sys_platform == 'win32'"])})
    assert sorted(chosen) == ["alpha", "beta"] and chosen["beta"].direct


def test_closure_reports_unpinned_dependency(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl")
    with pytest.raises(InputError) as info:
        resolve(tmp_path, "alpha==1.0\n", h, {"alpha": meta(["beta>=2"])})
    assert info.value.problems[0].endswith(
        "requirements.txt:1: alpha==1.0 needs beta>=2, which is not pinned; add beta==VERSION to the requirements")


def test_closure_reports_pin_that_does_not_satisfy(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")
    with pytest.raises(InputError, match=r"alpha==1.0 needs beta>=2, but .*requirements.txt:2 pins beta==1.0"):
        resolve(tmp_path, "alpha==1.0\nbeta==1.0\n", h, {"alpha": meta(["beta>=2"])})


def test_closure_follows_requested_extras(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "fast-1.0-py3-none-any.whl")
    alpha = meta(['fast==1.0 ; extra == "speed"'])
    assert sorted(resolve(tmp_path, "alpha==1.0\n", h, {"alpha": alpha})) == ["alpha"]
    with pytest.raises(InputError, match="needs fast==1.0"):
        resolve(tmp_path, "alpha[speed]==1.0\n", h, {"alpha": alpha})
    chosen = resolve(tmp_path, "alpha[speed]==1.0\nfast==1.0\n", h, {"alpha": alpha})
    assert sorted(chosen) == ["alpha", "fast"] and chosen["alpha"].extras == {"speed"}


def test_closure_follows_extras_of_dependencies(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "gamma-1.0-py3-none-any.whl")
    metas = {"alpha": meta(["beta[more]==1.0"]), "beta": meta(['gamma ; extra == "more"'])}
    with pytest.raises(InputError, match="beta==1.0 needs gamma"):
        resolve(tmp_path, "alpha==1.0\nbeta==1.0\n", h, metas)
    assert sorted(resolve(tmp_path, "alpha==1.0\nbeta==1.0\ngamma==1.0\n", h, metas)) == ["alpha", "beta", "gamma"]


def test_dependencies_may_be_pinned_by_constraints_only(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("beta==1.0\nunused==9.9\n")
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")
    chosen = resolve(tmp_path, "-c c.txt\nalpha==1.0\n", h, {"alpha": meta(["beta"])})
    assert sorted(chosen) == ["alpha", "beta"] and not chosen["beta"].direct


def test_requires_python_is_checked(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl")
    with pytest.raises(InputError, match=r"alpha-1.0-py3-none-any.whl requires Python >=3.12, but the target is Python 3.11.7"):
        resolve(tmp_path, "alpha==1.0\n", h, {"alpha": meta(requires_python=">=3.12")})


def test_several_missing_wheels_are_one_summary_with_one_command_then_a_short_line_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = house(tmp_path / "pip_packages", "gamma-0.9-py3-none-any.whl")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as info:
        resolve(tmp_path, "alpha==1.0\nbeta==1.0\ngamma==1.0\n", h, {})
    reqs = tmp_path / "requirements.txt"
    command = wheels.vendor_command([str(reqs)], h, TARGET)  # the checkout's bin/, relative to here
    assert command.startswith(f"bin/vendor_wheels {reqs}")
    lock = wheels.vendor_command([str(reqs)], h, TARGET, lock=True)
    summary = (f"{reqs}:1: 3 pins have no wheel in {h.directory} for {TARGET.describe()}; add them all: "
               f"{command}; or, if not every dependency is pinned yet, pin the closure too: {lock} "
               "(the pins below; -v: each one's tags and pip command)")
    assert info.value.problems == (summary, f"{reqs}:1: no wheel for alpha==1.0", f"{reqs}:2: no wheel for beta==1.0",
                                   f"{reqs}:3: no wheel for gamma==1.0 (1 other wheel of gamma present)")
    assert info.value.detail[0] == summary and len(info.value.detail) == 4
    assert all("fix: pip " in line for line in info.value.detail[1:])


def test_missing_wheels_of_a_file_the_lock_step_wrote_name_only_vendor_wheels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its closure is complete: only the wheels are missing."""
    h = house(tmp_path / "pip_packages")
    monkeypatch.chdir(tmp_path)
    text = "#\n# This file is autogenerated by vendor_wheels --lock\n#\nalpha==1.0\nbeta==1.0\n"
    with pytest.raises(InputError) as info:
        resolve(tmp_path, text, h, {})
    command = wheels.vendor_command([str(tmp_path / "requirements.txt")], h, TARGET)
    assert info.value.problems[0].endswith(f"add them all: {command} (the pins below; -v: each one's tags and pip "
                                           "command)"), info.value.problems[0]


def test_the_vendor_command_names_a_target_that_is_not_the_running_python(tmp_path: Path) -> None:
    h = house(tmp_path / "pip_packages")
    other = Target("/usr/bin/python3.8", "3.8.10", "cpython", "cp38", TARGET.tags, ENV_311)
    assert wheels.vendor_command(["r.txt"], h, other).endswith("vendor_wheels r.txt --python 3.8")
    declared = Target("Python 3.12 (3.12.13) on manylinux_2_17_x86_64", "3.12.13", "cpython", "cp312",
                      (Tag("cp312", "cp312", "manylinux_2_17_x86_64"),), ENV_311)
    assert wheels.vendor_command(["a b.txt"], h, declared).endswith(
        "vendor_wheels 'a b.txt' --python 3.12 --platform manylinux_2_17_x86_64")


def test_several_unpinned_dependencies_are_one_summary_then_paste_ready_pins(tmp_path: Path) -> None:
    """Versions come from the wheelhouse (the newest that satisfies every pin needing it, with
    a wheel for the target); a suggested version's own dependencies are listed too."""
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "beta-2.0-py3-none-any.whl",
              "beta-3.0-cp39-cp39-manylinux_2_17_x86_64.whl", "delta-1.0-py3-none-any.whl",
              "epsilon-1.0-py3-none-any.whl")
    metas = {"alpha": meta(["beta>=1", "gamma<2", "epsilon"]), "beta": meta(["delta", "epsilon>=1"])}
    with pytest.raises(InputError) as info:
        resolve(tmp_path, "alpha==1.0\n", h, metas)
    reqs = tmp_path / "requirements.txt"
    summary, *pins = info.value.problems
    assert summary == (f"{reqs}:1: {reqs} is not closed: 4 dependencies of its pins are not pinned; keep every pin "
                       "and add the closure with its wheels: "
                       f"{wheels.vendor_command([str(reqs)], h, TARGET, lock=True)} (the dependencies below; by "
                       f"hand: add each line after its `FILE:LINE: `, versions from {tmp_path}, VERSION: none fits)")
    assert wheels.vendor_command([str(reqs)], h, TARGET, lock=True).endswith(f"vendor_wheels --lock {reqs} -o {reqs}"
                                                                              + ("" if sys.version_info[:2] == (3, 11)
                                                                                 else " --python 3.11"))
    assert pins == [f"{reqs}:1: beta==2.0  # needed by alpha==1.0 (beta>=1)",
                    f"{reqs}:1: gamma==VERSION  # needed by alpha==1.0 (gamma<2)",
                    f"{reqs}:1: epsilon==1.0  # needed by alpha==1.0, beta==2.0 (epsilon>=1)",
                    f"{reqs}:1: delta==1.0  # needed by beta==2.0"]


def test_one_unpinned_dependency_is_told_in_full_with_a_version_to_pin(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-2.0-py3-none-any.whl")
    with pytest.raises(InputError) as info:
        resolve(tmp_path, "alpha==1.0\n", h, {"alpha": meta(["beta>=2"])})
    assert info.value.problems == (f"{tmp_path / 'requirements.txt'}:1: alpha==1.0 needs beta>=2, which is not "
                                   "pinned; add beta==2.0 to the requirements",)


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


def test_hash_checks(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")
    path_a = str(tmp_path / "alpha-1.0-py3-none-any.whl")
    path_b = str(tmp_path / "beta-1.0-py3-none-any.whl")
    hashes = {path_a: "a" * 64, path_b: "b" * 64}
    good = resolve(tmp_path, f"alpha==1.0 --hash=sha256:{'a' * 64}\nbeta==1.0 --hash=sha256:{'b' * 64}\n", h, {})
    wheels.check_hashes(good.values(), hashes, require=False)
    bad = resolve(tmp_path, f"alpha==1.0 --hash=sha256:{'c' * 64}\nbeta==1.0 --hash=sha256:{'b' * 64}\n", h, {})
    with pytest.raises(InputError, match=r"alpha-1.0-py3-none-any.whl does not match any --hash of alpha==1.0 \(its sha256 is a{64}\)"):
        wheels.check_hashes(bad.values(), hashes, require=False)
    partial = resolve(tmp_path, f"alpha==1.0 --hash=sha256:{'a' * 64}\nbeta==1.0\n", h, {})
    with pytest.raises(InputError, match=r"beta==1.0 has no --hash, but other requirements do"):
        wheels.check_hashes(partial.values(), hashes, require=False)
    none = resolve(tmp_path, "alpha==1.0\nbeta==1.0\n", h, {})
    wheels.check_hashes(none.values(), hashes, require=False)
    with pytest.raises(InputError, match="hash-checking mode"):
        wheels.check_hashes(none.values(), hashes, require=True)


@pytest.mark.parametrize("make", [
    pytest.param(lambda p: p.mkdir(), id="directory"),
    pytest.param(lambda p: p.symlink_to(p.parent / "nowhere.whl"), id="dangling-symlink"),
    pytest.param(lambda p: os.mkfifo(p), id="fifo"),
])
def test_only_regular_files_are_wheels(tmp_path: Path, make: Callable[[Path], None]) -> None:
    make(tmp_path / "alpha-1.0-py3-none-any.whl")
    (tmp_path / "real.data").write_bytes(b"")
    (tmp_path / "beta-1.0-py3-none-any.whl").symlink_to(tmp_path / "real.data")  # a link to a file is a file
    h = wheels.Wheelhouse.scan(str(tmp_path))
    assert list(h.wheels) == ["beta"] and h.not_files == ("alpha-1.0-py3-none-any.whl",)
    with pytest.raises(InputError) as info:
        resolve(tmp_path, "alpha==1.0\n", h, {})
    (msg,) = info.value.problems
    assert "requirements.txt:1: no wheel for alpha==1.0" in msg and "wheels of alpha present: none" in msg


@pytest.mark.parametrize(("name", "version", "says"), [
    pytest.param("omega", "1.0", "omega 1.0", id="other-name"),
    pytest.param("alpha", "2.0", "alpha 2.0", id="other-version"),
    pytest.param("alpha", "not a version", "alpha not a version", id="invalid-version"),
    pytest.param(None, "1.0", "None 1.0", id="no-name"),
])
def test_a_wheel_whose_metadata_lies_about_its_name_or_version_is_refused(
        tmp_path: Path, name: str | None, version: str, says: str) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl")
    lying = meta(["beta"])
    del lying["Name"], lying["Version"]
    if name is not None:
        lying["Name"] = name
    lying["Version"] = version
    with pytest.raises(InputError) as info:
        resolve(tmp_path, "alpha==1.0\n", h, {"alpha": lying})
    assert info.value.problems == (
        f"{tmp_path / 'requirements.txt'}:1: alpha-1.0-py3-none-any.whl says it is {says} in its METADATA, "
        "not alpha 1.0; replace it with a good wheel of alpha==1.0",)


def test_metadata_names_are_compared_normalised(tmp_path: Path) -> None:
    h = house(tmp_path, "foo_bar-1.0-py3-none-any.whl")
    m = meta()
    del m["Name"], m["Version"]
    m["Name"], m["Version"] = "Foo.Bar", "1.0.0"
    assert list(resolve(tmp_path, "foo-bar==1.0\n", h, {"foo-bar": m})) == ["foo-bar"]


@pytest.mark.parametrize(("requires", "shown"), [
    pytest.param('beta ; python_version ~= "3"', "'beta ; python_version ~= \"3\"'", id="undefined-comparison"),
    pytest.param("beta ; " + "(" * 2000 + "os_name == 'posix'" + ")" * 2000, repr("beta ; " + "(" * 23 + "..."),
                 id="nested-too-deeply"),
])
def test_a_dependency_marker_packaging_cannot_evaluate_names_the_wheel(tmp_path: Path, requires: str, shown: str) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")
    with pytest.raises(InputError) as info:
        resolve(tmp_path, "alpha==1.0\nbeta==1.0\n", h, {"alpha": meta([requires])})
    (msg,) = info.value.problems
    assert msg.startswith(f"{tmp_path / 'requirements.txt'}:1: alpha-1.0-py3-none-any.whl declares {shown}, ")
    assert msg.endswith("; replace the wheel with a good build, or pin another version of alpha") and "\n" not in msg


def test_fix_command_names_every_platform_the_target_accepts(tmp_path: Path) -> None:
    from cros_venv.tools import targets

    target = targets.declared("3.11", "manylinux_2_28_x86_64")
    h = house(tmp_path, "native-1.0-cp311-cp311-macosx_11_0_arm64.whl")
    command = wheels.fix_command("native", Version("1.0"), list(h.wheels[canonicalize_name("native")]), target)
    platforms = " ".join(f"--platform {p}" for p in targets.expand_platform("manylinux_2_28_x86_64"))
    assert command == ("pip download --only-binary=:all: --no-deps --python-version 3.11 --implementation cp "
                       f"--abi cp311 {platforms} -d pip_packages native==1.0")
    assert platforms.startswith("--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 ")
    assert platforms.endswith("--platform manylinux_2_5_x86_64 --platform manylinux1_x86_64")
    assert wheels.download_platforms(TARGET) == ["manylinux_2_17_x86_64"]  # not linux_x86_64 nor any


def test_an_unclosed_pylock_is_made_again_from_its_input_not_locked_in_place(tmp_path: Path) -> None:
    h = house(tmp_path / "pip_packages", "alpha-1.0-py3-none-any.whl")
    pin = Pin(canonicalize_name("alpha"), Version("1.0"), frozenset(), None, frozenset(), "/r/pylock.toml:7")
    unresolved = wheels.Unresolved((), {canonicalize_name(n): ((pin, Requirement(n)),) for n in ("beta", "gamma")}, ())
    summary = unresolved.error(h, TARGET).problems[0]
    assert summary.startswith("/r/pylock.toml:7: /r/pylock.toml is not closed: 2 dependencies of its pins are not "
                              "pinned; lock it again from the requirements it was made from (the dependencies below")


def test_a_lock_made_for_other_interpreters_says_so_not_to_vendor(tmp_path: Path) -> None:
    """A missing wheel the lock lists is a vendor_wheels away; a lock that lists none for the
    target was made for other interpreters: the fix is to lock for this one.
    """
    from cros_venv.reqlines import Locked, LockedWheel

    h = house(tmp_path / "pip_packages")
    listed = (LockedWheel("compiled-2.0-cp39-cp39-manylinux_2_17_x86_64.whl", frozenset({"sha256:" + "0" * 64})),)
    pin = Pin(canonicalize_name("compiled"), Version("2.0"), frozenset(), None, frozenset(), "locks/pylock.toml:9",
              locked=Locked(listed))
    assert wheels.missing_message(pin, h, TARGET) == (
        "locks/pylock.toml:9: the lock names no wheel of compiled==2.0 that fits "
        f"{TARGET.describe()} (compiled-2.0-cp39-cp39-manylinux_2_17_x86_64.whl): it was not made for this "
        "interpreter; lock again with it among the targets (bin/vendor_wheels --lock REQUIREMENTS -o pylock.toml "
        "--python 3.11 ...), or use an interpreter it was made for")
    fits = Locked((LockedWheel("compiled-2.0-cp311-cp311-manylinux_2_17_x86_64.whl", frozenset()),))
    assert "fix: " in wheels.missing_message(
        Pin(pin.name, pin.version, frozenset(), None, frozenset(), pin.origin, locked=fits), h, TARGET)


def test_several_pins_of_a_lock_made_for_other_interpreters_are_one_line_saying_lock_again(tmp_path: Path) -> None:
    """`pip lock` on 3.9 lists only cp39 wheels: on 3.11 the summary says to lock for 3.11,
    not to vendor (vendor_wheels cannot fetch what the lock does not name); pins the lock does
    fit but that lack a wheel keep their own summary."""
    from cros_venv.reqlines import Locked, LockedWheel

    h = house(tmp_path / "pip_packages")

    def pin(name: str, wheel: str, line: int) -> Pin:
        listed = Locked((LockedWheel(wheel, frozenset({"sha256:" + "0" * 64})),))
        return Pin(canonicalize_name(name), Version("2.0"), frozenset(), None, frozenset(), f"l/pylock.toml:{line}",
                   locked=listed)

    unfit = [pin(n, f"{n}-2.0-cp39-cp39-manylinux_2_17_x86_64.whl", i) for i, n in enumerate(("aa", "bb"), 1)]
    fits = [pin(n, f"{n}-2.0-py3-none-any.whl", i) for i, n in enumerate(("cc", "dd"), 3)]
    problems = wheels.Unresolved((*unfit, *fits), {}, ()).error(h, TARGET).problems
    assert problems[0] == (f"l/pylock.toml:1: 2 pins of the lock name no wheel that fits {TARGET.describe()}: it was "
                           "not made for this interpreter; lock again with it among the targets (bin/vendor_wheels "
                           "--lock REQUIREMENTS -o pylock.toml --python 3.11 ...), or use an interpreter it was made "
                           "for (the pins below)")
    assert problems[1:3] == ("l/pylock.toml:1: no wheel for aa==2.0", "l/pylock.toml:2: no wheel for bb==2.0")
    assert problems[3].startswith(f"l/pylock.toml:3: 2 pins have no wheel in {h.directory}") and "--lock" not in \
        problems[3], problems[3]
    assert len(problems) == 6


def test_the_lock_step_advised_for_a_file_with_includes_writes_beside_it(tmp_path: Path) -> None:
    """The lock step refuses to write over a file with -r/-c (the includes would be lost):
    the advice names a file beside it instead, and says to use it."""
    h = house(tmp_path / "pip_packages", "alpha-1.0-py3-none-any.whl")
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("-r base.txt\nalpha==1.0\n")
    pin = Pin(canonicalize_name("alpha"), Version("1.0"), frozenset(), None, frozenset(), f"{reqs}:2")
    unresolved = wheels.Unresolved((), {canonicalize_name(n): ((pin, Requirement(n)),) for n in ("beta", "gamma")}, ())
    summary = unresolved.error(h, TARGET).problems[0]
    locked = tmp_path / "requirements.lock.txt"
    assert f"--lock {reqs} -o {locked}, then use {locked} (the dependencies below" in summary, summary
    reqs.write_text("alpha==1.0\n")
    assert f"--lock {reqs} -o {reqs} (the dependencies below" in unresolved.error(h, TARGET).problems[0]
