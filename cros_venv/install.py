"""Install an unpacked wheel (a cache entry) into a venv by hard link.

The semantics are the wheel spec's and pip's, using PyPA `installer` for the parts with
rules (RECORD rows, entry points, launcher scripts, `#!python` shebangs): the archive
root goes to site-packages, `<name>.data/<scheme>/` to that scheme's directory, console
and GUI scripts are generated for the venv's python, and RECORD is rewritten with every
installed file plus INSTALLER and (for requested packages) REQUESTED, so that pip can
list, show, check and uninstall what we installed.

Two steps: `plan` works out, once per wheel, where each file goes (this is where
`installer` is used; the plan is cached beside the unpacked wheel), and `apply` carries a
plan out for one venv: links, launchers with this venv's python, RECORD.

Files are hard links to the cache; across filesystems they are copied. pip and Python
replace files rather than edit them, but a person debugging may edit one in place: the
cache's files are read-only, and each entry is checked before it is linked from (see
cache.py). Bytecode is not compiled here: Python writes it on first import (or pass
--compile).
"""

from __future__ import annotations

import errno
import os

from cros_venv import store, toolchain
from cros_venv.cache import atomic_write
from cros_venv.digest import record_hash
from cros_venv.errors import BuildError
from cros_venv.lite import NamedTuple
from cros_venv.venv import Layout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

INSTALLER = b"cros_venv\n"
# Installation-specific files in a wheel's dist-info that we write ourselves.
GENERATED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
PLAN_FORMAT = 3  # 3: marshal (store.py)
SCHEMES = ("purelib", "platlib", "scripts", "headers", "data")


class Placed(NamedTuple):
    """A file of the wheel placed as it is (hard link or copy)."""

    scheme: str  # one of SCHEMES
    dst: str  # relative to the scheme's directory
    src: str  # relative to the cache entry
    hash: str  # its RECORD row's hash and size, as the wheel's RECORD has them
    size: str


class Launcher(NamedTuple):
    """A file written with this venv's python in its `#!` line: an entry-point launcher, or
    a `.data/scripts` file that starts with `#!python`.
    """

    scheme: str
    dst: str
    body: str  # everything after the `#!` line


class Plan(NamedTuple):
    """Where a wheel's files go, independent of any one venv."""

    dist_info: str
    files: tuple[Placed, ...]
    scripts: tuple[Launcher, ...]

    def to_json(self) -> dict[str, object]:
        return {"format": PLAN_FORMAT, "dist_info": self.dist_info,
                "files": [list(f) for f in self.files], "scripts": [list(s) for s in self.scripts]}

    @classmethod
    def from_json(cls, data: object) -> Plan | None:
        """The plan in `data`, or None unless every field has its shape and every path
        stays inside its scheme's directory (a plan file is data from the cache, not code).
        """
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            return None
        dist_info, files, scripts = data.get("dist_info"), data.get("files"), data.get("scripts")
        if not (isinstance(dist_info, str) and _inside(dist_info) and "/" not in dist_info
                and isinstance(files, list) and isinstance(scripts, list)):
            return None
        # tuple.__new__, not Placed(...): no Python-level call per row (2,900 rows: 0.1 ms, not 0.4)
        new = tuple.__new__
        try:  # a plain loop: it runs for every file of every wheel on a warm build
            rows = [new(Placed, (scheme, dst, src, str(h), str(n))) for scheme, dst, src, h, n in files]
            launchers = [new(Launcher, (scheme, dst, str(body))) for scheme, dst, body in scripts]
        except (TypeError, ValueError):
            return None
        for scheme, dst, src, *_ in rows:
            if scheme not in SCHEMES or not _inside(dst) or not _inside(src):
                return None
        for scheme, dst, _ in launchers:
            if scheme not in SCHEMES or not _inside(dst):
                return None
        return cls(dist_info, tuple(rows), tuple(launchers))


def _inside(path: object) -> bool:
    """A relative path (a str) that stays below its directory."""
    return (type(path) is str and path != "" and path[0] != "/" and "\0" not in path
            and (".." not in path or ".." not in path.split("/")))


class SourceMissing(BuildError):
    """A file of the cache entry vanished while it was being linked (set aside as damaged)."""


def _dist_info_dir(entry: str) -> str:
    found = [d for d in os.listdir(entry) if d.endswith(".dist-info")]
    if len(found) != 1:
        raise BuildError(f"the wheel unpacked at {entry} has {len(found)} .dist-info directories; replace the wheel")
    return found[0]


