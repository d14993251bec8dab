"""marker: the layout is pinned (the no-op check reads the key from the front without a
JSON parser), and a marker not fully readable is no marker.
"""

from __future__ import annotations

import json
from typing import Callable, Mapping

import pytest

from cros_venv import marker, spec, venv

INTERP = {"path": "/usr/bin/python3.11", "version": "3.11.7", "implementation": "cpython", "abi": "cp311"}
SURVEY = venv.Survey(("bin/activate", "pyvenv.cfg"), ("a", "a-2.dist-info"), "0" * 64, "1" * 64, 10**18)
BUILT = {"tool": "t", "venv": "/v", "wheel_dir": "/w", "dist_info": ["a-2.dist-info"], **SURVEY.to_json()}
SPEC = spec.Spec.build(INTERP, ["a[x]==2"], {"a-2-py3-none-any.whl": "ff" * 32})
KEY = "cv2 tool=0.1.0:17 py=2f75:1:2:3:4 trees=missing"


def test_the_layout_is_pinned() -> None:
    """The first line holds the key; the file ends with `}` and a newline. Changing this
    changes what every existing venv's no-op check reads: bump fastpath.KEY_FORMAT too.
    """
    data = marker.render(SPEC, KEY, BUILT)
    assert data.startswith(b'{"noop": "' + KEY.encode() + b'",\n "built": {\n')
    assert data.endswith(b"\n}\n") and data.count(b"\n") == len(data.splitlines())
    assert marker.key_of(data) == KEY


def test_round_trips_as_json() -> None:
    data = marker.render(SPEC, KEY, BUILT)
    doc = json.loads(data)
    assert doc == {"noop": KEY, "built": BUILT, "spec": SPEC.to_json(), "check": doc["check"]}
    assert marker.parse(data) == marker.Marker(SPEC, KEY, "/v", "/w", ("a-2.dist-info",), SURVEY, BUILT)
    for venv_path in ("/home/é/v", "/a\udc80b", 'say "v"'):  # laid out by json.dumps, checked the same
        built = {**BUILT, "venv": venv_path}
        found = marker.parse(marker.render(SPEC, KEY, built))
        assert found is not None and found.venv == venv_path


@pytest.mark.parametrize("edit", [
    lambda b: b.replace(b'"pyvenv.cfg"', b'"pyvenv.cfx"'),  # what the full check trusts
    lambda b: b.replace(b'"0000', b'"0001'),
    lambda b: b.replace(b"1000000000000000000", b"9000000000000000000"),
    lambda b: b.replace(b'"/v"', b'"/x"'),
    lambda b: b.replace(b'"a-2.dist-info"', b'"b-2.dist-info"', 1),
], ids=["files", "pyvenv-cfg-sha", "settled", "venv", "dist-info"])
def test_an_edited_marker_body_is_no_marker(edit: Callable[[bytes], bytes]) -> None:
    """What "built" says of the venv is what the full check compares the venv with: edited
    by hand (to match a change made in the venv), it must not vouch for it.
    """
    data = marker.render(SPEC, KEY, BUILT)
    edited = edit(data)
    assert edited != data and json.loads(edited)  # still a well-formed marker, key and all
    assert marker.key_of(edited) == KEY
    assert marker.parse(edited) is None


def test_a_key_that_would_need_escaping_is_refused() -> None:
    for bad in ['cv2 "quoted"', "cv2 back\\slash", "cv2 new\nline", "cv2 UPPER", "cv2 é"]:
        with pytest.raises(ValueError):
            marker.render(SPEC, bad, BUILT)


