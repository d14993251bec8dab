"""The venv skeleton (interpreter links, pyvenv.cfg, activation scripts), made by virtualenv.

Running virtualenv costs ~0.2 s a venv (most of it imports), more than everything else in
a warm build. What it writes differs between two venvs of one interpreter only in the
venv's path, which appears verbatim in the activation scripts when it is a "plain" path
(one `shlex.quote` leaves alone). So virtualenv runs once per interpreter into a template
in the cache, and each venv is a copy of the template with the path filled in. A venv
whose path would need shell quoting is made by running virtualenv directly.
"""

from __future__ import annotations

import os
import sys

from cros_venv import fs, procs, store
from cros_venv.cache import WRITE_ERRNOS, not_writable, rmtree
from cros_venv.digest import sha256_hex
from cros_venv.errors import BuildError
from cros_venv.lite import suppress
from cros_venv.locate import running_python
from cros_venv.procs import Forked, can_fork

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess  # imported where a child is started: a warm build starts none (~3 ms)
    from typing import Callable, Mapping

# shlex.quote's test (its regex, `[^\w@%+=:,./-]` with re.ASCII): paths made only of these
# appear unquoted in the activation scripts.
SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")
PLACEHOLDER_FILE = "placeholder"
MANIFEST_FILE = "manifest" + store.SUFFIX  # {file under venv/: size}, checked on every copy
LEGACY_MANIFEST_FILE = "manifest.json"  # the same, for earlier versions sharing the cache

CHILD = os.path.join(os.path.dirname(os.path.realpath(__file__)), "skeleton_child.py")


def is_plain(path: str) -> bool:
    return SAFE.issuperset(path)


def command(dest: str, python: str, virtualenv_roots: list[str], app_data: str, cache_root: str = "",
            driver: str = "direct") -> list[str]:
    """The child that runs virtualenv (no seed packages: create_venv installs pip itself).

    Without `virtualenv_roots`, the child unpacks virtualenv into the cache at `cache_root`
    itself, with this package's code: only for the interpreter running this. `driver`:
    "direct" (virtualenv's classes, see skeleton_child.py; its command line if they moved),
    "direct-only" (the same without that fallback: for the tests) or "cli" (`cli_run`).
    """
    repo = os.path.dirname(os.path.dirname(CHILD))
    args = {"roots": virtualenv_roots, "dest": dest, "app_data": app_data, "repo": repo, "cache": cache_root,
            "driver": driver}
    # -B: virtualenv runs once per interpreter, so bytecode written for it would not be reused.
    import json  # here: a warm build starts no child

    return [python, "-I", "-S", "-B", CHILD, json.dumps(args)]


def start(cmd: list[str], env: Mapping[str, str], lock_fd: int | None) -> subprocess.Popen[bytes]:
    """Start a virtualenv child. It inherits the venv's lock when it writes into the venv."""
    return procs.spawn(cmd, env, (lock_fd,) if lock_fd is not None else ())


def _run_child(python: str, args: str) -> int:
    """skeleton_child in a fork of this process (procs.Forked), as if `python -I -S -B CHILD
    ARGS` had been started: the same flags are in effect, sys.executable is `python`.
    """
    sys.executable = python
    sys.dont_write_bytecode = True
    try:
        from cros_venv import skeleton_child

        skeleton_child.main([args])
        return 0
    except SystemExit as e:
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        return e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1


def finish(proc: subprocess.Popen[bytes] | Forked) -> None:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        lines = out.decode(errors="replace").strip().splitlines() or ["no output"]
        raise BuildError(f"virtualenv failed to create the venv: {lines[-1]}")


class TemplateDamaged(BuildError):
    """A template in the cache is not as it was made: it is removed and made again."""


