"""spec: normalised, JSON round trip, equality is what decides a rebuild."""

from __future__ import annotations

import json

import pytest

from cros_venv import spec

INTERP = {"path": "/usr/bin/python3.11", "version": "3.11.7", "implementation": "cpython", "abi": "cp311"}


def test_order_does_not_matter() -> None:
    a = spec.Spec.build(INTERP, ["b==1", "a==2"], {"b.whl": "1", "a.whl": "2"})
    b = spec.Spec.build(dict(reversed(list(INTERP.items()))), ["a==2", "b==1"], {"a.whl": "2", "b.whl": "1"})
    assert a == b


BUILT = {"tool": "t", "venv": "/v", "wheel_dir": "/w", "dist_info": ["a-2.dist-info"], "pyvenv_cfg": "0" * 64}


def test_round_trips_through_the_marker() -> None:
    s = spec.Spec.build(INTERP, ["a[x]==2"], {"a-2-py3-none-any.whl": "ff" * 32})
    data = spec.marker_bytes(s, "cv1 key", BUILT)
    doc = json.loads(data)
    assert doc["noop"] == "cv1 key" and doc["spec"]["requirements"] == ["a[x]==2"]
    assert doc["spec"]["wheels"] == [{"filename": "a-2-py3-none-any.whl", "sha256": "ff" * 32}]
    assert spec.read_marker(data) == spec.Marker(s, "/v", "/w", ("a-2.dist-info",), "0" * 64, BUILT)


def test_any_difference_is_a_different_spec() -> None:
    base = spec.Spec.build(INTERP, ["a==2"], {"a.whl": "1"})
    assert base != spec.Spec.build({**INTERP, "version": "3.11.8"}, ["a==2"], {"a.whl": "1"})
    assert base != spec.Spec.build(INTERP, ["a[x]==2"], {"a.whl": "1"})
    assert base != spec.Spec.build(INTERP, ["a==2"], {"a.whl": "2"})


GOOD = json.loads(spec.marker_bytes(spec.Spec.build(INTERP, ["a==2"], {"a.whl": "1"}), "k", BUILT))


@pytest.mark.parametrize("data", [
    b"", b"{not json", b"\xff\xfe", b"[" * 100000 + b"]" * 100000, b'"a string"', b"[]",
    b'{"spec": {"format": 99}}', b'{"spec": {"format": 1, "interpreter": 3}}',
    json.dumps({**GOOD, "built": None}).encode(),
    json.dumps({**GOOD, "built": {**BUILT, "venv": 3}}).encode(),
    json.dumps({**GOOD, "built": {**BUILT, "dist_info": "a-2.dist-info"}}).encode(),
    json.dumps({**GOOD, "built": {**BUILT, "dist_info": [None]}}).encode(),
    json.dumps({k: v for k, v in GOOD.items() if k != "built"}).encode(),
    json.dumps({**GOOD, "spec": {**GOOD["spec"], "wheels": ["a.whl"]}}).encode(),
], ids=["empty", "not-json", "not-utf8", "deep-nesting", "string", "list", "format", "interpreter", "built-null",
        "venv-number", "dist-info-string", "dist-info-null", "no-built", "wheels-strings"])
def test_a_marker_not_fully_readable_is_no_marker(data: bytes) -> None:
    """Whatever a marker holds, reading it never raises: a marker the tool cannot fully
    read means the venv is rebuilt.
    """
    assert spec.read_marker(data) is None
    assert spec.read_marker(json.dumps(GOOD).encode()) is not None
