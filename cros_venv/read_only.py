"""A shared venv's guard: pip may look (`list`, `check`, `freeze`, `show`), never change it.

Two layers, written into every shared venv:

- pip.conf (venv.pip_conf) names READ-ONLY.txt as a constraint for `install` and a
  requirements file for `uninstall`: pip stops on its text. Any pip configuration
  change gets around it: `PIP_CONFIG_FILE=/dev/null`, `PIP_CONSTRAINT=`, `--isolated`.
- GUARD_PTH in site-packages, which `site` runs at every start: when the command line
  mentions pip at all (`python -m pip`, bin/pip, `-c "...pip..."`), it imports GUARD_MODULE,
  which puts a finder first on sys.meta_path. When pip imports its `install` or `uninstall`
  command, the finder has the command's `run` replaced by one that says MESSAGE and fails:
  no configuration of pip reaches past it, and `pip install --help` still works. Any other
  program pays for reading the .pth and testing its command line: ~30 µs measured here
  (`python -c pass` 14.8 ms with it, 14.6 ms without, medians of 300); one whose command
  line happens to contain "pip" also imports the small module (its finder then sees
  every import, and acts on two).

Not guarded: `python -S` (no site, so no pip either unless put on the path by hand), code
that imports pip's internals from a script whose command line does not mention pip, other
installers (`uv pip install --python VENV`), and writing into the venv's files directly.
PEP 668's EXTERNALLY-MANAGED cannot help: pip ignores it inside any venv, and looks for it
in the base interpreter's stdlib.
"""

from __future__ import annotations

import os
from typing import Callable

GUARD_MODULE = "_cros_venv_read_only"
GUARD_PTH = "_cros_venv_read_only.pth"
MESSAGE = "this shared venv is read-only, build a private venv with create_venv DIR REQUIREMENTS and install there"

# One line (site runs a .pth line that starts with `import`). orig_argv is 3.10+; before,
# the guard is always imported (`-m pip` shows as just `-m` in sys.argv at this point).
PTH_TEXT = (f'import sys; "pip" in " ".join(getattr(sys, "orig_argv", ["pip"])) and __import__("{GUARD_MODULE}")\n'
            ).encode()

MODULE_TEXT = f'''"""Written by cros_venv: pip install and uninstall stop in this shared venv (see {GUARD_PTH})."""

import sys

MESSAGE = {MESSAGE!r}
COMMANDS = {{"pip._internal.commands.install": "InstallCommand",
            "pip._internal.commands.uninstall": "UninstallCommand"}}


def _refuse(self, options, args):
    sys.stderr.write("ERROR: " + MESSAGE + "\\n")
    return 1


class ReadOnlyGuard:
    """Finds nothing itself: wraps the loading of pip's install and uninstall commands."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in COMMANDS:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            getattr(module, COMMANDS[name]).run = _refuse

        spec.loader.exec_module = exec_module
        return spec


if not any(getattr(finder, "__name__", "") == "ReadOnlyGuard" for finder in sys.meta_path):
    sys.meta_path.insert(0, ReadOnlyGuard)
'''.encode()


def write(site_packages: str) -> None:
    """Put the guard into a shared venv's site-packages."""
    for name, text in ((GUARD_MODULE + ".py", MODULE_TEXT), (GUARD_PTH, PTH_TEXT)):
        with open(os.path.join(site_packages, name), "wb") as f:
            f.write(text)


def changed(site_packages: str, read: Callable[[str], bytes]) -> str | None:
    """Which file of the guard is missing or not as written (None: both as written);
    `read` is venv._read (a path's bytes, OSError if it is not a regular file)."""
    for name, text in ((GUARD_MODULE + ".py", MODULE_TEXT), (GUARD_PTH, PTH_TEXT)):
        try:
            if read(os.path.join(site_packages, name)) != text:
                return f"its {name} was changed"
        except OSError:
            return f"its {name} is missing"
    return None