def make_plan(entry: str) -> Plan:
    """Read WHEEL, RECORD and entry_points.txt of the wheel unpacked at `entry`."""
    from installer.records import parse_record_file
    from installer.scripts import Script
    from installer.utils import parse_entrypoints, parse_metadata_file

    dist_info = _dist_info_dir(entry)
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    with open(os.path.join(entry, dist_info, "WHEEL"), encoding="utf-8") as f:
        wheel_meta = parse_metadata_file(f.read())
    if not (wheel_meta["Wheel-Version"] or "").startswith("1."):
        raise BuildError(f"{dist_info} has Wheel-Version {wheel_meta['Wheel-Version']}; only 1.x is supported")
    root = "purelib" if wheel_meta["Root-Is-Purelib"] == "true" else "platlib"
    try:
        with open(os.path.join(entry, dist_info, "RECORD"), encoding="utf-8", newline="") as f:
            rows = list(parse_record_file(f))
    except OSError as e:
        raise BuildError(f"{dist_info} has no readable RECORD ({e.strerror}); replace the wheel") from None

    files: list[Placed] = []
    scripts: list[Launcher] = []
    for path, hash_, size in rows:
        if path.startswith(dist_info + "/") and path[len(dist_info) + 1:] in GENERATED:
            continue
        if not path.startswith(data_dir + "/"):
            files.append(Placed(root, path, path, hash_, size))
            continue
        scheme, _, rel = path[len(data_dir) + 1:].partition("/")
        if scheme not in SCHEMES or not rel:
            raise BuildError(f"{path} is not in a valid .data subdirectory; replace the wheel")
        if scheme == "scripts":
            with open(os.path.join(entry, path), "rb") as f:
                first, _, rest = f.read().partition(b"\n")
            if first.startswith(b"#!python"):  # the wheel spec's placeholder for the interpreter
                scripts.append(Launcher(scheme, rel, rest.decode("utf-8", "surrogateescape")))
                continue
        files.append(Placed(scheme, rel, path, hash_, size))

    entry_points = os.path.join(entry, dist_info, "entry_points.txt")
    if os.path.exists(entry_points):
        with open(entry_points, encoding="utf-8") as f:
            for name, module, attr, section in parse_entrypoints(f.read()):
                _, launcher = Script(name, module, attr, section).generate("python", "posix")
                scripts.append(Launcher("scripts", name, launcher.partition(b"\n")[2].decode()))
    return Plan(dist_info, tuple(files), tuple(scripts))


def _plan_path(plans_dir: str, sha256: str) -> str:
    installer = next(w for w in toolchain.LIBRARIES if w.startswith("installer-"))[:-4]
    return os.path.join(plans_dir, f"{sha256}-{PLAN_FORMAT}-{installer}{store.SUFFIX}")


def cached_plan(plans_dir: str, sha256: str) -> Plan | None:
    """The plan made before for the wheel with these bytes, or None."""
    return Plan.from_json(store.load(_plan_path(plans_dir, sha256)))


def plan_for(entry: str, plans_dir: str, sha256: str, libraries: Callable[[], object]) -> Plan:
    """The plan for an entry: from `plans_dir` if made before, else made now and saved.

    A plan depends on the wheel's bytes (`sha256`), the plan format and `installer`, which
    makes it (its wheel's name: a release's files never change on an index); all three
    are in its file name. `libraries` makes the tool's libraries (installer) importable;
    called only when needed.
    """
    found = cached_plan(plans_dir, sha256)
    if found is not None:
        return found
    libraries()
    path = _plan_path(plans_dir, sha256)
    plan = make_plan(entry)
    try:
        os.makedirs(plans_dir, exist_ok=True)
        atomic_write(path, store.dumps(plan.to_json()), durable=False)
    except OSError:
        pass  # only a cache
    return plan


