"""A found spec -> what the build takes: requirements text and the Python version asked for."""

from __future__ import annotations

import sys

from cros_venv.errors import InputError
from cros_venv.specs.found import Found

TYPE_CHECKING = False  # not typing's (see found.py)
if TYPE_CHECKING:
    from typing import Any, Callable

    from cros_venv.specs.textproto import Field

# PEP 440's own regex (Appendix B, as packaging.version.VERSION_PATTERN), without the
# surrounding whitespace packaging allows; tests/test_specs.py checks it agrees with packaging.
VERSION_RE = r"""
    v?
    (?:(?:[0-9]+)!)?                                    # epoch
    [0-9]+(?:\.[0-9]+)*                                 # release
    (?:[-_.]?(?:alpha|a|beta|b|preview|pre|c|rc)[-_.]?[0-9]*)?  # pre-release
    (?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?       # post-release
    (?:[-_.]?dev[-_.]?[0-9]*)?                          # dev release
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?                 # local version
"""
NAME_RE = r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]"  # PEP 508's (re.IGNORECASE)
PY_SUFFIXES = ("-py2_py3", "-py3", "-py2")  # CIPD's wheel package names end in the Python they serve
VPYTHON_FIX = "fix the spec (vpython's text protobuf format)"


class Converted:
    """A spec as the build takes it."""

    __slots__ = ("lines", "python_version", "requirements", "requires_python")

    def __init__(self, requirements: str, python_version: str | None = None, requires_python: str | None = None,
                 lines: tuple[int, ...] = ()) -> None:
        self.requirements = requirements  # pip requirements text, one requirement a line: "six==1.17.0\n"
        self.python_version = python_version  # vpython's python_version ("3.11"), else None
        self.requires_python = requires_python  # PEP 723's requires-python (">=3.9"), else None
        self.lines = lines  # the line of the spec's file each line of `requirements` comes from (for messages)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Converted) and all(getattr(self, a) == getattr(other, a)
                                                    for a in ("python_version", "requirements", "requires_python"))

    def __hash__(self) -> int:
        return hash((self.requirements, self.python_version, self.requires_python))

    def __repr__(self) -> str:
        return f"Converted({self.requirements!r}, {self.python_version!r}, {self.requires_python!r})"


def convert(found: Found) -> Converted:
    """What `found` asks for; raises InputError (one line) for a spec that says it wrongly."""
    if found.kind == "requirements":
        return Converted(found.text, lines=tuple(range(found.line, found.line + found.text.count("\n") + 1)))
    if found.kind == "pep723":
        return _pep723(found)
    if found.kind == "vpython":
        return _vpython(found)
    raise ValueError(f"unknown spec kind {found.kind!r}")


# -- PEP 723 ----------------------------------------------------------------------------------

def _pep723(found: Found) -> Converted:
    import re

    loads, error = _toml()
    block = f"{found.path}:{found.line - 1}"  # the `# /// script` line
    try:
        data = loads(found.text)
    except (error, RecursionError) as e:
        # "Invalid value (at line 2, column 7)": the line of the block, made the script's.
        where = re.search(r" \(at line (\d+), column (\d+)\)$", str(e))
        message = str(e)[:where.start()] if where else str(e)
        line = found.where(int(where.group(1))) if where else block
        column = f" at column {int(where.group(2)) + 2}" if where else ""  # the `# ` stripped from each line
        raise InputError(f"{line}: the PEP 723 block is not valid TOML ({message}{column}); fix it") from None
    dependencies = data.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise InputError(f"{block}: `dependencies` in the PEP 723 block must be a list of strings "
                         f'(PEP 508 requirements), not {dependencies!r}; write dependencies = ["name==1.2.3"]')
    for dependency in dependencies:
        # A string that is no requirement would read as an option (`-r x`) or a comment.
        if "\n" in dependency or "\r" in dependency or not re.match(r"\s*[A-Za-z0-9]", dependency):
            raise InputError(f"{block}: {dependency!r} in `dependencies` is not a PEP 508 requirement; "
                             'write "name==1.2.3"')
    requires_python = data.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise InputError(f'{block}: `requires-python` in the PEP 723 block must be a string such as ">=3.9", '
                         f"not {requires_python!r}")
    return Converted("".join(f"{d.strip()}\n" for d in dependencies), None, requires_python,
                     tuple(_line_of(found, d) for d in dependencies))


def _line_of(found: Found, dependency: str) -> int:
    """The line of the script where the block's `dependency` is written (the first with it
    quoted; else the `# /// script` line)."""
    for i, line in enumerate(found.text.split("\n")):
        if f'"{dependency}"' in line or f"'{dependency}'" in line:
            return found.line + i
    return found.line - 1


