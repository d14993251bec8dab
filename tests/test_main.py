"""__main__: a plain command line is taken apart without argparse; anything else is not."""

from __future__ import annotations

import pytest

from cros_venv.__main__ import parse_simple_args


@pytest.mark.parametrize("argv", [[], ["-v", "d", "r"], ["--help"], ["d", "r", "--python"], ["--compile", "d", "r"]])
def test_anything_but_a_plain_command_line_takes_the_full_path(argv: list[str]) -> None:
    assert parse_simple_args(argv) is None


def test_parse_simple_args() -> None:
    assert parse_simple_args(["d", "r1", "r2", "--python=/p"]) == ("d", ["r1", "r2"], "/p")
    assert parse_simple_args(["--python", "p", "d", "r"]) == ("d", ["r"], "p")
    assert parse_simple_args(["r.txt"]) == (None, ["r.txt"], None)  # a shared venv
    assert parse_simple_args(["r.txt", "--python", "p"]) == (None, ["r.txt"], "p")
