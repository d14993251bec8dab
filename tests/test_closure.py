"""closure: choosing a wheel per pin for the target's tags; the closure and hash checks."""

from __future__ import annotations

import os
from email.message import Message
from pathlib import Path
from typing import Callable

import pytest

from cros_venv import closure, requirements, wheels
from cros_venv.errors import InputError
from tests.test_requirements import ENV_311
from tests.test_wheels import TARGET, house


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


def resolve(tmp_path: Path, text: str, h: wheels.Wheelhouse, metas: dict[str, Message]) -> dict[str, closure.Resolved]:
    wanted, constraints = pins(tmp_path, text)
    chosen = closure.resolve(wanted, constraints, h, TARGET, lambda w: named(metas.get(w.name, meta()), w))
    return {str(k): v for k, v in chosen.items()}


def named(m: Message, w: wheels.Wheel) -> Message:
    """`m` with the wheel's own name and version, unless a test made it say otherwise."""
    if (m["Name"], m["Version"]) == ("alpha", "1.0"):
        m.replace_header("Name", w.name)
        m.replace_header("Version", str(w.version))
    return m


def test_picks_the_wheel_with_the_best_tag(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "alpha-1.0-cp311-abi3-manylinux_2_17_x86_64.whl",
              "alpha-1.0-cp39-cp39-manylinux_2_17_x86_64.whl", "alpha-2.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    chosen = resolve(tmp_path, "alpha==1.0\n", h, {})
    assert chosen["alpha"].wheel.filename == "alpha-1.0-cp311-abi3-manylinux_2_17_x86_64.whl"


def test_version_equality_follows_pep440(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0.0-py3-none-any.whl")
    assert resolve(tmp_path, "alpha==1.0\n", h, {})["alpha"].wheel.filename == "alpha-1.0.0-py3-none-any.whl"


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


def test_hash_checks(tmp_path: Path) -> None:
    h = house(tmp_path, "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl")
    path_a = str(tmp_path / "alpha-1.0-py3-none-any.whl")
    path_b = str(tmp_path / "beta-1.0-py3-none-any.whl")
    hashes = {path_a: "a" * 64, path_b: "b" * 64}
    good = resolve(tmp_path, f"alpha==1.0 --hash=sha256:{'a' * 64}\nbeta==1.0 --hash=sha256:{'b' * 64}\n", h, {})
    closure.check_hashes(good.values(), hashes, require=False)
    bad = resolve(tmp_path, f"alpha==1.0 --hash=sha256:{'c' * 64}\nbeta==1.0 --hash=sha256:{'b' * 64}\n", h, {})
    with pytest.raises(InputError, match=r"alpha-1.0-py3-none-any.whl does not match any --hash of alpha==1.0 \(its sha256 is a{64}\)"):
        closure.check_hashes(bad.values(), hashes, require=False)
    partial = resolve(tmp_path, f"alpha==1.0 --hash=sha256:{'a' * 64}\nbeta==1.0\n", h, {})
    with pytest.raises(InputError, match=r"beta==1.0 has no --hash, but other requirements do"):
        closure.check_hashes(partial.values(), hashes, require=False)
    none = resolve(tmp_path, "alpha==1.0\nbeta==1.0\n", h, {})
    closure.check_hashes(none.values(), hashes, require=False)
    with pytest.raises(InputError, match="hash-checking mode"):
        closure.check_hashes(none.values(), hashes, require=True)


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
