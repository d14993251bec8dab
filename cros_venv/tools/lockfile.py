"""The lock file's values: one target's resolution (from pip's --report), the merge of every
target's into pinned lines with the markers that select them, and the pip-compile style text.

No I/O: lock.py runs pip and reads the reports; this module takes values and returns values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from cros_venv.errors import InputError
from cros_venv.interpreter import Target
from cros_venv.requirements import UnusableMarker, marker_holds


@dataclass(frozen=True)
class Chosen:
    """One package in one target's resolution."""

    name: NormalizedName
    version: Version
    extras: frozenset[str]
    via: frozenset[str]  # the packages that need it; "-r IN" for a requirement of IN
    markers: frozenset[str]  # the markers (without `extra`) of the requirements that ask for it


Resolution = Mapping[NormalizedName, Chosen]


@dataclass(frozen=True)
class Line:
    """One pin of the lock file."""

    name: NormalizedName
    version: Version
    extras: frozenset[str]
    marker: str | None
    via: tuple[str, ...]

    @property
    def requirement(self) -> str:
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.name}{extras}=={self.version}" + (f" ; {self.marker}" if self.marker else "")


def _holds(marker: Marker, env: Mapping[str, str], extras: frozenset[str]) -> bool:
    try:
        return any(marker_holds(marker, {**env, "extra": e}) for e in (extras or {""}))
    except UnusableMarker:
        return False  # pip evaluates the same marker the same way (and said nothing): not needed


def from_report(report: Mapping[str, Any], env: Mapping[str, str], top: Mapping[NormalizedName, frozenset[str]],
                source: str, origins: Mapping[NormalizedName, frozenset[str]] | None = None,
                ) -> dict[NormalizedName, Chosen]:
    """One target's resolution from pip's installation report. `top`: the markers of IN's
    requirements by name; `source`: what `# via` names them by ("-r requirements.in"), or
    `origins` by name (a requirement of a file IN includes: "-r base.in").
    """
    items = {canonicalize_name(i["metadata"]["name"]): i for i in report.get("install", [])}
    extras = {n: frozenset(canonicalize_name(e) for e in i.get("requested_extras") or ()) for n, i in items.items()}
    via = {n: set((origins or {}).get(n) or {source}) if i.get("requested") else set() for n, i in items.items()}
    markers = {n: set(top.get(n, ())) if i.get("requested") else set() for n, i in items.items()}
    changed = True
    while changed:  # extras asked of a package make more of its dependencies apply: to a fixed point
        changed = False
        for parent, item in items.items():
            for text in item["metadata"].get("requires_dist") or ():
                try:
                    req = Requirement(text)
                except InvalidRequirement:
                    continue
                child = canonicalize_name(req.name)
                if child not in items or (req.marker and not _holds(req.marker, env, extras[parent])):
                    continue
                wanted = extras[child] | {canonicalize_name(e) for e in req.extras}
                if wanted != extras[child] or parent not in via[child]:
                    extras[child] = wanted
                    via[child].add(parent)
                    changed = True
                if req.marker and "extra" not in str(req.marker):
                    markers[child].add(str(req.marker))
    return {n: Chosen(n, Version(i["metadata"]["version"]), extras[n], frozenset(via[n]), frozenset(markers[n]))
            for n, i in items.items()}


def merge(target_list: Sequence[Target], resolutions: Sequence[Resolution]) -> list[Line]:
    """One line per (name, version): no marker where every target chose it, else a marker
    that is true on exactly the declared targets that chose it.
    """
    envs = [t.environment for t in target_list]
    lines = []
    for name in sorted({n for r in resolutions for n in r}):
        by_version: dict[Version, list[int]] = {}
        for i, r in enumerate(resolutions):
            if name in r:
                by_version.setdefault(r[name].version, []).append(i)
        for version, chose in sorted(by_version.items()):
            picks = [resolutions[i][name] for i in chose]
            asked = {m for c in picks for m in c.markers}
            marker = None if len(chose) == len(envs) else _marker(set(chose), envs, asked)
            if marker is not None and (not marker or not _exact(marker, set(chose), envs)):
                others = [target_list[i].path for i in range(len(envs)) if i not in chose]
                raise InputError(f"{target_list[chose[0]].path} and {others[0]} resolve {name} differently, and no "
                                 "marker tells them apart (same Python version, OS and machine); declare only one")
            lines.append(Line(name, version, frozenset().union(*(c.extras for c in picks)), marker,
                              tuple(sorted(frozenset().union(*(c.via for c in picks)), key=_via_order))))
    return lines


def _via_order(via: str) -> tuple[bool, str]:
    return (not via.startswith("-r "), via)


def _exact(marker: str, chose: set[int], envs: Sequence[Mapping[str, str]]) -> bool:
    parsed = Marker(marker)
    return all(_holds(parsed, env, frozenset()) == (i in chose) for i, env in enumerate(envs))