class Linker:
    """Places files: hard link from the cache, else copy; later wheels overwrite earlier.

    Links are made relative to open directories (linkat with the cache entry's descriptor
    and the destination scheme directory's): the kernel then walks two or three path
    components a file, not twenty (a warm build: ~30% less time linking, on this machine).
    """

    def __init__(self) -> None:
        self.copy = False
        self.made: set[str] = set()  # every directory a file was placed in (and its parents)
        self.modules: set[str] = set()  # the directories of .py files placed
        self._fds: dict[str, int] = {}  # scheme directory -> its open descriptor

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def ensure_dir(self, directory: str) -> None:
        if directory not in self.made:
            os.makedirs(directory, exist_ok=True)
            self.made.add(directory)

    def _base_fd(self, base: str) -> int:
        fd = self._fds.get(base)
        if fd is None:
            self.ensure_dir(base)
            fd = self._fds[base] = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return fd

    def _ensure_below(self, base: str, rel_dir: str) -> str:
        """`base`/`rel_dir` made (mkdir relative to base's descriptor, parents first)."""
        directory = base + "/" + rel_dir if rel_dir else base
        if directory in self.made:
            return directory
        if not rel_dir:
            self._base_fd(base)
            return directory
        self._ensure_below(base, rel_dir.rpartition("/")[0])
        try:
            os.mkdir(rel_dir, dir_fd=self._base_fd(base))
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
        self.made.add(directory)
        return directory

    def link(self, entry_fd: int, entry: str, src: str, base: str, dst: str) -> None:
        """Place the file `src` of the cache entry (open as `entry_fd`) at `base`/`dst`."""
        directory = self._ensure_below(base, dst.rpartition("/")[0])
        if dst.endswith(".py"):
            self.modules.add(directory)
        if not self.copy:
            base_fd = self._base_fd(base)  # `write` may have made the directory without opening it
            try:
                os.link(src, dst, src_dir_fd=entry_fd, dst_dir_fd=base_fd)
                return
            except FileExistsError:
                os.unlink(dst, dir_fd=base_fd)
                os.link(src, dst, src_dir_fd=entry_fd, dst_dir_fd=base_fd)
                return
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                self.copy = True
        self._copy(os.path.join(entry, src), os.path.join(base, dst))

    @staticmethod
    def _copy(src: str, dst: str) -> None:
        if os.path.lexists(dst):
            os.unlink(dst)
        import shutil  # across filesystems only

        shutil.copy2(src, dst)

    def write(self, dst: str, data: bytes, executable: bool = False) -> None:
        self.ensure_dir(os.path.dirname(dst))
        if os.path.lexists(dst):
            os.unlink(dst)
        with open(dst, "wb") as f:
            f.write(data)
        if executable:
            os.chmod(dst, 0o755)


def shebang(python: str) -> bytes:
    """The `#!` line(s) for this venv's python.

    installer's rule (installer.scripts._build_shebang): a path with a space, or too long
    for the kernel, cannot follow `#!`, so the launcher re-runs itself through /bin/sh.
    """
    exe = os.fsencode(python)
    if b" " not in exe and len(exe) <= 127:
        return b"#!" + exe
    import shlex

    return b"#!/bin/sh\n'''exec' " + shlex.quote(python).encode() + b' "$0" "$@"\n' + b"' '''"


def apply(plan: Plan, entry: str, layout: Layout, requested: bool, linker: Linker) -> None:
    """Carry out `plan` for the wheel unpacked at `entry` into the venv at `layout`."""
    sp = layout.site_packages
    dirs = {"purelib": sp, "platlib": sp, "scripts": layout.bin, "data": layout.root,
            "headers": os.path.join(layout.include, plan.dist_info.split("-")[0])}
    prefix = {s: "" if d == sp else os.path.relpath(d, sp) + "/" for s, d in dirs.items()}
    written: list[tuple[str, str, str]] = []
    entry_fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        link = linker.link
        for scheme, dst, src, hash_, size in plan.files:
            try:
                link(entry_fd, entry, src, dirs[scheme], dst)
            except FileNotFoundError:
                if not os.path.lexists(os.path.join(entry, src)):
                    raise SourceMissing(f"{os.path.join(entry, src)} vanished") from None
                raise
            written.append((prefix[scheme] + dst, hash_, size))
    finally:
        os.close(entry_fd)
    if plan.scripts:
        line = shebang(layout.python) + b"\n"
        for scheme, dst, body in plan.scripts:
            data = line + body.encode("utf-8", "surrogateescape")
            linker.write(os.path.join(dirs[scheme], dst), data, executable=True)
            written.append((prefix[scheme] + dst, record_hash(data), str(len(data))))
    extra = {"INSTALLER": INSTALLER, **({"REQUESTED": b""} if requested else {})}
    for filename, data in extra.items():
        path = f"{plan.dist_info}/{filename}"
        linker.write(os.path.join(sp, path), data)
        written.append((path, record_hash(data), str(len(data))))
    written.append((f"{plan.dist_info}/RECORD", "", ""))
    with open(os.path.join(sp, plan.dist_info, "RECORD"), "w", encoding="utf-8", newline="") as f:
        f.write("".join(record_row(row) for row in written))


def record_row(fields: tuple[str, str, str]) -> str:
    """A RECORD line as `csv.writer(lineterminator="\\n")` writes it (csv costs ~2 ms of
    imports: it brings `re`): a field with a comma, quote or line break is quoted, with
    its quotes doubled."""
    return ",".join(f'"{f.replace(chr(34), chr(34) * 2)}"' if ("," in f or '"' in f or "\n" in f or "\r" in f)
                    else f for f in fields) + "\n"


def install(entry: str, layout: Layout, requested: bool, linker: Linker) -> Plan:
    """Plan and apply in one go (no plan cache)."""
    plan = make_plan(entry)
    apply(plan, entry, layout, requested, linker)
    return plan
