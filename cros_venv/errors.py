"""The tool's exceptions; each carries the exit code the command line returns for it."""

from __future__ import annotations


class CrosVenvError(Exception):
    """Base class: a problem the user can act on, reported as one line per problem."""

    exit_code = 1

    def __init__(self, *problems: str, detail: tuple[str, ...] = ()) -> None:
        super().__init__(*problems)
        self.problems = problems
        self.detail = detail or problems  # what -v shows (several problems of a kind, each in full)


class BuildError(CrosVenvError):
    """The build itself failed (disk full, corrupt wheel, interpreter failure, ...)."""

    exit_code = 1


class InputError(CrosVenvError):
    """Bad input: requirements, a missing wheel, an unclosed dependency set, bad arguments."""

    exit_code = 2


class LockTimeout(CrosVenvError):
    """Another process held the venv's lock for longer than the timeout."""

    exit_code = 3


def raise_interrupted(signum: int, frame: object) -> None:
    """A SIGTERM handler: unwind as Ctrl-C does (cleanups run), remembering the signal."""
    raise Interrupted(signum)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT, exit 130) or SIGTERM (exit 143); `state` says what DIR was left as."""

    def __init__(self, signum: int = 2, state: str = "") -> None:
        super().__init__(signum, state)
        self.signum = signum
        self.state = state

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
