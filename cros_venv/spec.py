"""The spec: what a venv is, normalised, so that two builds with the same meaning compare equal.

Comments, order, spelling of names, includes and unrelated wheels in pip_packages/ do
not change it; the interpreter, a pinned version, an extra or a wheel's bytes do.
"""

from __future__ import annotations

from cros_venv.lite import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

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

