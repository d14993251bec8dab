"""`python -m cros_venv` and the `create_venv` script: the no-op check first, then the CLI."""

import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~10 ms here
if TYPE_CHECKING:
    from typing import Sequence


def main(argv: "Sequence[str]", script: "str | None" = None) -> int:
    from cros_venv.fs import open_standard_fds

    open_standard_fds()
    try:
        return _main(argv, script)
    except KeyboardInterrupt as e:  # before the CLI took over (it handles its own)
        from cros_venv.cli import interrupted

        return interrupted(e)


def _main(argv: "Sequence[str]", script: "str | None") -> int:
    # The no-op check imports only sys and builtin modules (not even os: see fs.py), so it
    # is safe before isolation (but not in PYTHONINSPECT's mode, where even exit 0 ends in a
    # traceback and a prompt).
    simple = parse_simple_args(argv)
    if simple is not None and not sys.flags.inspect:
        from cros_venv import __version__, fastpath

        try:
            if simple[0] is None:  # create_venv REQUIREMENTS: a shared venv's path on stdout
                found = fastpath.shared_venv(simple[1], simple[2], __version__)
                if found is not None:
                    sys.stdout.write(found + "\n")
                    sys.stdout.flush()
                    return _done(script)
            elif fastpath.up_to_date(simple[0], simple[1], simple[2], __version__):
                return _done(script)
        except (OSError, ValueError):  # e.g. the current directory was deleted: the build says so
            pass
    if script is not None and not (sys.flags.isolated and sys.flags.no_site):
        # Started as `python create_venv` without -I -S: restart isolated, so that neither
        # PYTHONPATH, the user site nor .pth files reach the tool.
        import os

        from cros_venv.locate import running_python

        python = running_python()
        os.execv(python, [python, "-I", "-S", os.path.abspath(script), *argv])
    from cros_venv import cli

    return cli.main(argv, simple)


def _done(script: "str | None") -> int:
    """The no-op check's exit 0. Run as the script (a process of its own), exit at once:
    nothing is open but the standard streams, flushed here, and nothing registered with
    atexit, so the interpreter's finalization (~1.2 ms, a tenth of the run) is skipped.
    Called as a function (`python -m cros_venv`, tests): return 0 as usual.
    """
    if script is None:
        return 0
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: let the interpreter's exit deal with it
                return 0
    import posix

    posix._exit(0)
    return 0  # pragma: no cover - not reached


def parse_simple_args(argv: "Sequence[str]") -> "tuple[str | None, list[str], str | None] | None":
    """(DIR, REQUIREMENTS, --python) from a plain command line, or None for anything else.
    One positional is REQUIREMENTS alone (a shared venv): DIR is None.

    Anything beyond positionals and `--python` (help, -v, other options) takes the full
    path, where argparse handles it properly.
    """
    positionals: list[str] = []
    python = None
    args = iter(argv)
    for arg in args:
        if arg == "--python":
            python = next(args, None)
            if python is None:
                return None
        elif arg.startswith("--python="):
            python = arg[len("--python="):]
        elif arg.startswith("-"):
            return None
        else:
            positionals.append(arg)
    if not positionals:
        return None
    if len(positionals) == 1:
        return None, positionals, python
    return positionals[0], positionals[1:], python


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
