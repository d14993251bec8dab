"""prefetch: the head start guesses the wheels the requirements pin, from file names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cros_venv import prefetch, toolchain
from cros_venv.cache import Cache
from cros_venv.context import Context, Request
from cros_venv.skeleton import Templates
from cros_venv.unpacker import Unpacker


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    c = Cache(str(tmp_path / "cache"))
    c.ensure_dirs()
    return c


class Recorder(Unpacker):
    """An Unpacker that only notes what it is asked to unpack."""

    def __init__(self, cache: Cache) -> None:
        super().__init__(cache, workers=0)
        self.submitted: list[str] = []

    def submit(self, wheel: str, sha256: str | None = None, meta: bool = False) -> None:
        assert meta  # resolving will want their METADATA
        self.submitted.append(os.path.basename(wheel))


def test_prefetch_guesses_the_pinned_wheels(cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    house = tmp_path / "pip_packages"
    house.mkdir()
    ours = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    other = "cp38" if ours != "cp38" else "cp39"
    for name in ["Foo_Bar-1.0-py3-none-any.whl", f"baz-2.0-{ours}-{ours}-manylinux_2_17_x86_64.whl",
                 f"baz-2.0-{other}-{other}-manylinux_2_17_x86_64.whl", "qux-1.0-py3-none-any.whl",
                 "qux-2.0-py3-none-any.whl", toolchain.PIP]:
        (house / name).write_bytes(b"")
    monkeypatch.setattr(toolchain, "PIP_PACKAGES", str(house))
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# pins\nfoo.bar == 1.0  # comment\nbaz[extra]==2.0 ; python_version >= '3'\n"
                    "qux==2.0\nmissing==1.0\n-r other.txt\n")
    ctx = Context(Request(str(tmp_path / "venv"), (str(reqs),)), lambda _: None, cache, Recorder(cache),
                  Templates(str(tmp_path / "templates")))
    assert [os.path.basename(w) for w in prefetch.guess_wheels(ctx, ours=True)] == ["Foo_Bar-1.0-py3-none-any.whl", f"baz-2.0-{ours}-{ours}-manylinux_2_17_x86_64.whl",
                                  "qux-2.0-py3-none-any.whl", toolchain.PIP]


def test_pins_are_read_as_the_pattern_reads_them() -> None:
    """_pin (str methods, no `re` on the warm path) against the pattern it replaced, on
    hand-picked lines and 20,000 random ones."""
    import random
    import re

    pattern = re.compile(r"[ \t]*([A-Za-z0-9][A-Za-z0-9._-]*)[ \t]*(?:\[[^\]\n]*\])?[ \t]*===?[ \t]*([A-Za-z0-9.!+_-]+)")

    def expected(line: str) -> tuple[str, str] | None:
        m = pattern.match(line)
        return (re.sub(r"[-_.]+", "_", m.group(1)).lower(), m.group(2)) if m else None

    rng = random.Random(7)
    lines = ["six==1.17.0", "  Six == 1.17.0 ; python_version < '3.12'", "a[b,c]==1 \\", "A.b-C__d [x] === 2.0+local",
             "-r other.txt", "a==", "a>=1", "_a==1", "é==1", "a[b==1", "a=1", "# a==1", "a == 1 --hash=sha256:00"]
    lines += ["".join(rng.choice("aZ9._-[]= \t!+#;é") for _ in range(rng.randint(0, 14))) for _ in range(20000)]
    assert [prefetch._pin(line) for line in lines] == [expected(line) for line in lines]
