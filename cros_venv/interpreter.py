"""The target interpreter: its identity, wheel tags (in priority order) and marker environment.

The answer for an interpreter is asked once (in this process if it is ours, else by
running it) and cached keyed by the interpreter's real path, size and mtime.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from packaging.tags import Tag

from cros_venv import procs, store
from cros_venv.cache import atomic_write
from cros_venv.digest import sha256_hex
from cros_venv.errors import InputError
from cros_venv.locate import running_python

PROBE_FORMAT = 1


@dataclass(frozen=True)
class Target:
    """What the venv is built for."""

    path: str  # real path of the interpreter
    version: str  # "3.11.7"
    implementation: str  # "cpython"
    abi: str  # "cp311"
    tags: tuple[Tag, ...]  # best first
    environment: Mapping[str, str]  # PEP 508 marker environment

    @property
    def python_version(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def python_full_version(self) -> str:
        return str(self.environment.get("python_full_version", self.version))

    @functools.cached_property
    def tag_rank(self) -> dict[Tag, int]:
        return {t: i for i, t in enumerate(self.tags)}

    def describe(self) -> str:
        where = f"Python {self.version} at {self.path}" if os.path.isabs(self.path) else self.path
        return f"{where} (best tag {self.tags[0]})"

    def identity(self) -> dict[str, str]:
        """What the spec records about the interpreter."""
        return {"path": self.path, "version": self.version,
                "implementation": self.implementation, "abi": self.abi}

    @classmethod
    def from_probe(cls, data: Mapping[str, Any]) -> Target:
        """The Target a probe describes (from a child, or the cache); raises ValueError,
        KeyError or TypeError unless every field has its shape.
        """
        fields = (data["path"], data["version"], data["implementation"], data["abi"])
        tags, environment = data["tags"], data["environment"]
        if not (all(isinstance(f, str) for f in fields) and isinstance(tags, list) and tags
                and all(isinstance(t, str) and t.count("-") == 2 for t in tags) and isinstance(environment, dict)
                and all(isinstance(v, str) for v in environment.values())):
            raise ValueError("not a probe of this format")
        return cls(
            path=data["path"],
            version=data["version"],
            implementation=data["implementation"],
            abi=data["abi"],
            tags=tuple(Tag(*t.split("-")) for t in tags),
            environment=dict(environment),
        )


def probe_running() -> dict[str, Any]:
    """Describe the interpreter running this code (run in the target)."""
    import sysconfig

    from packaging import markers, tags

    ordered = [str(t) for t in tags.sys_tags()]
    return {
        "format": PROBE_FORMAT,
        "path": running_python(),
        "version": ".".join(map(str, sys.version_info[:3])),
        "implementation": sys.implementation.name,
        "abi": next(iter(tags.sys_tags())).abi,
        "soabi": sysconfig.get_config_var("SOABI") or "",
        "tags": ordered,
        "environment": dict(markers.default_environment()),
    }


def _not_python(path: str, why: str) -> InputError:
    """The one error for an interpreter that is not a usable Python (the same whether or not
    DIR exists: nothing about the venv is looked at before the interpreter is known).
    """
    return InputError(f"{path} is not a usable Python interpreter ({why}); "
                      "pass --python PATH to CPython 3.9 or newer")


def _probe_other(path: str, import_roots: list[str]) -> dict[str, Any]:
    code = (
        "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
        "from cros_venv.interpreter import probe_running; print(json.dumps(probe_running()))"
    )
    repo = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    try:
        out = procs.run_text([path, "-I", "-S", "-c", code, json.dumps([repo, *import_roots])], timeout=120)
    except OSError as e:
        raise _not_python(path, f"cannot run it: {e.strerror}") from None
    except procs.Timeout:
        raise _not_python(path, "it did not answer in 120 s") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise _not_python(path, f"it failed to describe itself: {last[:200]}")
    try:
        data: dict[str, Any] = json.loads(out.stdout)
        if not isinstance(data, dict) or data.get("format") != PROBE_FORMAT:
            raise ValueError
        Target.from_probe(data)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _not_python(path, "it gave no description of itself") from None
    return data


def find(python: str, cache_dir: str, import_roots: list[str]) -> Target:
    """The Target for the interpreter at real path `python`, using the cache when current."""
    try:
        st = os.stat(python)
    except OSError:
        raise InputError(f"no interpreter at {python}; pass --python PATH to an existing python") from None
    if not os.path.isfile(python):
        raise _not_python(python, "it is not a file")
    # The answer depends on the interpreter's file (git's index fields) and on the code
    # that asks (packaging computes the tags and markers; this module's probe format).
    from packaging import __version__ as packaging_version

    key = f"{PROBE_FORMAT}:{packaging_version}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    cache_file = os.path.join(cache_dir, sha256_hex(os.fsencode(python))[:24] + store.SUFFIX)
    cached = store.load(cache_file)
    if isinstance(cached, dict) and cached.get("key") == key:
        try:
            return Target.from_probe(cached["probe"])
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
    ours = python == running_python()
    probe = probe_running() if ours else _probe_other(python, import_roots)
    target = Target.from_probe(probe)
    with contextlib.suppress(OSError):
        atomic_write(cache_file, store.dumps({"key": key, "probe": probe}), durable=False)
    return target
