"""spec: normalised, JSON round trip, equality is what decides a rebuild."""

from __future__ import annotations

import json

from cros_venv import spec

INTERP = {"path": "/usr/bin/python3.11", "version": "3.11.7", "implementation": "cpython", "abi": "cp311"}


def test_order_does_not_matter() -> None:
    a = spec.Spec.build(INTERP, ["b==1", "a==2"], {"b.whl": "1", "a.whl": "2"})
    b = spec.Spec.build(dict(reversed(list(INTERP.items()))), ["a==2", "b==1"], {"a.whl": "2", "b.whl": "1"})
    assert a == b


def test_round_trips_through_the_marker() -> None:
    s = spec.Spec.build(INTERP, ["a[x]==2"], {"a-2-py3-none-any.whl": "ff" * 32})
    data = spec.marker_bytes(s, "cv1 key", {"tool": "t"})
    doc = json.loads(data)
    assert doc["noop"] == "cv1 key" and doc["spec"]["requirements"] == ["a[x]==2"]
    assert doc["spec"]["wheels"] == [{"filename": "a-2-py3-none-any.whl", "sha256": "ff" * 32}]
    assert spec.spec_from_marker(data) == s


def test_any_difference_is_a_different_spec() -> None:
    base = spec.Spec.build(INTERP, ["a==2"], {"a.whl": "1"})
    assert base != spec.Spec.build({**INTERP, "version": "3.11.8"}, ["a==2"], {"a.whl": "1"})
    assert base != spec.Spec.build(INTERP, ["a[x]==2"], {"a.whl": "1"})
    assert base != spec.Spec.build(INTERP, ["a==2"], {"a.whl": "2"})


def test_unreadable_or_other_format_markers_are_no_spec() -> None:
    assert spec.spec_from_marker(b"") is None
    assert spec.spec_from_marker(b"{not json") is None
    assert spec.spec_from_marker(b'{"spec": {"format": 99}}') is None
    assert spec.spec_from_marker(b'{"spec": {"format": 1, "interpreter": 3}}') is None
