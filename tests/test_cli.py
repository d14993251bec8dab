"""cli: what people and wrappers see."""

from __future__ import annotations

import io
import time

from cros_venv.cli import Reporter


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