def test_the_same_json_laid_out_otherwise_is_no_marker() -> None:
    """Whatever rewrote it (a person, another JSON writer), the key is not at the front:
    the venv is rebuilt rather than its key guessed.
    """
    doc = json.loads(marker.render(SPEC, KEY, BUILT))
    for data in (json.dumps(doc).encode() + b"\n", json.dumps(doc, indent=2).encode() + b"\n",
                 json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"):
        assert marker.key_of(data) is None and marker.parse(data) is None


def _with_key(doc: Mapping[str, object], key: str = KEY) -> bytes:
    """`doc` in the marker's layout (the key first), whatever it holds."""
    body = {k: doc[k] for k in ("built", "spec") if k in doc}
    doc = {"check": marker._check(json.dumps(body, indent=1, sort_keys=True)), **doc}
    rest = json.dumps(doc, indent=1)
    return marker.HEAD + key.encode() + marker.KEY_END + b" " + rest[1:].lstrip().encode() + b"\n"


GOOD = {"built": BUILT, "spec": SPEC.to_json()}


@pytest.mark.parametrize("data", [
    b"", b"{not json", b"\xff\xfe", b"[" * 100000 + b"]" * 100000, b'"a string"', b"[]",
    marker.render(SPEC, KEY, BUILT)[:-2],
    marker.HEAD + KEY.encode() + marker.KEY_END + b"}\n",
    _with_key({**GOOD, "spec": {"format": 99}}),
    _with_key({**GOOD, "spec": {"format": 1, "interpreter": 3}}),
    _with_key({**GOOD, "built": None}),
    _with_key({**GOOD, "built": {**BUILT, "venv": 3}}),
    _with_key({**GOOD, "built": {**BUILT, "dist_info": "a-2.dist-info"}}),
    _with_key({**GOOD, "built": {**BUILT, "dist_info": [None]}}),
    _with_key({"spec": GOOD["spec"]}),
    _with_key({**GOOD, "spec": {**SPEC.to_json(), "wheels": ["a.whl"]}}),
    _with_key({**GOOD, "noop": "another key"}),
    _with_key({**GOOD, "built": {k: v for k, v in BUILT.items() if k != "files"}}),
    _with_key({**GOOD, "built": {**BUILT, "files": [1]}}),
    _with_key({**GOOD, "check": "0" * 64}),
    marker.HEAD + KEY.encode() + marker.KEY_END + b" " + json.dumps(GOOD, indent=1)[1:].lstrip().encode() + b"\n",
], ids=["empty", "not-json", "not-utf8", "deep-nesting", "string", "list", "cut-short", "key-only", "format",
        "interpreter", "built-null", "venv-number", "dist-info-string", "dist-info-null", "no-built",
        "wheels-strings", "two-keys", "no-files (an older version's marker)", "files-numbers",
        "check-wrong", "no-check (an older version's marker)"])
def test_a_marker_not_fully_readable_is_no_marker(data: bytes) -> None:
    """Whatever a marker holds, reading it never raises: a marker the tool cannot fully
    read means the venv is rebuilt.
    """
    assert marker.parse(data) is None
    assert marker.parse(_with_key(GOOD)) is not None


def test_read_and_write(tmp_path: object) -> None:
    from pathlib import Path

    venv = Path(str(tmp_path))
    assert marker.read_key(str(venv)) is None and marker.load(str(venv)) is None
    marker.write(str(venv), marker.render(SPEC, KEY, BUILT))
    assert marker.read_key(str(venv)) == KEY
    loaded = marker.load(str(venv))
    assert loaded is not None and loaded.spec == SPEC


@pytest.mark.parametrize("value", [
    {"b": 1, "a": [True, False, None, -3, 10**20], "c": {}, "d": [], "e": {"z": ("t", "u"), "y": "plain/path-1.0"}},
    {"path": "/home/é/venv"}, {"path": 'a"b'}, {"path": "a\\b"}, {"path": "tab\there"}, {"path": "\udc80"},
    {"float": 1.5}, {1: "non-str key"}, [], {}, "x", 0,
])
def test_dumps_writes_what_json_dumps_writes(value: object) -> None:
    assert marker.dumps(value) == json.dumps(value, indent=1, sort_keys=True)
