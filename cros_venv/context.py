"""What one build works on: the request, and what is found and made on the way.

build.create computes it step by step (see the list of steps there); each step in
steps.py is a function of it. Plain classes, not dataclasses or typing.NamedTuple
subclasses with defaults: this is imported on every build, and `dataclasses` alone
costs ~3 ms.
"""

from __future__ import annotations

import os

from cros_venv import fs
from cros_venv.errors import InputError
from cros_venv.lite import signal
from cros_venv.locate import is_script, not_found, resolve_python
from cros_venv.names import MARKER
from cros_venv.sources import Sources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from subprocess import Popen
    from typing import Callable

    from cros_venv.cache import Cache
    from cros_venv.install import Linker
    from cros_venv.procs import Forked
    from cros_venv.replace import Wiped
    from cros_venv.resolution import Resolution
    from cros_venv.skeleton import TemplateJob, Templates
    from cros_venv.unpacker import Unpacker
    from cros_venv.venv import Layout

    Report = Callable[[str], None]

# Test-only fault injection: CROS_VENV_TEST_KILL=STEP[:SIGNAL] makes the build send itself
# SIGNAL (default KILL) right after STEP, one of STEPS. Used by tests/reliability.
STEPS = ("locked", "wiped", "signed", "installed", "skeleton", "configured", "marked", "cleaned")


def checkpoint(step: str) -> None:
    """The build has just finished `step` (a no-op unless a test asked for a fault here)."""
    want = os.environ.get("CROS_VENV_TEST_KILL")
    if want and want.partition(":")[0] == step:
        os.kill(os.getpid(), getattr(signal, "SIG" + (want.partition(":")[2] or "KILL")))


class Request:
    """What the command line asked for."""

    __slots__ = ("compile", "lock_timeout", "python", "requirements", "venv_dir")

    def __init__(self, venv_dir: str, requirements: tuple[str, ...], python: str | None = None,
                 lock_timeout: float = 600.0, compile: bool = False) -> None:
        self.venv_dir = venv_dir
        self.requirements = requirements
        self.python = python  # --python, or None: the interpreter running this
        self.lock_timeout = lock_timeout
        self.compile = compile


class Context:
    """One build: the request, the tools it uses, and each step's result.

    Set on creation: request, report, cache, unpacker, templates, python (the target
    interpreter's real path), arguments (the requirements files, absolute), sources (their
    bytes, read once), root (the venv's real path). Then by the steps, in order:
    resolution and layout (resolve), template_job (head start or start_skeleton),
    lock_fd (lock), wiped (wipe), skeleton_child (start_skeleton), linker and dist_infos
    (install_wheels).
    """

    def __init__(self, request: Request, report: Report, cache: Cache, unpacker: Unpacker,
                 templates: Templates) -> None:
        self.request = request
        self.report = report
        self.cache = cache
        self.unpacker = unpacker
        self.templates = templates
        self.python = resolve_python(request.python)
        if not_found(self.python):
            raise InputError(f"--python {request.python}: no such program on PATH; give the interpreter's path, "
                             "or add its directory to PATH")
        if request.python is not None and is_script(self.python):
            raise InputError(f"--python {request.python}: {self.python} is a script that did not say which "
                             "interpreter it runs; give --python the interpreter's own path")
        self.arguments = [fs.file_path(r) for r in request.requirements]
        self.sources = Sources()  # each requirements file is read once (it may be a pipe)
        self.root = os.path.realpath(request.venv_dir)
        self.resolution: Resolution | None = None
        self.layout_: Layout | None = None
        self.template_job: TemplateJob | None = None
        self.skeleton_child: Popen[bytes] | Forked | None = None
        self.lock_fd = -1
        self.wiped: Wiped | None = None
        self.linker: Linker | None = None
        self.dist_infos: list[str] = []
        self.shared = False  # a shared venv (shared.py): read-only, no checkout's wheelhouse

    @property
    def plan(self) -> Resolution:
        assert self.resolution is not None, "resolve first"
        return self.resolution

    @property
    def layout(self) -> Layout:
        assert self.layout_ is not None, "resolve first"
        return self.layout_

    @property
    def has_marker(self) -> bool:
        return os.path.exists(os.path.join(self.root, MARKER))
