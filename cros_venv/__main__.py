"""`python -m cros_venv` and the `create_venv` script: the no-op check first, then the CLI."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~10 ms here
if TYPE_CHECKING:
    from typing import Sequence


def main(argv: Sequence[str], script: str | None = None) -> int:
    try:
        return _main(argv, script)
    except KeyboardInterrupt as e:  # before the CLI took over (it handles its own)
        from cros_venv.cli import interrupted

        return interrupted(e)


def _main(argv: Sequence[str], script: str | None) -> int:
    from cros_venv import __version__, fastpath

    # The no-op check imports only os and sys, so it is safe before isolation.
    if fastpath.up_to_date(argv, __version__):
        return 0
    if script is not None and not (sys.flags.isolated and sys.flags.no_site):
        # Started as `python create_venv` without -I -S: restart isolated, so that neither
        # PYTHONPATH, the user site nor .pth files reach the tool.
        os.execv(sys.executable, [sys.executable, "-I", "-S", os.path.abspath(script), *argv])
    from cros_venv import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
