"""The spec: what a venv is, normalised, so that two builds with the same meaning compare equal.

Comments, order, spelling of names, includes and unrelated wheels in pip_packages/ do
not change it; the interpreter, a pinned version, an extra or a wheel's bytes do.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, NamedTuple

SPEC_FORMAT = 1


class Spec(NamedTuple):
    """A venv's identity: interpreter, the installed set, and each wheel's sha256."""

    interpreter: tuple[tuple[str, str], ...]  # sorted (key, value): path, version, implementation, abi
    requirements: tuple[str, ...]  # sorted "name[extra,...]==version"
    wheels: tuple[tuple[str, str], ...]  # sorted (filename, sha256)
    format: int = SPEC_FORMAT

    @classmethod
    def build(cls, interpreter: Mapping[str, str], requirements: list[str],
              wheels: Mapping[str, str]) -> Spec:
        return cls(tuple(sorted(interpreter.items())), tuple(sorted(requirements)), tuple(sorted(wheels.items())))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "interpreter": dict(self.interpreter),
            "requirements": list(self.requirements),
            "wheels": [{"filename": f, "sha256": h} for f, h in self.wheels],
        }

    @classmethod
    def from_json(cls, data: Any) -> Spec | None:
        """The spec in `data`, or None if it is not a spec this version can read."""
        try:
            if data["format"] != SPEC_FORMAT:
                return None
            return cls(
                interpreter=tuple(sorted((str(k), str(v)) for k, v in data["interpreter"].items())),
                requirements=tuple(sorted(str(r) for r in data["requirements"])),
                wheels=tuple(sorted((str(w["filename"]), str(w["sha256"])) for w in data["wheels"])),
            )
        except (KeyError, TypeError, AttributeError):
            return None


def marker_bytes(spec: Spec, noop_key: str, provenance: Mapping[str, Any]) -> bytes:
    """The marker file: readable JSON with the spec, the no-op key and how it was built.

    The no-op key gets a line of its own so `fastpath` can find it without a JSON parser.
    """
    doc = {"spec": spec.to_json(), "noop": noop_key, "built": dict(provenance)}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


class Marker(NamedTuple):
    """What a marker says: the spec, and where and how the venv was built."""

    spec: Spec
    venv: str  # the venv's real path when it was built
    wheel_dir: str  # the pip_packages/ it was built from (its pip.conf names it)
    dist_info: tuple[str, ...]  # the .dist-info directories installed
    pyvenv_cfg: str  # sha256 of pyvenv.cfg as built
    built: Mapping[str, Any]  # the whole "built" object, kept when the no-op key is refreshed


def read_marker(data: bytes) -> Marker | None:
    """The marker in `data`, or None if any part of it is missing or not as written:
    a marker the tool cannot fully read means the venv is rebuilt.
    """
    try:
        doc = json.loads(data)
        found = Spec.from_json(doc["spec"])
        built = doc["built"]
        venv, wheel_dir, dist_info, cfg = built["venv"], built["wheel_dir"], built["dist_info"], built["pyvenv_cfg"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if (found is None or not isinstance(venv, str) or not isinstance(wheel_dir, str) or not isinstance(cfg, str)
            or not isinstance(dist_info, list) or not all(isinstance(d, str) for d in dist_info)):
        return None
    return Marker(found, venv, wheel_dir, tuple(dist_info), cfg, built)

