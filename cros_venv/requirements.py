"""Requirements files (pip's format) -> pins.

Every requirement must be pinned to one exact version with `==`. Only options that keep
the install inside pip_packages/ are accepted. Every problem in every file is collected
and reported together as `file:line: reason`.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from cros_venv import sources
from cros_venv.errors import InputError

# pip's rule: a comment starts a line or follows whitespace (so `a#b` is not a comment).
# pip writes it `(^|\s+)#.*$`, which backtracks quadratically over a long run of spaces;
# the whitespace before the `#` is stripped with the rest of the line's ends instead.
COMMENT_RE = re.compile(r"(?:^|(?<=\s))#.*$")
# What packaging raises for a marker it parsed but cannot evaluate (`python_version ~= "3"`),
# and RecursionError for absurd nesting (its parser and evaluator recurse per parenthesis).
MARKER_ERRORS = (InvalidMarker, InvalidSpecifier, InvalidVersion, UndefinedComparison, UndefinedEnvironmentName,
                 RecursionError)
MARKER_FIX = 'write a marker packaging can evaluate (PEP 508), e.g. python_version >= "3.9"'
HASH_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}

# Options that change nothing when every install comes from pip_packages/.
HARMLESS_OPTIONS = {"--no-index", "--pre", "--prefer-binary", "--only-binary"}
OUTSIDE_OPTIONS = {
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host",
}
TAKES_VALUE = {"--only-binary", "--no-binary", *OUTSIDE_OPTIONS, "-r", "--requirement",
               "-c", "--constraint", "-e", "--editable", "--use-feature"}


@dataclass(frozen=True)
class Pin:
    """One `name[extras]==version` line."""

    name: NormalizedName
    version: Version
    extras: frozenset[str]
    marker: Marker | None
    hashes: frozenset[str]  # "sha256:<hex>"
    origin: str  # "file:line"
    constraint: bool = False
    tool: bool = False  # added by create_venv (its own pip), not read from a file: no hash needed

    def __str__(self) -> str:
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.name}{extras}=={self.version}"


@dataclass(frozen=True)
class RequirementFiles:
    """What a set of requirements files says, before markers are evaluated."""

    pins: tuple[Pin, ...]
    files: tuple[tuple[str, bytes], ...]  # every file read (absolute path, bytes)
    require_hashes: bool = False


MAX_INCLUDE_DEPTH = 100  # files deep: -r/-c are followed recursively (600 levels: RecursionError)
MAX_FILE_SIZE = sources.MAX_REQUIREMENTS_SIZE
read_file = sources.read_requirements  # load's default reader: the no-op path's, with its size limit


@dataclass
class _Parser:
    read: Callable[[str], bytes]
    pins: list[Pin] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    texts: dict[str, str | None] = field(default_factory=dict)  # by absolute path; None: reported
    problems: list[str] = field(default_factory=list)
    require_hashes: bool = False


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) after joining `\\` continuations and dropping comments."""
    pending: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.endswith("\\") and not _is_comment(line):
            if not pending:
                first = number
            pending.append(line[:-1])
            continue
        if pending:
            pending.append(" " + line if _is_comment(line) else line)
            number, line = first, "".join(pending)
            pending = []
        line = COMMENT_RE.sub("", line).strip()
        if line:
            yield number, line
    if pending:
        line = COMMENT_RE.sub("", "".join(pending)).strip()
        if line:
            yield first, line


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def excerpt(text: str) -> str:
    """`text`, cut to a length that fits in a one-line message."""
    return text if len(text) <= 40 else f"{text[:30]}..."


def split_options(text: str, where: str, problems: list[str]) -> list[str] | None:
    """An option string split as pip splits it (shlex: quotes and backslashes), or None
    with a problem appended.
    """
    try:
        return shlex.split(text)
    except ValueError as e:  # "No closing quotation", "No escaped character"
        fix = "close the quote" if "quotation" in str(e) else "remove the trailing backslash"
        problems.append(f"{where}: {excerpt(text)} has {str(e)[0].lower()}{str(e)[1:]}; {fix}")
        return None


def _split_option(tokens: list[str]) -> tuple[str, str | None, list[str]]:
    """(option, value, rest) for an option line's tokens."""
    head = tokens[0]
    if head.startswith("--") and "=" in head:
        opt, value = head.split("=", 1)
        return opt, value, tokens[1:]
    if head in TAKES_VALUE:
        return head, (tokens[1] if len(tokens) > 1 else None), tokens[2:]
    if head[:2] in ("-r", "-c", "-e", "-i", "-f") and len(head) > 2:
        return head[:2], head[2:], tokens[1:]
    return head, None, tokens[1:]


