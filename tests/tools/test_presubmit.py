"""bin/presubmit runs repohooks [Hook Scripts] locally; .pre-commit-hooks.yaml works with pre-commit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO, ToolRepo, WheelSpec

pytestmark = pytest.mark.e2e


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A dependent repo with two commits; the second changes src/a.py."""
    root = tmp_path / "dependent"
    (root / "src").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "src" / "a.py").write_text("A = 1\n")
    (root / "README").write_text("readme\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    (root / "src" / "a.py").write_text("A = 2\n")
    git(root, "commit", "-q", "-am", "two")
    return root


def test_runs_each_hook_and_reports_it(tool_repo: ToolRepo, project: Path) -> None:
    (project / "PRESUBMIT.cfg").write_text(
        "[Hook Scripts]\npasses = true\nfails = sh -c 'echo broken; exit 3'\n\n[Hook Overrides]\npylint: true\n")
    for args, cwd in (([str(project / "PRESUBMIT.cfg")], project / "src"), ([], project)):
        out = tool_repo.command("presubmit", *args, cwd=cwd)
        assert out.returncode == 1
        lines = out.stdout.splitlines()
        assert lines[0].startswith("[PASS] passes (") and lines[1].startswith("[FAIL] fails (")
        assert lines[2:] == ["    broken"]
        assert "presubmit: 1 hook failed: fails" in out.stderr
    (project / "PRESUBMIT.cfg").write_text("[Hook Scripts]\npasses = true\n")
    assert tool_repo.command("presubmit", str(project / "PRESUBMIT.cfg")).returncode == 0


def test_substitutes_files_and_project_and_runs_in_the_project_root(tool_repo: ToolRepo, project: Path) -> None:
    (project / "PRESUBMIT.cfg").write_text(
        "[Hook Scripts]\nshow = sh -c 'printf \"%s\\n\" \"$@\"; pwd; exit 1' sh ${PRESUBMIT_PROJECT} ${PRESUBMIT_FILES}\n")
    out = tool_repo.command("presubmit", str(project / "PRESUBMIT.cfg"), cwd=project / "src")
    shown = [line.strip() for line in out.stdout.splitlines()[1:]]
    assert shown == ["dependent", str(project / "src" / "a.py"), str(project)]


def test_uncommitted_changes_count_as_changed(tool_repo: ToolRepo, project: Path) -> None:
    (project / "README").write_text("changed\n")
    (project / "PRESUBMIT.cfg").write_text("[Hook Scripts]\nshow = sh -c 'printf \"%s\\n\" \"$@\"; exit 1' sh ${PRESUBMIT_FILES}\n")
    out = tool_repo.command("presubmit", str(project / "PRESUBMIT.cfg"))
    assert sorted(line.strip() for line in out.stdout.splitlines()[1:]) == sorted(
        [str(project / "README"), str(project / "src" / "a.py")])


@pytest.mark.parametrize(("text", "message"), [
    ("[Other]\nx = y\n", "has no [Hook Scripts] section"),
    ("not ini at all\n", "not a repohooks config"),
])
def test_bad_config_files(tool_repo: ToolRepo, project: Path, text: str, message: str) -> None:
    (project / "PRESUBMIT.cfg").write_text(text)
    out = tool_repo.command("presubmit", str(project / "PRESUBMIT.cfg"))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_this_repos_presubmit_cfg_runs_the_tests_and_the_check() -> None:
    text = (REPO / "PRESUBMIT.cfg").read_text()
    assert "bin/run_tests" in text and "bin/check_requirements" in text and "venv/requirements.txt" in text
    check = next(line.split("=", 1)[1].split() for line in text.splitlines() if "check_requirements" in line)
    out = subprocess.run([PYTHON, str(REPO / check[0]), *check[1:]], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _pre_commit(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """pre-commit from the registry in a scratch venv, or None where it cannot be installed."""
    venv = tmp_path_factory.mktemp("pre-commit-venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    if made.returncode != 0:
        return None
    got = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--retries", "0", "--timeout", "10",
                          "pre-commit"], capture_output=True, env=env, timeout=300)
    return venv / "bin" / "pre-commit" if got.returncode == 0 else None


def test_pre_commit_hook(tool_repo: ToolRepo, project: Path, tmp_path_factory: pytest.TempPathFactory,
                         tmp_path: Path) -> None:
    pre_commit = _pre_commit(tmp_path_factory)
    if pre_commit is None:
        pytest.skip("pre-commit cannot be installed here (no network to the registry)")
    # The hook repo: this repo's hook definitions and commands, committed.
    shutil.copy(REPO / ".pre-commit-hooks.yaml", tool_repo.root / ".pre-commit-hooks.yaml")
    tool_repo.add_wheel(WheelSpec("beta", "1.0"))
    git(tool_repo.root, "init", "-q", "-b", "main")
    git(tool_repo.root, "add", "-A")
    git(tool_repo.root, "commit", "-q", "-m", "hooks")
    rev = git(tool_repo.root, "rev-parse", "HEAD").strip()
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {tool_repo.root}\n  rev: {rev}\n  hooks:\n  - id: check-requirements\n")
    (project / "requirements.txt").write_text("beta==1.0\n")
    git(project, "add", "-A")
    env = {**tool_repo.env(), "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
           "PATH": f"{os.path.dirname(PYTHON)}:{os.environ['PATH']}"}
    ok = subprocess.run([str(pre_commit), "run", "--all-files"], cwd=project, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (project / "requirements.txt").write_text("beta==7.0\n")
    bad = subprocess.run([str(pre_commit), "run", "--all-files"], cwd=project, env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "requirements.txt:1: no wheel for beta==7.0" in bad.stdout


def test_hook_output_that_is_not_utf8_is_shown_replaced(tool_repo: ToolRepo, project: Path) -> None:
    (project / "PRESUBMIT.cfg").write_text("[Hook Scripts]\nbytes = sh -c 'printf \"bad \\\\377\\\\376 bytes\\\\n\"; exit 1'\n")
    out = tool_repo.command("presubmit", str(project / "PRESUBMIT.cfg"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.splitlines()[1:] == ["    bad \ufffd\ufffd bytes"]


@pytest.mark.parametrize(("data", "message"), [
    pytest.param(b"[Hook Scripts]\nx = echo \xff\n", "PRESUBMIT.cfg:2: not UTF-8 text (invalid start byte at byte 24); "
                 "save it as UTF-8", id="not-utf8"),
    pytest.param(b"[Hook Scripts]\nx = true\nx = false\n", "PRESUBMIT.cfg:3: not a repohooks config: While reading",
                 id="duplicate-option"),
    pytest.param(b"[Hook Scripts]\n[Hook Scripts]\n", "PRESUBMIT.cfg:2: not a repohooks config: While reading",
                 id="duplicate-section"),
    pytest.param(b"  indented first line\n[Hook Scripts]\n", "PRESUBMIT.cfg:1: not a repohooks config:",
                 id="continuation-first"),
    pytest.param(b"[Hook Scripts\nx = y\n", "PRESUBMIT.cfg:1: not a repohooks config:", id="unclosed-section"),
    pytest.param(b"\x00\x00", "PRESUBMIT.cfg:1: not a repohooks config:", id="nul-bytes"),
])
def test_a_config_that_cannot_be_read_is_one_line(tool_repo: ToolRepo, project: Path, data: bytes,
                                                  message: str) -> None:
    (project / "PRESUBMIT.cfg").write_bytes(data)
    out = tool_repo.command("presubmit", "PRESUBMIT.cfg", cwd=project)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"presubmit: error: {message}") and len(out.stderr.splitlines()) == 1, out.stderr


def test_a_hook_that_cannot_be_split_or_is_empty_fails_alone(tool_repo: ToolRepo, project: Path) -> None:
    (project / "PRESUBMIT.cfg").write_text(
        "[Hook Scripts]\nunclosed = echo \"no end\nempty =\nblank =   \ngood = true\n")
    out = tool_repo.command("presubmit", str(project / "PRESUBMIT.cfg"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    lines = [re.sub(r" \(\d+\.\ds\)", "", line) for line in out.stdout.splitlines()]
    assert lines == [
        '[FAIL] unclosed: echo "no end',
        "    cannot split the command: no closing quotation; close the quote",
        "[FAIL] empty: ",
        "    the command is empty; write the command to run after 'empty ='",
        "[FAIL] blank: ",
        "    the command is empty; write the command to run after 'blank ='",
        "[PASS] good: true",
    ]
    assert "presubmit: 3 hooks failed: unclosed, empty, blank" in out.stderr


@pytest.mark.parametrize("name", [
    pytest.param(b"s\xc3\xbc d\xc3\xa9.py", id="non-ascii-utf8"),
    pytest.param(b"caf\xe9.py", id="not-utf8"),
    pytest.param(b"line\nbreak.py", id="newline"),
    pytest.param(b'"quoted".py', id="quotes"),
])
def test_file_names_reach_the_hook_exactly(tool_repo: ToolRepo, project: Path, tmp_path: Path, name: bytes) -> None:
    """git quotes such names unless asked for -z output."""
    path = os.fsencode(project / "src") + b"/" + name
    with open(path, "wb") as f:
        f.write(b"x\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "odd name")
    args = tmp_path / "args.bin"
    (project / "PRESUBMIT.cfg").write_text(
        f"[Hook Scripts]\nshow = sh -c 'for a; do printf \"%s\\\\0\" \"$a\"; done > {args}' sh ${{PRESUBMIT_FILES}}\n")
    out = tool_repo.command("presubmit", str(project / "PRESUBMIT.cfg"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert args.read_bytes().split(b"\0")[:-1] == [path]
