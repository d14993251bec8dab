"""lockfile: per-target resolutions merged into pins with exact markers, pip-compile style text."""

from __future__ import annotations

from typing import Any

import pytest
from packaging.markers import Marker
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from cros_venv.errors import InputError
from cros_venv.tools import lockfile, targets

LINUX = "manylinux_2_17_x86_64"
MAC = "macosx_11_0_arm64"


def chosen(name: str, version: str, via: str = "-r r.in", markers: tuple[str, ...] = ()) -> lockfile.Chosen:
    return lockfile.Chosen(canonicalize_name(name), Version(version), frozenset(), frozenset({via}), frozenset(markers))


def resolution(*picks: lockfile.Chosen) -> dict[NormalizedName, lockfile.Chosen]:
    return {c.name: c for c in picks}


def test_a_pin_every_target_shares_is_one_line_without_marker() -> None:
    ts = [targets.declared(v, LINUX) for v in ("3.9", "3.12")]
    lines = lockfile.merge(ts, [resolution(chosen("a", "1.0")), resolution(chosen("a", "1.0"))])
    assert [ln.requirement for ln in lines] == ["a==1.0"]


def test_versions_that_differ_get_ranges_bounded_by_declared_versions() -> None:
    ts = [targets.declared(v, LINUX) for v in ("3.9", "3.11", "3.12")]
    lines = lockfile.merge(ts, [resolution(chosen("a", "1.0")), resolution(chosen("a", "2.0")),
                                resolution(chosen("a", "2.0"))])
    assert [ln.requirement for ln in lines] == ['a==1.0 ; python_version < "3.11"', 'a==2.0 ; python_version >= "3.11"']


def test_the_requirements_own_marker_is_used_when_it_is_exact() -> None:
    ts = [targets.declared(v, LINUX) for v in ("3.9", "3.12")]
    eg = chosen("exceptiongroup", "1.3", via="pytest", markers=("python_version < '3.11'", "python_version < '3.13'"))
    lines = lockfile.merge(ts, [resolution(eg), resolution()])
    assert [ln.requirement for ln in lines] == ['exceptiongroup==1.3 ; python_version < "3.11"']
    assert lines[0].via == ("pytest",)


def test_a_middle_version_gets_a_closed_range_and_scattered_ones_equalities() -> None:
    ts = [targets.declared(v, LINUX) for v in ("3.9", "3.10", "3.11", "3.12")]
    middle = lockfile.merge(ts, [resolution(), resolution(chosen("a", "1")), resolution(chosen("a", "1")), resolution()])
    assert middle[0].marker == 'python_version >= "3.10" and python_version < "3.12"'
    scattered = lockfile.merge(ts, [resolution(chosen("a", "1")), resolution(), resolution(chosen("a", "1")),
                                    resolution()])
    assert scattered[0].marker == 'python_version == "3.9" or python_version == "3.11"'


def test_platforms_are_told_apart_by_sys_platform_then_by_machine() -> None:
    ts = [targets.declared("3.11", p) for p in (LINUX, MAC)]
    lines = lockfile.merge(ts, [resolution(chosen("a", "1")), resolution(chosen("a", "2"))])
    assert [ln.marker for ln in lines] == ['sys_platform == "linux"', 'sys_platform == "darwin"']
    arm = [targets.declared("3.11", p) for p in (LINUX, "manylinux_2_17_aarch64")]
    lines = lockfile.merge(arm, [resolution(chosen("a", "1")), resolution()])
    assert [ln.marker for ln in lines] == ['platform_machine == "x86_64"']


def test_python_and_platform_together() -> None:
    ts = [targets.declared(v, p) for v in ("3.9", "3.12") for p in (LINUX, MAC)]
    # Only 3.9 on macOS takes the old version.
    picks = [resolution(chosen("a", "2")), resolution(chosen("a", "1")), resolution(chosen("a", "2")),
             resolution(chosen("a", "2"))]
    lines = lockfile.merge(ts, picks)
    assert [ln.requirement for ln in lines] == [
        'a==1 ; sys_platform == "darwin" and python_version < "3.12"',
        'a==2 ; (sys_platform == "darwin" and python_version >= "3.12") or sys_platform == "linux"',
    ]
    for ln in lines:  # exact on every declared target
        chose = [i for i, r in enumerate(picks) if r[canonicalize_name("a")].version == ln.version]
        assert [Marker(ln.marker or "").evaluate(dict(t.environment)) for t in ts] == [i in chose for i in range(4)]


def test_targets_no_marker_tells_apart_are_an_error() -> None:
    ts = [targets.declared("3.11", p) for p in (LINUX, "manylinux_2_28_x86_64")]
    with pytest.raises(InputError, match="resolve a differently, and no marker tells them apart"):
        lockfile.merge(ts, [resolution(chosen("a", "1")), resolution(chosen("a", "2"))])


def report(*items: dict[str, Any]) -> dict[str, Any]:
    return {"install": list(items)}


def item(name: str, version: str, requires: tuple[str, ...] = (), requested: bool = False,
         extras: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)},
            "requested": requested, "requested_extras": list(extras)}


def test_from_report_finds_parents_extras_and_markers() -> None:
    env = targets.declared("3.9", LINUX).environment
    got = lockfile.from_report(report(
        item("Top", "1", ("Mid[fast]>=1", "old ; python_version < '3.11'", "new ; python_version >= '3.11'"),
             requested=True),
        item("mid", "2", ("speedup ; extra == 'fast'",)),
        item("speedup", "3"),
        item("old", "1"),
    ), env, {}, "-r r.in")
    assert sorted(got) == ["mid", "old", "speedup", "top"]
    assert got[canonicalize_name("top")].via == {"-r r.in"}
    assert got[canonicalize_name("mid")].extras == {"fast"} and got[canonicalize_name("mid")].via == {"top"}
    assert got[canonicalize_name("speedup")].via == {"mid"}
    assert got[canonicalize_name("old")].markers == {'python_version < "3.11"'}


def test_render_is_pip_compile_style() -> None:
    lines = [lockfile.Line(canonicalize_name("a"), Version("1"), frozenset(), None, ("-r r.in",)),
             lockfile.Line(canonicalize_name("b"), Version("2"), frozenset({"x"}), 'python_version < "3.11"',
                           ("a", "c"))]
    text = lockfile.render(lines, "bin/vendor_wheels --lock r.in -o r.txt",
                           {(canonicalize_name("a"), Version("1")): ["f" * 64, "e" * 64]})
    assert text == ("#\n# This file is autogenerated by vendor_wheels --lock\n# by the following command:\n#\n"
                    "#    bin/vendor_wheels --lock r.in -o r.txt\n#\n"
                    f"a==1 \\\n    --hash=sha256:{'e' * 64} \\\n    --hash=sha256:{'f' * 64}\n    # via -r r.in\n"
                    'b[x]==2 ; python_version < "3.11"\n    # via\n    #   a\n    #   c\n')