def _marker(chose: set[int], envs: Sequence[Mapping[str, str]], asked: set[str]) -> str:
    """The requirements' own marker when it is exact (`python_version < "3.11"`), else one
    made from the targets' Python versions and platforms.
    """
    for text in sorted(asked, key=lambda m: (len(m), m)):
        if _exact(text, chose, envs):
            return str(Marker(text))
    full = len({e["python_version"] for e in envs}) != len({e["python_full_version"] for e in envs})
    key = "python_full_version" if full else "python_version"
    versions = sorted({e[key] for e in envs}, key=Version)
    platforms = sorted({(e["sys_platform"], e["platform_machine"]) for e in envs})
    by_platform: dict[tuple[str, str], set[str]] = {}
    for i in chose:
        by_platform.setdefault((envs[i]["sys_platform"], envs[i]["platform_machine"]), set()).add(envs[i][key])
    groups: dict[frozenset[str], list[tuple[str, str]]] = {}
    for platform, vs in sorted(by_platform.items()):
        groups.setdefault(frozenset(vs), []).append(platform)
    parts = [_and([_platform_marker(ps, platforms), _python_marker(vs, versions, key)]) for vs, ps in groups.items()]
    return _or(parts)


def _python_marker(chose: frozenset[str], versions: list[str], key: str) -> str | None:
    """`key < "X"`, `>= "X"`, a range or `==`s: true for exactly the declared versions `chose`."""
    if len(chose) == len(versions):
        return None
    picked = [i for i, v in enumerate(versions) if v in chose]
    if picked == list(range(picked[0], picked[-1] + 1)):  # contiguous: a range, bounded by declared versions
        low = f'{key} >= "{versions[picked[0]]}"' if picked[0] > 0 else None
        high = f'{key} < "{versions[picked[-1] + 1]}"' if picked[-1] + 1 < len(versions) else None
        return _and([low, high])
    return _or([f'{key} == "{versions[i]}"' for i in picked])


def _platform_marker(chose: list[tuple[str, str]], platforms: list[tuple[str, str]]) -> str | None:
    if len(chose) == len(platforms):
        return None
    systems = {s for s, _ in chose}
    if all(p in chose for p in platforms if p[0] in systems):
        return _or([f'sys_platform == "{s}"' for s in sorted(systems)])
    machines = {m for _, m in chose}
    if all(p in chose for p in platforms if p[1] in machines):
        return _or([f'platform_machine == "{m}"' for m in sorted(machines)])
    return _or([f'sys_platform == "{s}" and platform_machine == "{m}"' for s, m in chose])


def _and(parts: list[str | None]) -> str | None:
    given = [p for p in parts if p]
    if not given:
        return None
    return " and ".join(f"({p})" if " or " in p and len(given) > 1 else p for p in given)


def _or(parts: list[str | None]) -> str:
    given = [p for p in parts if p]
    return " or ".join(f"({p})" if " and " in p and len(given) > 1 else p for p in given)


Hashes = Mapping[tuple[NormalizedName, Version], Sequence[str]]


def render(lines: Sequence[Line], command: str, hashes: Hashes | None,
           notes: Mapping[NormalizedName, Sequence[str]] | None = None, trailing: Sequence[str] = (),
           after: Mapping[NormalizedName, Sequence[str]] | None = None) -> str:
    """The lock file, as pip-compile writes one: the command that made it, then each pin
    (with `--hash=sha256:` lines if `hashes` is given) and what it is there for. `notes`:
    comment lines to keep above a pin's first line (a lock written over the file they were
    in), `after`: indented comments to keep below it, `trailing`: those to keep at the end.
    """
    out = ["#", "# This file is autogenerated by vendor_wheels --lock", "# by the following command:", "#",
           f"#    {command}", "#"]
    noted: set[NormalizedName] = set()
    placed: set[NormalizedName] = set()
    for line in lines:
        if notes and line.name in notes and line.name not in noted:
            noted.add(line.name)
            out += notes[line.name]
        digests = sorted(hashes.get((line.name, line.version), ())) if hashes is not None else []
        out.append(line.requirement + (" \\" if digests else ""))
        out += [f"    --hash=sha256:{d}" + (" \\" if k < len(digests) - 1 else "") for k, d in enumerate(digests)]
        if len(line.via) == 1:
            out.append(f"    # via {line.via[0]}")
        elif line.via:
            out += ["    # via", *(f"    #   {v}" for v in line.via)]
        if after and line.name in after and line.name not in placed:
            placed.add(line.name)
            out += after[line.name]
    dropped = [c for name, cs in (notes or {}).items() if name not in noted for c in cs]
    dropped += [c for name, cs in (after or {}).items() if name not in placed for c in cs]
    return "".join(f"{line}\n" for line in [*out, *dropped, *trailing])
