"""context: what a build starts from (real paths, absolute arguments), and the test-only
fault hook CROS_VENV_TEST_KILL=STEP[:SIGNAL].
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cros_venv.cache import Cache
from cros_venv.context import Context, Request, checkpoint
from cros_venv.locate import running_python
from cros_venv.names import MARKER
from cros_venv.skeleton import Templates
from cros_venv.unpacker import Unpacker
from tests.conftest import REPO


@pytest.mark.parametrize(("hook", "fires"), [
    pytest.param(None, False, id="unset"),
    pytest.param("", False, id="empty"),
    pytest.param("signed:USR1", False, id="another-step"),
    pytest.param("wiped:USR1", True, id="this-step"),
    pytest.param("wiped-and-more:USR1", False, id="a-longer-name"),
])
def test_a_checkpoint_signals_only_when_its_step_is_named(monkeypatch: pytest.MonkeyPatch, hook: str | None,
                                                          fires: bool) -> None:
    if hook is None:
        monkeypatch.delenv("CROS_VENV_TEST_KILL", raising=False)
    else:
        monkeypatch.setenv("CROS_VENV_TEST_KILL", hook)
    got: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
    try:
        checkpoint("wiped")
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert got == ([signal.SIGUSR1] if fires else [])


def test_the_fault_hook_kills_by_default() -> None:
    code = "import sys; sys.path.insert(0, sys.argv[1]); from cros_venv.context import checkpoint; checkpoint('installed')"
    env = {**os.environ, "CROS_VENV_TEST_KILL": "installed"}
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], env=env, capture_output=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, out.stderr


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """A context for `link/venv` (link -> real) and a requirements file given relative."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "r.txt").write_text("alpha==1.0\n")
    monkeypatch.chdir(tmp_path)
    cache = Cache(str(tmp_path / "cache"))
    return Context(Request("link/venv", ("r.txt",)), lambda _: None, cache, Unpacker(cache, workers=0),
                   Templates(str(tmp_path / "templates")))


def test_a_context_works_on_real_paths(context: Context, tmp_path: Path) -> None:
    assert context.root == str(tmp_path / "real" / "venv")
    assert context.arguments == [str(tmp_path / "r.txt")]
    assert context.python == running_python()
    assert not context.has_marker
    (tmp_path / "real" / "venv").mkdir()
    (tmp_path / "real" / "venv" / MARKER).write_text("{}")
    assert context.has_marker


def test_the_plan_is_there_only_once_resolved(context: Context) -> None:
    with pytest.raises(AssertionError, match="resolve first"):
        context.plan  # noqa: B018
    with pytest.raises(AssertionError, match="resolve first"):
        context.layout  # noqa: B018
