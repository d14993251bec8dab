"""One line of a requirements file (pip's format) -> a Pin, or the reasons it is not one.

Logical lines (continuations, comments), options, and `name[extras]==version ; marker
--hash=...`. Files, includes and merging are requirements.py's.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Iterator

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

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
class LockedWheel:
    """One `[[packages.wheels]]` entry of a pylock.toml (PEP 751)."""

    filename: str
    hashes: frozenset[str]  # "sha256:<hex>", as Pin.hashes
    url: str | None = None
    path: str | None = None  # absolute (the lock gives it relative to its own directory)


@dataclass(frozen=True)
class Locked:
    """What a pylock.toml entry adds to its pin: the only wheel files it may use, each with
    its own hashes, and what its marker is evaluated with (PEP 751's `dependency_groups`).
    """

    wheels: tuple[LockedWheel, ...]
    groups: frozenset[str] = frozenset()  # the lock's default-groups
    requires_python: SpecifierSet | None = None  # the entry's own requires-python

    @property
    def filenames(self) -> frozenset[str]:
        return frozenset(w.filename for w in self.wheels)

    def hashes_of(self, filename: str) -> frozenset[str]:
        return next((w.hashes for w in self.wheels if w.filename == filename), frozenset())


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
    locked: Locked | None = None  # read from a pylock.toml: its wheels, hashes and marker context

    def __str__(self) -> str:
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.name}{extras}=={self.version}"


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


def split_option(tokens: list[str]) -> tuple[str, str | None, list[str]]:
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
        path = where.rpartition(":")[0]
        problems.append(f"{where}: {req.name} is not pinned ({shown}); pin one exact version: {req.name}==X.Y.Z, "
                        f"or let the lock step pin it and its closure: "
                        f"bin/vendor_wheels --lock {shlex.quote(path)} -o {shlex.quote(path)}")
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
