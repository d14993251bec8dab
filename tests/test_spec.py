"""spec: normalised, JSON round trip, equality is what decides a rebuild."""

from __future__ import annotations

from cros_venv import spec

INTERP = {"path": "/usr/bin/python3.11", "version": "3.11.7", "implementation": "cpython", "abi": "cp311"}


def test_order_does_not_matter() -> None:
    a = spec.Spec.build(INTERP, ["b==1", "a==2"], {"b.whl": "1", "a.whl": "2"})
    b = spec.Spec.build(dict(reversed(list(INTERP.items()))), ["a==2", "b==1"], {"a.whl": "2", "b.whl": "1"})
    assert a == b


def test_any_difference_is_a_different_spec() -> None:
    base = spec.Spec.build(INTERP, ["a==2"], {"a.whl": "1"})
    assert base != spec.Spec.build({**INTERP, "version": "3.11.8"}, ["a==2"], {"a.whl": "1"})
    assert base != spec.Spec.build(INTERP, ["a[x]==2"], {"a.whl": "1"})
    assert base != spec.Spec.build(INTERP, ["a==2"], {"a.whl": "2"})



def test_round_trips_through_json() -> None:
    s = spec.Spec.build(INTERP, ["a[x]==2"], {"a-2-py3-none-any.whl": "ff" * 32})
    assert s.to_json()["wheels"] == [{"filename": "a-2-py3-none-any.whl", "sha256": "ff" * 32}]
    assert spec.Spec.from_json(s.to_json()) == s
    assert spec.Spec.from_json({**s.to_json(), "format": 99}) is None