def parse_requirement(line: str, where: str, constraint: bool, problems: list[str]) -> Pin | None:
    """One requirement line (options included) -> Pin, or None with problems appended.

    As pip does, the requirement ends before the first word that starts with `-`; the
    options after it are split with shlex.
    """
    cut = re.search(r"(?:^|\s)-", line)
    text = " ".join((line[:cut.start()] if cut else line).split())
    options = split_options(line[cut.end() - 1:], where, problems) if cut else []
    if options is None:
        return None
    hashes: set[str] = set()
    ok = True
    i = 0
    while i < len(options):
        opt = options[i]
        value: str | None
        if opt.startswith("--hash="):
            value = opt[len("--hash="):]
        elif opt == "--hash":
            i += 1
            value = options[i] if i < len(options) else None
        else:
            problems.append(f"{where}: option {opt.split('=')[0]} is not supported on a requirement line; remove it")
            ok = False
            i += 1
            continue
        algo, _, digest = (value or "").partition(":")
        if algo not in HASH_ALGORITHMS or len(digest) != HASH_ALGORITHMS[algo] or not all(
            c in "0123456789abcdef" for c in digest.lower()
        ):
            problems.append(f"{where}: bad --hash {value!r}; write --hash=sha256:<64 hex digits>")
            ok = False
        else:
            hashes.add(f"{algo}:{digest.lower()}")
        i += 1
    if "://" in text or text.endswith((".whl", ".tar.gz", ".zip")) or text.startswith((".", "/")):
        problems.append(f"{where}: URLs and paths are not supported ({text}); "
                        "put the wheel in pip_packages/ and pin name==version")
        return None
    try:
        req = Requirement(text)
    except InvalidRequirement as e:
        problems.append(f"{where}: invalid requirement {excerpt(text)!r}: {str(e).splitlines()[0]}")
        return None
    except RecursionError:
        problems.append(f"{where}: the marker of {excerpt(text)} is nested too deeply to parse; simplify it")
        return None
    if req.url:
        problems.append(f"{where}: URLs are not supported ({req.name} @ {req.url}); "
                        f"put the wheel in pip_packages/ and pin {req.name}==VERSION")
        return None
    specs = list(req.specifier)
    if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
        shown = str(req.specifier) or "no version"
        problems.append(f"{where}: {req.name} is not pinned ({shown}); pin one exact version: {req.name}==X.Y.Z")
        return None
    try:
        version = Version(specs[0].version)
    except InvalidVersion:
        problems.append(f"{where}: {req.name}=={specs[0].version} is not a valid version")
        return None
    if not ok:
        return None
    return Pin(
        name=canonicalize_name(req.name),
        version=version,
        extras=frozenset(canonicalize_name(e) for e in req.extras),
        marker=req.marker,
        hashes=frozenset(hashes),
        origin=where,
        constraint=constraint,
    )


