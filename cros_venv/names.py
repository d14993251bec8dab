"""The names create_venv gives to what it writes in and beside a venv directory DIR, and the
limit on what it reads as a requirements file.

Standard library free (the no-op check imports this): just the names, in one place.
"""

MAX_REQUIREMENTS_SIZE = 16 << 20  # this repo's own requirements file is 1 KiB; /dev/zero is endless

MARKER = ".cros_venv.json"  # DIR/: written last, the venv is complete (layout: marker.py)
SIGN = ".cros_venv.owner"  # DIR/: written first and kept: create_venv made this directory
DIRS_FILE = ".cros_venv.dirs"  # DIR/: the directories the no-op key watches, one a line
TRASH_SUFFIX = ".cros_venv-trash"  # beside DIR, `.NAME` + this: old venvs being deleted
INSIDE_TRASH = ".cros_venv-old"  # DIR/: the old venv of a DIR that cannot be moved (a mount point)
LEGACY_TRASH_INFIX = ".cros_venv-trash-"  # beside DIR, `.NAME` + this + random: left by older versions
LOCK_SUFFIX = ".lock"  # DIR.lock beside DIR (lock.py)
# Shared venvs (shared.py), under the cache root:
SHARED_DIR = "venvs"  # venvs/NAME: a link to the venv (NAME: py3.11-<spec hash>); venvs/NAME.lock: its build lock
SHARED_REAL = ".d"  # venvs/.d/NAME-<id>: the venv itself, whose files name this path (it never moves)
SHARED_REQUESTS = ".requests"  # venvs/.requests/<hash>: "NAME\n<no-op key>\n" per request, for the fast path