def _toml() -> tuple[Callable[[str], dict[str, Any]], type[Exception]]:
    """tomllib's `loads` and error; before 3.11, tomli's from pip_packages/ (imported only now)."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads, tomllib.TOMLDecodeError
    from cros_venv import toolchain

    tomli = toolchain.import_tomli()
    return tomli.loads, tomli.TOMLDecodeError


# -- vpython ----------------------------------------------------------------------------------

def _vpython(found: Found) -> Converted:
    import re

    from cros_venv.specs import textproto

    try:
        fields = textproto.parse(found.text)
    except textproto.ParseError as e:
        raise InputError(f"{found.where(e.line)}: {e.message}; {VPYTHON_FIX}") from None
    python_version = None
    pins: dict[tuple[str, str], tuple[str, int]] = {}  # (normalised name, marker) -> (version, line)
    lines = []
    where: list[int] = []
    for field in fields:
        if field.name == "python_version":
            if field.kind != "string" or not re.fullmatch(r"[0-9]+(\.[0-9]+){0,2}", field.text):
                raise InputError(f'{found.where(field.line)}: python_version must be a string such as "3.11", '
                                 f"not {field.text or field.kind}; {VPYTHON_FIX}")
            python_version = field.text
        elif field.name == "wheel":
            marker = _marker(found, field)
            chosen = _wheel(found, field, elsewhere=bool(marker) and not _on_this_machine(marker))
            if chosen is None:
                continue  # another platform's local build (version:7.3.chromium.1): never used here
            name, version = chosen
            key = (re.sub(r"[-_.]+", "-", name).lower(), marker)
            if key in pins and pins[key][0] != version:
                raise InputError(f"{found.where(field.line)}: wheel {name} version:{version} is also pinned at "
                                 f"version:{pins[key][0]} on line {found.line + pins[key][1] - 1} for the same "
                                 "platforms; keep one, or tell them apart with match_tag")
            if key not in pins:
                pins[key] = (version, field.line)
                lines.append(f"{name}=={version}" + (f" ; {marker}" if marker else "") + "\n")
                where.append(found.line + field.line - 1)
    return Converted("".join(lines), python_version, None, tuple(where))


def _on_this_machine(marker: str) -> bool:
    """Whether `marker` (one _marker wrote: comparisons of sys_platform, platform_machine and
    python_version joined by and/or) can hold on this machine for some Python: the venv is
    built here, for one of its interpreters. (No packaging: python_venv has not put the
    tool's libraries on sys.path when it converts a spec.)
    """
    import platform
    import re

    here = {"sys_platform": sys.platform, "platform_machine": platform.machine()}

    def holds(version: str) -> bool:
        def atom(m: re.Match[str]) -> str:
            name, op, value = m.groups()
            actual = here.get(name, version)
            return str(actual == value if op == "==" else actual != value if op == "!=" else version < value)

        expression = re.sub(r'(\w+) (==|!=|<) "([^"]*)"', atom, marker)
        if not re.fullmatch(r"(?:\s|\(|\)|True|False|and|or)*", expression):
            return True  # not one of ours: assume it may hold (the build evaluates it properly)
        return bool(eval(expression, {"__builtins__": {}}))  # only True/False/and/or/parentheses, checked above

    return any(holds(v) for v in ["2.7", *(f"3.{minor}" for minor in range(30))])


# A wheel tag's platform -> (sys_platform, platform_machine or None), by prefix and suffix.
_SYSTEMS = (("win", "win32"), ("manylinux", "linux"), ("musllinux", "linux"), ("linux", "linux"),
            ("macosx", "darwin"))
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "arm64", "i686": "i686",
             "armv7l": "armv7l", "ppc64le": "ppc64le", "s390x": "s390x"}


def _marker(found: Found, wheel: Field) -> str:
    """vpython's match_tag / not_match_tag as an environment marker ("" for none): the wheel
    is used where any match_tag fits (or there is none) and no not_match_tag does."""
    matches = [_tag(found, t) for t in wheel.fields if t.name == "match_tag"]
    excludes = [_tag(found, t) for t in wheel.fields if t.name == "not_match_tag"]
    parts = []
    if matches and all(matches):
        alternatives = sorted(set(" and ".join(m) for m in matches))
        if len(alternatives) > 1:
            alternatives = [f"({a})" if " and " in a else a for a in alternatives]
        parts.append(alternatives[0] if len(alternatives) == 1 else "(" + " or ".join(alternatives) + ")")
    for exclude in excludes:
        if not exclude:
            return 'python_version < "0"'  # excludes every platform: never installed
        negated = [c.replace(" == ", " != ") for c in exclude]
        parts.append(negated[0] if len(negated) == 1 else "(" + " or ".join(negated) + ")")
    return " and ".join(parts)


def _tag(found: Found, tag: Field) -> list[str]:
    """One match_tag message (python, abi, platform) as marker comparisons, all to hold."""
    import re

    if tag.kind != "message":
        raise InputError(f'{found.where(tag.line)}: {tag.name} must be a message such as < platform: "win_amd64" >; '
                         f"{VPYTHON_FIX}")
    comparisons = []
    for field in tag.fields:
        if field.kind != "string":
            continue
        value = field.text
        if field.name in ("python", "abi"):
            version = re.fullmatch(r"(?:cp|py|pp)(\d)(\d+)[dmu]*", value)  # cp27mu: 2.7's ABI, never on 3.x
            if version:
                comparisons.append(f'python_version == "{version.group(1)}.{version.group(2)}"')
            elif not re.fullmatch(r"py\d|abi3|none|cp\d+[dmu]*", value):
                raise InputError(f"{found.where(field.line)}: {tag.name} {field.name} {value!r} is not a tag "
                                 "this tool can read (cp311, py3, abi3, none); fix the spec")
        elif field.name == "platform":
            system = next((sys for prefix, sys in _SYSTEMS if value.startswith(prefix)), None)
            if system is None:
                raise InputError(f"{found.where(field.line)}: {tag.name} platform {value!r} is not one this tool "
                                 "can read (win32, win_amd64, manylinux…_x86_64, linux_aarch64, macosx_…_arm64); "
                                 "fix the spec")
            comparisons.append(f'sys_platform == "{system}"')
            machine = next((m for suffix, m in _MACHINES.items() if value.endswith("_" + suffix)), None)
            if machine == "arm64" and system == "linux":
                machine = "aarch64"  # what Linux's uname (platform.machine()) says for arm64; macOS says arm64
            if machine is not None and system != "win32":  # Windows calls its machines AMD64, x86, ARM64
                comparisons.append(f'platform_machine == "{machine}"')
    return sorted(set(comparisons))


def _wheel(found: Found, wheel: Field, elsewhere: bool = False) -> tuple[str, str] | None:
    """(project name, version) for a `wheel` message; None for a local build the wheel's
    match_tag keeps off this machine (`elsewhere`).
    """
    import re

    if wheel.kind != "message":
        raise InputError(f'{found.where(wheel.line)}: wheel must be a message, wheel: < name: "..." '
                         f'version: "version:X.Y.Z" >; {VPYTHON_FIX}')
    package = _string(found, wheel, "name", '"infra/python/wheels/NAME-py3"')
    name = wheel_name(package.text)
    if name is None:
        raise InputError(f"{found.where(package.line)}: wheel {package.text!r} does not name a Python project "
                         "(infra/python/wheels/NAME-py3 or .../NAME/${vpython_platform}); fix its name")
    tag = _string(found, wheel, "version", '"version:X.Y.Z"')
    version = release(tag.text)
    if version is None:
        raise InputError(f"{found.where(tag.line)}: wheel {name} {tag.text} is not a released version "
                         '(a `version:X` tag); pin one: version: "version:X.Y.Z"')
    if not re.fullmatch(VERSION_RE, version, re.VERBOSE | re.IGNORECASE):
        if elsewhere:
            return None
        raise InputError(f"{found.where(tag.line)}: wheel {name} {tag.text} is a local build that "
                         "pip_packages/ cannot supply; pin a released version")
    return name, version


def _string(found: Found, wheel: Field, name: str, example: str) -> Field:
    field = wheel.last(name)
    if field is None:
        raise InputError(f"{found.where(wheel.line)}: this wheel has no {name}; add {name}: {example}")
    if field.kind != "string":
        raise InputError(f"{found.where(field.line)}: the wheel's {name} must be a string such as {example}, "
                         f"not {field.text or field.kind}; {VPYTHON_FIX}")
    return field


def wheel_name(package: str) -> str | None:
    """The Python project a CIPD wheel package is, or None:
    `infra/python/wheels/psutil/${vpython_platform}` -> psutil, `.../google-auth-py2_py3` -> google-auth.
    """
    import re

    parts = [p for p in package.split("/") if p]
    if parts and "${" in parts[-1]:  # a platform template: ${vpython_platform}, ${platform}-${arch}, ...
        parts.pop()
    if not parts:
        return None
    name = parts[-1]
    for suffix in PY_SUFFIXES:
        if name.endswith(suffix):
            name = name[:-len(suffix)]
            break
    return name if re.fullmatch(NAME_RE, name, re.IGNORECASE) else None


def release(tag: str) -> str | None:
    """The version a CIPD `version:X` tag names (without a `N@` rebuild count: `version:2@1.2.3`
    is 1.2.3 built a second time), or None for another kind of tag (`git_revision:...`).
    """
    if not tag.startswith("version:"):
        return None
    version = tag[len("version:"):]
    count, at, rest = version.partition("@")
    return rest if at and count.isdigit() else version
