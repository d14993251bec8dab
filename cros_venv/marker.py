"""The marker, DIR/.cros_venv.json: its layout, written and read here and nowhere else.

Written last (atomically): a venv with a marker is complete. It is readable JSON, but its
first line is fixed so that the no-op check can take the no-op key from the front of the
file without a JSON parser (`json` imports `re` and `enum`: ~10 ms, as much as starting
Python)::

    {"noop": "<key>",
     "built": {...},
     "check": "<sha256 of built and spec>",
     "spec": {...}
    }

The key is made of `[0-9a-z.:=-]` and spaces only (fastpath.py), so it needs no escaping.
Standard library only, and `json` only when the whole marker is read: a build writes it
with `dumps` below (json.dumps's output, byte for byte, for the plain data a marker
holds; anything else is left to json.dumps). "check" makes an edited marker no marker:
the full check trusts what "built" says of the venv as built (venv.Survey), so a hand
edit there must not make a changed venv look whole.
"""

from cros_venv import fs
from cros_venv.names import MARKER

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the no-op check must not import typing
if TYPE_CHECKING:
    from typing import Any, Mapping

    from cros_venv.spec import Spec
    from cros_venv.venv import Survey

HEAD = b'{"noop": "'  # the marker's first bytes; the key follows, up to KEY_END
KEY_END = b'",\n'
TAIL = b"}\n"  # a marker cut short (no TAIL) is no marker
_KEY_CHARS = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyz.:=- ")


def render(spec: "Spec", noop_key: str, built: "Mapping[str, Any]") -> bytes:
    """The marker's bytes: the no-op key on the first line, then the spec and how the venv
    was built (provenance for whoever debugs it later).
    """
    key = noop_key.encode("ascii")
    if not set(key) <= _KEY_CHARS:
        raise ValueError(f"a no-op key may not hold {sorted(set(key) - _KEY_CHARS)!r}")
    body = {"built": dict(built), "spec": spec.to_json()}
    rest = dumps({**body, "check": _check(dumps(body))})
    return HEAD + key + KEY_END + b" " + rest[1:].lstrip().encode() + b"\n"


def _check(body: str) -> str:
    """The sha256 of `body` (built and spec, as dumps lays them out)."""
    from cros_venv.digest import sha256_hex

    return sha256_hex(body.encode("ascii"))  # dumps escapes what is not ASCII, as json.dumps does


class _NotPlain(Exception):
    """A value `dumps` leaves to json.dumps."""


def dumps(value: object) -> str:
    """`json.dumps(value, indent=1, sort_keys=True)`, without importing json (~6 ms with the
    `re` and `enum` it brings) when `value` is plain: dicts with str keys, lists, tuples,
    ints, bools, None and strings of printable ASCII (paths with other characters, floats:
    json.dumps itself)."""
    try:
        return _dumps(value, "\n")
    except _NotPlain:
        import json

        return json.dumps(value, indent=1, sort_keys=True)


def _dumps(value: object, newline: str) -> str:
    if isinstance(value, str):
        if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        raise _NotPlain
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    inner = newline + " "
    if isinstance(value, dict):
        if not value:
            return "{}"
        if not all(type(k) is str for k in value):
            raise _NotPlain
        items = [f"{_dumps(k, inner)}: {_dumps(value[k], inner)}" for k in sorted(value)]
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[" + inner + ("," + inner).join(_dumps(v, inner) for v in value) + newline + "]"
    raise _NotPlain


def key_of(data: bytes) -> "str | None":
    """The no-op key at the front of a marker's bytes, or None if they are not a marker."""
    if not data.startswith(HEAD) or not data.endswith(TAIL):
        return None
    end = data.find(KEY_END, len(HEAD))
    if end < 0:
        return None
    key = data[len(HEAD):end]
    return key.decode("ascii") if set(key) <= _KEY_CHARS else None


def read(venv_dir: str) -> "bytes | None":
    """The bytes of DIR's marker, or None if there is none (or it cannot be read)."""
    try:
        return fs.read_regular(fs.join(venv_dir, MARKER))  # a FIFO planted there: None, never a hang
    except (OSError, ValueError):
        return None


def read_key(venv_dir: str) -> "str | None":
    """The no-op key of DIR's marker, or None."""
    data = read(venv_dir)
    return None if data is None else key_of(data)


def write(venv_dir: str, data: bytes) -> None:
    """Write the marker, atomically and durably: from now on the venv is complete."""
    from cros_venv.cache import atomic_write

    atomic_write(fs.join(venv_dir, MARKER), data)


class Marker:
    """What a marker says: the spec, and where and how the venv was built."""

    __slots__ = ("built", "dist_info", "noop_key", "spec", "survey", "venv", "wheel_dir")

    def __init__(self, spec: "Spec", noop_key: str, venv: str, wheel_dir: str, dist_info: "tuple[str, ...]",
                 survey: "Survey", built: "Mapping[str, Any]") -> None:
        self.spec = spec
        self.noop_key = noop_key
        self.venv = venv  # the venv's real path when it was built
        self.wheel_dir = wheel_dir  # the pip_packages/ it was built from (its pip.conf names it)
        self.dist_info = dist_info  # the .dist-info directories installed
        self.survey = survey  # what the venv was as built (venv.survey), for venv.intact
        self.built = built  # the whole "built" object, kept when the no-op key is refreshed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Marker) and all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    def __repr__(self) -> str:
        return f"Marker(venv={self.venv!r}, spec={self.spec!r})"


def parse(data: bytes) -> "Marker | None":
    """The marker in `data`, or None if any part of it is missing, not as written, or
    edited since (its "check"): a marker the tool cannot fully trust means the venv is
    rebuilt.
    """
    import json

    from cros_venv.spec import Spec
    from cros_venv.venv import Survey

    key = key_of(data)
    if key is None:
        return None
    try:
        doc = json.loads(data)
        body = {"built": doc["built"], "spec": doc["spec"]}
        if doc["check"] != _check(json.dumps(body, indent=1, sort_keys=True)):
            return None
        found = Spec.from_json(doc["spec"])
        built = doc["built"]
        venv, wheel_dir, dist_info = built["venv"], built["wheel_dir"], built["dist_info"]
        survey = Survey.from_json(built)
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if (found is None or survey is None or doc.get("noop") != key or not isinstance(venv, str)
            or not isinstance(wheel_dir, str) or not isinstance(dist_info, list)
            or not all(isinstance(d, str) for d in dist_info)):
        return None
    return Marker(found, key, venv, wheel_dir, tuple(dist_info), survey, built)


def load(venv_dir: str) -> "Marker | None":
    """DIR's marker, read and checked, or None."""
    data = read(venv_dir)
    return None if data is None else parse(data)