class Templates:
    """Skeleton templates in `root`, one per interpreter (by real path and stamp) and
    virtualenv (its wheels' hashes and this tool's version: see toolchain.virtualenv_id).
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def path_for(self, python: str, virtualenv: str) -> str:
        st = os.stat(python)
        ident = f"{python}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{virtualenv}"
        return os.path.join(self.root, sha256_hex(os.fsencode(ident))[:32])

    def staging(self) -> tuple[str, str]:
        """(temp dir, venv path inside it) to run virtualenv into, or raise if not plain."""
        try:
            os.makedirs(self.root, exist_ok=True)
            import tempfile

            tmp = tempfile.mkdtemp(dir=self.root, prefix=".tmp-")
        except OSError as e:
            if e.errno in WRITE_ERRNOS:
                raise not_writable(os.path.dirname(self.root), e) from None
            raise
        return tmp, os.path.join(tmp, "venv")

    def commit(self, tmp: str, final: str) -> None:
        """Record the placeholder path and each file's size, and move the template into place
        (losers discard theirs).
        """
        with open(os.path.join(tmp, PLACEHOLDER_FILE), "w", encoding="utf-8") as f:
            f.write(os.path.join(tmp, "venv"))
        sizes: dict[str, int | str] = {}  # a file's size, a link's target (bin/python: the interpreter)
        src_root = os.path.join(tmp, "venv")
        for dirpath, dirnames, filenames in os.walk(src_root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    sizes[os.path.relpath(path, src_root)] = os.readlink(path)
                elif name in filenames:
                    sizes[os.path.relpath(path, src_root)] = os.path.getsize(path)
        store.dump_shared(os.path.join(tmp, MANIFEST_FILE), os.path.join(tmp, LEGACY_MANIFEST_FILE), sizes)
        try:
            os.rename(tmp, final)
        except OSError:
            rmtree(tmp, ignore_errors=True)
            if not os.path.isdir(final):
                raise

    def discard(self, tmp: str) -> None:
        rmtree(tmp, ignore_errors=True)

    def discard_final(self, final: str) -> None:
        """Take a damaged template out of use (rename, atomic), then delete it."""
        aside = os.path.join(self.root, f".tmp-damaged-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.rename(final, aside)
        except OSError as e:
            if e.errno in WRITE_ERRNOS:
                raise not_writable(os.path.dirname(self.root), e) from None
            return  # gone already (another process set it aside)
        rmtree(aside, ignore_errors=True)


def _check(template: str) -> bytes:
    """The template's placeholder, once every file it was made with is there at its size.

    Raises TemplateDamaged otherwise (a file deleted or changed, its manifest unreadable).
    """
    try:
        data = fs.read_regular(os.path.join(template, PLACEHOLDER_FILE), limit=4096)  # no FIFO, no /dev/zero
        if data is None:
            raise ValueError("not a regular file")
        placeholder = os.fsencode(data.decode("utf-8"))
    except (OSError, ValueError):
        raise TemplateDamaged(f"the skeleton template {template} has no placeholder") from None
    sizes = store.load_shared(os.path.join(template, MANIFEST_FILE), os.path.join(template, LEGACY_MANIFEST_FILE))
    if not isinstance(sizes, dict) or not placeholder:
        raise TemplateDamaged(f"the skeleton template {template} has no readable manifest")
    for rel, size in sizes.items():
        try:
            path = os.path.join(template, "venv", rel)
            if (os.readlink(path) if isinstance(size, str) else os.lstat(path).st_size) != size:
                raise TemplateDamaged(f"the skeleton template {template} has a changed {rel}")
        except (OSError, ValueError, TypeError):  # gone, no longer a link; a name with a NUL, not a str
            raise TemplateDamaged(f"the skeleton template {template} has lost {rel}") from None
    return placeholder


def instantiate(template: str, dest: str) -> None:
    """Copy the template's venv into `dest`, replacing the template's path with `dest`.

    Raises TemplateDamaged, before copying anything, if the template is not whole.
    """
    placeholder = _check(template)
    with suppress(OSError):
        os.utime(template)  # used now: prune keeps it
    replacement = os.fsencode(dest)
    src_root = os.path.join(template, "venv")
    for dirpath, dirnames, filenames in os.walk(src_root):
        rel = os.path.relpath(dirpath, src_root)
        out_dir = dest if rel == "." else os.path.join(dest, rel)
        os.makedirs(out_dir, exist_ok=True)
        for name in dirnames + filenames:
            src = os.path.join(dirpath, name)
            dst = os.path.join(out_dir, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif name in filenames:
                with open(src, "rb") as f:
                    data = f.read().replace(placeholder, replacement)
                with open(dst, "wb") as f:
                    f.write(data)
                os.chmod(dst, os.stat(src).st_mode & 0o7777)
        # symlinks to directories are listed in dirnames; do not descend into them
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]


def instantiate_or_remake(job: TemplateJob, dest: str, new_job: Callable[[], TemplateJob]) -> None:
    """instantiate(job's template); a damaged template is removed, made again, and used."""
    try:
        instantiate(job.wait(), dest)
    except TemplateDamaged:
        job.templates.discard_final(job.path)
        instantiate(new_job().wait(), dest)
        return
    runs = os.path.realpath(os.path.join(dest, "bin", "python"))
    if runs != job.python:  # a link changed to the same length (made before links were in manifests)
        job.templates.discard_final(job.path)
        raise BuildError(f"the skeleton template {job.path} was damaged (its bin/python runs {runs}); it was "
                         "removed: run create_venv again")


class TemplateJob:
    """Make the template for `python` beside the build: `launch` starts the virtualenv child
    (once its wheels are unpacked), `wait` collects it and returns the template's path.
    """

    def __init__(self, templates: Templates, python: str, virtualenv: str,
                 virtualenv_roots: Callable[[], list[str]], app_data: str, cache_root: str) -> None:
        self.templates = templates
        self.python = python
        self.path = templates.path_for(python, virtualenv)
        self.roots = virtualenv_roots
        self.app_data = app_data
        self.cache_root = cache_root
        self.proc: subprocess.Popen[bytes] | Forked | None = None
        self.staging = ""

    def launch(self) -> None:
        """Start the child, unless started already or the template exists."""
        if self.proc is not None or os.path.isdir(self.path):
            return
        # The interpreter running this can unpack virtualenv itself, so the child starts at
        # once, as a fork of this process when that is safe (no thread running; not a venv's
        # interpreter, whose description virtualenv would resolve differently): that saves
        # starting Python and importing the cache code again. Another interpreter gets the
        # unpacked wheels from us.
        ours = self.python == running_python()
        roots = [] if ours else self.roots()
        self.staging, dest = self.templates.staging()
        cmd = command(dest, self.python, roots, self.app_data, self.cache_root)
        try:
            if ours and sys.prefix == sys.base_prefix and can_fork():
                python, args = self.python, cmd[-1]
                self.proc = Forked(lambda: _run_child(python, args))
            else:
                self.proc = start(cmd, os.environ, None)
        except BaseException:
            self.templates.discard(self.staging)
            raise

    def wait(self) -> str:
        """The template's path, making it now if `launch` was not called."""
        self.launch()
        if self.proc is not None:
            proc, self.proc = self.proc, None
            try:
                finish(proc)
            except BaseException:
                self.templates.discard(self.staging)
                raise
            self.templates.commit(self.staging, self.path)
        return self.path

    def settle(self) -> None:
        """If the child was started, let it finish (a template is useful even if this build
        failed); errors are dropped.
        """
        if self.proc is not None:
            with suppress(Exception):
                self.wait()

