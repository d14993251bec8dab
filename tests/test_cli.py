"""cli: what people and wrappers see."""

from __future__ import annotations

import io
import os
import time

import pytest

from cros_venv import cli
from cros_venv.cli import Reporter
from cros_venv.errors import InputError


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_progress_once_a_build_is_slow() -> None:
    tty = FakeTTY()
    with Reporter(verbose=False, stream=tty, delay=0.05) as report:
        report("resolving")
        assert tty.getvalue() == ""  # not yet: the build may be fast
        time.sleep(0.1)
        report("installing attrs (1/2)")
        report("installing six (2/2)")
    text = tty.getvalue()
    assert "create_venv: installing attrs (1/2) (" in text and "create_venv: installing six (2/2) (" in text
    assert "resolving" not in text
    assert text.endswith("\r\x1b[K")  # the progress line is cleared at the end


def test_a_terminal_sees_nothing_for_a_fast_build() -> None:
    tty = FakeTTY()
    with Reporter(verbose=False, stream=tty, delay=5) as report:
        report("resolving")
    assert tty.getvalue() == ""


def test_without_a_terminal_only_verbose_prints() -> None:
    pipe = io.StringIO()
    with Reporter(verbose=False, stream=pipe, delay=0.01) as report:
        time.sleep(0.05)
        report("resolving")
    assert pipe.getvalue() == ""
    with Reporter(verbose=True, stream=pipe) as report:
        report("resolving")
    assert pipe.getvalue().startswith("create_venv: [") and pipe.getvalue().endswith("] resolving\n")


@pytest.mark.parametrize("text", ["abc", "nan", "-1", "", "1e"])
def test_a_bad_lock_timeout_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="not a number of seconds"):
        cli._seconds(text)
    if text:
        with pytest.raises(InputError, match=f"CROS_VENV_LOCK_TIMEOUT='{text}'"):
            cli.lock_timeout(None, {"CROS_VENV_LOCK_TIMEOUT": text})


def test_lock_timeout_comes_from_the_option_then_the_environment() -> None:
    assert cli.lock_timeout(5.0, {"CROS_VENV_LOCK_TIMEOUT": "abc"}) == 5.0
    assert cli.lock_timeout(None, {"CROS_VENV_LOCK_TIMEOUT": "7"}) == 7.0
    assert cli.lock_timeout(None, {}) == 600.0
    assert cli._seconds("inf") == float("inf")


def test_errors_naming_non_utf8_paths_are_written_as_their_bytes() -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    name = os.fsdecode(b"/tmp/r\xff.txt")
    cli.write_error(f"create_venv: error: {name}:0: cannot read requirements file", out)
    assert out.buffer.getvalue() == b"create_venv: error: /tmp/r\xff.txt:0: cannot read requirements file\n"