def _read(parser: _Parser, path: str, shown: str) -> str | None:
    """The text of the file at `path`, read once however often it is included; None (and a
    problem, the first time) if it cannot be read or is not UTF-8.
    """
    key = os.path.abspath(path)
    if key in parser.texts:
        return parser.texts[key]
    parser.texts[key] = None
    try:
        data = parser.read(path)
    except OSError as e:
        parser.problems.append(f"{shown}:0: cannot read requirements file: {e.strerror or e}")
        return None
    parser.files.append((key, data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        parser.problems.append(f"{shown}:0: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8")
        return None
    parser.texts[key] = text
    return text


def _load(parser: _Parser, path: str, shown: str, constraint: bool, stack: tuple[tuple[str, str], ...]) -> None:
    """Parse the file at `path` (`shown` in messages); `stack`: the (real path, shown) of
    every file including it, itself last.
    """
    text = _read(parser, path, shown)
    if text is None:
        return
    for number, line in logical_lines(text):
        where = f"{shown}:{number}"
        if not line.startswith("-"):
            pin = parse_requirement(line, where, constraint, parser.problems)
            if pin is not None:
                parser.pins.append(pin)
            continue
        tokens = split_options(line, where, parser.problems)
        if tokens is None:
            continue
        opt, value, _ = _split_option(tokens)
        if opt in ("-r", "--requirement", "-c", "--constraint"):
            _include(parser, path, shown, (opt, value), where, constraint, stack)
        elif opt == "--require-hashes":
            parser.require_hashes = True
        elif opt in HARMLESS_OPTIONS:
            pass
        elif opt in ("-e", "--editable"):
            parser.problems.append(f"{where}: editable installs are not supported; "
                                   "build a wheel into pip_packages/ and pin name==version")
        elif opt in OUTSIDE_OPTIONS:
            parser.problems.append(f"{where}: {opt} would install from outside pip_packages/; remove it")
        elif opt == "--no-binary":
            parser.problems.append(f"{where}: --no-binary is not supported: create_venv installs only wheels")
        else:
            parser.problems.append(f"{where}: option {opt} is not supported in requirements files; remove it")


def _include(parser: _Parser, path: str, shown: str, option: tuple[str, str | None], where: str, constraint: bool,
             stack: tuple[tuple[str, str], ...]) -> None:
    """`-r FILE` / `-c FILE` on line `where` of `path`: FILE is relative to `path`'s directory."""
    opt, value = option
    if not value:
        parser.problems.append(f"{where}: {opt} needs a file name")
        return
    if "\0" in value:
        parser.problems.append(f"{where}: {opt} {value!r} names a file with a NUL character; remove it")
        return
    included = os.path.join(os.path.dirname(path), value)
    included_shown = os.path.join(os.path.dirname(shown), value)
    real = os.path.realpath(included)
    reals = [r for r, _ in stack]
    if len(stack) >= MAX_INCLUDE_DEPTH:
        parser.problems.append(f"{where}: {opt} {value} nests includes more than {MAX_INCLUDE_DEPTH} files deep; "
                               "include them from fewer levels")
        return
    if real in reals:
        chain = [s for _, s in stack[reals.index(real):]] + [included_shown]
        parser.problems.append(f"{where}: {opt} {value} closes a cycle ({' -> '.join(chain)}); remove it")
        return
    _load(parser, included, included_shown, constraint or opt in ("-c", "--constraint"),
          (*stack, (real, included_shown)))


def pin_for_wheel(path: str) -> Pin:
    """A pin for exactly this wheel (the tool's own pip, added when the files do not pin pip)."""
    name, version, _, _ = parse_wheel_filename(os.path.basename(path))
    return Pin(name, version, frozenset(), None, frozenset(), f"{path}:0", tool=True)


def load(paths: list[str], read: Callable[[str], bytes] = read_file) -> RequirementFiles:
    """Read and parse requirements files (and their -r/-c includes).

    Each file is read once, with `read(path)` (`path` as given, or an include joined to its
    includer's directory); a caller that already has a file's bytes (a pipe, /dev/stdin)
    passes a `read` that returns them. `read` raises OSError for a file it cannot read.
    """
    parser = _Parser(read)
    for path in paths:
        _load(parser, path, path, constraint=False, stack=((os.path.realpath(path), path),))
    if parser.problems:
        raise InputError(*parser.problems)
    return RequirementFiles(tuple(parser.pins), tuple(parser.files), parser.require_hashes)


def _merge(found: dict[NormalizedName, Pin], pin: Pin, problems: list[str], what: str) -> None:
    old = found.get(pin.name)
    if old is None:
        found[pin.name] = pin
    elif old.version != pin.version:
        problems.append(f"{pin.origin}: {pin.name}=={pin.version} conflicts with "
                        f"{pin.name}=={old.version} {what} at {old.origin}; keep one")
    else:
        found[pin.name] = Pin(pin.name, pin.version, old.extras | pin.extras, None,
                              old.hashes | pin.hashes, old.origin, old.constraint)


Pins = dict[NormalizedName, Pin]


class UnusableMarker(ValueError):
    """A marker packaging parsed but cannot evaluate; the message says which and why (the
    fix depends on whose marker it is: a requirements file's or a wheel's).
    """


def marker_holds(marker: Marker, env: Mapping[str, str]) -> bool:
    """Whether `marker` is true in `env`; raises UnusableMarker where packaging cannot tell."""
    try:
        return marker.evaluate(dict(env))
    except RecursionError:
        raise UnusableMarker("the marker is nested too deeply to evaluate") from None
    except MARKER_ERRORS as e:
        reason = str(e).splitlines()[0]
        raise UnusableMarker(f"cannot evaluate the marker {excerpt(str(marker))!r} ({reason})") from None


def applicable(reqs: RequirementFiles, env: Mapping[str, str]) -> tuple[Pins, Pins]:
    """(requirements, constraints) that apply to a target whose marker environment is `env`."""
    problems: list[str] = []
    wanted: dict[NormalizedName, Pin] = {}
    constraints: dict[NormalizedName, Pin] = {}
    for pin in reqs.pins:
        try:
            if pin.marker is not None and not marker_holds(pin.marker, env):
                continue
        except UnusableMarker as e:
            problems.append(f"{pin.origin}: {e}; {MARKER_FIX}")
            continue
        _merge(constraints if pin.constraint else wanted, pin, problems,
               "(constraint)" if pin.constraint else "pinned")
    for name, pin in wanted.items():
        c = constraints.get(name)
        if c is not None and c.version != pin.version:
            problems.append(f"{pin.origin}: {pin} conflicts with constraint {c.name}=={c.version} "
                            f"at {c.origin}; keep one")
    if problems:
        raise InputError(*problems)
    return wanted, constraints
