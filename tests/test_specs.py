"""cros_venv.specs: where a script's venv spec is found, and what each kind converts to."""

from __future__ import annotations

import glob
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import InvalidVersion, Version

from cros_venv import specs
from cros_venv.errors import InputError
from cros_venv.specs.convert import VERSION_RE, release, wheel_name
from cros_venv.specs.found import SCRIPT_LIMIT
from tests.conftest import REPO

# Real-shaped vpython specs (ChromiumOS scripts and Chromium's .vpython3 use these forms).
CHROMITE_INLINE = '''#!/usr/bin/env vpython3
# Copyright 2021 The ChromiumOS Authors

# NB: Do not add a ton of wheels here as it's shared among many programs.
# [VPYTHON:BEGIN]
# python_version: "3.8"
#
# wheel: <
#   name: "infra/python/wheels/psutil/${vpython_platform}"
#   version: "version:5.7.2"
# >
# wheel: <
#   name: "infra/python/wheels/pyasn1-py2_py3"
#   version: "version:0.2.3"
# >
# wheel: <
#   name: "infra/python/wheels/google-auth-py2_py3"
#   version: "version:1.2.1"
# >
# [VPYTHON:END]

import sys
'''
CHROMIUM_FILE = '''# This is a vpython "spec" file.
#
# Read more about `vpython` and how to modify this file here:
#   https://chromium.googlesource.com/infra/infra/+/main/doc/users/vpython.md

python_version: "3.11"

# Setting `verify_pep425_tag` to the list of platforms we explicitly must support.
verify_pep425_tag: [
    {python: "cp311", abi: "cp311", platform: "manylinux1_x86_64"},
    {python: "cp311", abi: "cp311", platform: "macosx_11_0_arm64"},
    {python: "cp311", abi: "cp311", platform: "win_amd64"}
]

# Used by:
#   build/android/pylib/local/emulator/avd.py
wheel: <
  name: "infra/python/wheels/protobuf-py3"
  version: "version:4.21.9"
>
wheel: <
  name: "infra/python/wheels/pywin32/${vpython_platform}"
  version: "version:306"
  match_tag: <
    platform: "win32"
  >
  match_tag: <
    platform: "win_amd64"
  >
>
wheel: <
  name: "infra/python/wheels/coverage/${vpython_platform}"
  version: "version:7.3.1"
  not_match_tag < platform: "linux_aarch64" >
>
wheel: {
  name: 'infra/python/wheels/six-py2_py3',
  version: 'version:1.16.0';
}
'''
COPYBOT_INLINE = '''#!/usr/bin/env vpython3
"""CopyBot script."""

// [VPYTHON:BEGIN]
// python_version: "3.11"
// wheel: <
//   name: "infra/python/wheels/requests-py3"
//   version: "version:2.31.0"
// >
// wheel: <
//   name: "infra/python/wheels/charset_normalizer-py3"
//   version: "version:2.0.4"
// >
//
// wheel: <
//   name: "infra/python/wheels/lxml/${platform}-${arch}"
//   version: "version:2@4.9.3"
// >
// [VPYTHON:END]
'''
PEP723 = '''#!/usr/bin/env python3
# /// script
# requires-python = ">=3.9"
# dependencies = [
#   "six==1.17.0",
#   "tomli==2.5.0 ; python_version < '3.11'",
# ]
#
# [tool.uv]
# exclude-newer = "2025-01-01T00:00:00Z"
# ///

import six
'''


def one_line(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    """The error's single problem (asserting that it is one line)."""
    problems = excinfo.value.problems
    assert len(problems) == 1 and "\n" not in problems[0], problems
    return problems[0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """outer/ (no repository) holding repo/ (a git repository) holding pkg/sub/."""
    root = tmp_path / "outer" / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "pkg" / "sub").mkdir(parents=True)
    return root


# -- find: each step ----------------------------------------------------------------------------

def test_explicit_spec_is_read_as_given(repo: Path) -> None:
    (repo / "r.txt").write_text("six==1.17.0\n")
    found = specs.find(None, str(repo / "r.txt"), environ={})
    assert found == specs.Found("requirements", str(repo / "r.txt"), "--spec", "six==1.17.0\n")


def test_explicit_relative_path_is_made_absolute(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "a.vpython3").write_text('python_version: "3.11"\n')
    monkeypatch.chdir(repo)
    found = specs.find(None, "a.vpython3", environ={})
    assert (found.kind, found.path) == ("vpython", str(repo / "a.vpython3"))


@pytest.mark.parametrize("suffix", [".vpython3", ".vpython"])
def test_a_file_beside_the_script(repo: Path, suffix: str) -> None:
    script = repo / "pkg" / "tool.py"
    script.write_text("print(1)\n")
    Path(f"{script}{suffix}").write_text('wheel: <name: "infra/python/wheels/six-py3" version: "version:1.0">\n')
    found = specs.find(str(script), environ={})
    assert (found.kind, found.path, found.origin) == ("vpython", f"{script}{suffix}", "beside the script")


def test_vpython3_beside_the_script_wins_over_vpython(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text("")
    Path(f"{script}.vpython3").write_text("# 3\n")
    Path(f"{script}.vpython").write_text("# 2\n")
    assert specs.find(str(script), environ={}).text == "# 3\n"


def test_inline_vpython_block_loses_its_comment_prefix(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text(CHROMITE_INLINE)
    found = specs.find(str(script), environ={})
    assert found.kind == "vpython" and found.origin == "[VPYTHON:BEGIN] block" and found.path == str(script)
    assert found.line == 6
    assert found.text.splitlines()[:4] == ['python_version: "3.8"', "", "wheel: <",
                                           '  name: "infra/python/wheels/psutil/${vpython_platform}"']
    assert specs.convert(found) == specs.Converted("psutil==5.7.2\npyasn1==0.2.3\ngoogle-auth==1.2.1\n", "3.8")


def test_inline_vpython_block_with_another_prefix(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text(COPYBOT_INLINE)
    converted = specs.convert(specs.find(str(script), environ={}))
    assert converted == specs.Converted("requests==2.31.0\ncharset_normalizer==2.0.4\nlxml==4.9.3\n", "3.11")


def test_inline_vpython_block_in_a_docstring_and_crlf(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_bytes(b'"""Doc\r\n[VPYTHON:BEGIN]\r\npython_version: "3.12"\r\n[VPYTHON:END]\r\n"""\r\n')
    found = specs.find(str(script), environ={})
    assert (found.text, found.line) == ('python_version: "3.12"\n', 3)


def test_pep723_block(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text(PEP723)
    found = specs.find(str(script), environ={})
    assert found == specs.Found("pep723", str(script), "PEP 723 block", PEP723.split("# ///")[1].split("\n", 1)[1]
                                .replace("# ", "").replace("#\n", "\n"), line=3)
    assert specs.convert(found) == specs.Converted(
        "six==1.17.0\ntomli==2.5.0 ; python_version < '3.11'\n", None, ">=3.9")


def test_pep723_blocks_of_other_types_are_not_the_spec(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text("# /// pyproject\n# x = 1\n# ///\n")
    with pytest.raises(InputError, match="^no venv spec"):
        specs.find(str(script), environ={})


def test_two_pep723_script_blocks_are_an_error(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text("# /// script\n# dependencies = []\n# ///\nx = 1\n# /// script\n# a = 1\n# ///\n")
    with pytest.raises(InputError) as e:
        specs.find(str(script), environ={})
    assert one_line(e) == (f"{script}:5: a second `# /// script` block (the first is on line 1); "
                           "PEP 723 allows one: merge them")


def test_an_unclosed_pep723_block_is_an_error(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text("import x\n# /// script\n# dependencies = []\nprint()\n")
    with pytest.raises(InputError) as e:
        specs.find(str(script), environ={})
    assert one_line(e) == (f"{script}:2: the `# /// script` block is empty or has no closing `# ///` line; "
                           "close it (PEP 723)")


def test_an_unclosed_vpython_block_is_an_error(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text("\n# [VPYTHON:BEGIN]\n# python_version: \"3.11\"\n")
    with pytest.raises(InputError) as e:
        specs.find(str(script), environ={})
    assert one_line(e) == f"{script}:2: the [VPYTHON:BEGIN] block has no [VPYTHON:END] line; end the block with one"


def test_vpython3_above_the_script_up_to_the_repository_root(repo: Path) -> None:
    script = repo / "pkg" / "sub" / "tool.py"
    script.write_text("print(1)\n")
    (repo / ".vpython3").write_text('python_version: "3.10"\n')
    found = specs.find(str(script), environ={})
    assert (found.path, found.origin) == (str(repo / ".vpython3"), ".vpython3 above the script")


def test_the_nearest_vpython3_above_wins(repo: Path) -> None:
    script = repo / "pkg" / "sub" / "tool.py"
    script.write_text("")
    (repo / ".vpython3").write_text("# root\n")
    (repo / "pkg" / ".vpython3").write_text("# pkg\n")
    assert specs.find(str(script), environ={}).text == "# pkg\n"


@pytest.mark.parametrize("git", ["dir", "file"])
def test_the_walk_up_stops_at_the_repository_root(repo: Path, git: str) -> None:
    if git == "file":  # a worktree or submodule: .git is a file
        (repo / ".git").rmdir()
        (repo / ".git").write_text("gitdir: /elsewhere\n")
    (repo.parent / ".vpython3").write_text('python_version: "3.11"\n')  # above the root: not this repo's
    script = repo / "pkg" / "tool.py"
    script.write_text("")
    with pytest.raises(InputError, match=f"up to {re.escape(str(repo))}, and"):
        specs.find(str(script), environ={})


def test_without_a_repository_the_walk_goes_to_the_top(tmp_path: Path) -> None:
    (tmp_path / ".vpython3").write_text("# top\n")
    script = tmp_path / "a" / "b" / "tool.py"
    script.parent.mkdir(parents=True)
    script.write_text("")
    assert specs.find(str(script), environ={}).path == str(tmp_path / ".vpython3")


def test_the_environment_variable_comes_last(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text("")
    (repo.parent / "env.vpython").write_text("# env\n")
    found = specs.find(str(script), environ={specs.ENV_VAR: str(repo.parent / "env.vpython")})
    assert (found.kind, found.origin, found.text) == ("vpython", "$CROS_VENV_SPEC_PATH", "# env\n")


def test_without_a_script_only_the_explicit_spec_and_the_variable_count(repo: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".vpython3").write_text("# cwd\n")
    monkeypatch.chdir(repo)
    (repo / "r.txt").write_text("six==1.0\n")
    assert specs.find(None, environ={specs.ENV_VAR: "r.txt"}).origin == "$CROS_VENV_SPEC_PATH"
    with pytest.raises(InputError) as e:
        specs.find(None, environ={specs.ENV_VAR: ""})
    assert one_line(e) == ("no venv spec: looked for --spec and $CROS_VENV_SPEC_PATH; "
                           "pass --spec FILE or -r REQUIREMENTS")


def test_no_spec_says_where_it_looked(repo: Path) -> None:
    script = repo / "pkg" / "tool.py"
    script.write_text("print(1)\n")
    with pytest.raises(InputError) as e:
        specs.find(str(script), environ={})
    assert one_line(e) == (
        f"no venv spec for {script}: looked for --spec, {script}.vpython3, {script}.vpython, "
        f"a [VPYTHON:BEGIN] block, a PEP 723 `# /// script` block, .vpython3 up to {repo}, "
        "and $CROS_VENV_SPEC_PATH; add a PEP 723 block or pass -r REQUIREMENTS")
    script.write_bytes(b"# -*- coding: latin-1 -*-\n# /// script\n# dependencies = []\n# ///\nprint('\xe9')\n")
    with pytest.raises(InputError) as e:
        specs.find(str(script), environ={})
    assert one_line(e).startswith(f"no venv spec for {script} (its text is not UTF-8: its inline blocks were not "
                                  "read): looked for --spec")


# -- find: precedence, a test per pair ----------------------------------------------------------

STEPS = ["--spec", "beside the script", "[VPYTHON:BEGIN] block", "PEP 723 block", ".vpython3 above the script",
         "$CROS_VENV_SPEC_PATH"]


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(range(len(STEPS)), 2)),
                         ids=lambda i: STEPS[i])
def test_the_earlier_step_wins(repo: Path, first: int, second: int) -> None:
    script = repo / "pkg" / "tool.py"
    text = "import os\n"
    explicit = None
    environ = {}
    for step in (first, second):
        if step == 0:
            explicit = str(repo / "explicit.txt")
            (repo / "explicit.txt").write_text("a==1\n")
        elif step == 1:
            Path(f"{script}.vpython3").write_text("# beside\n")
        elif step == 2:
            text += "# [VPYTHON:BEGIN]\n# python_version: \"3.11\"\n# [VPYTHON:END]\n"
        elif step == 3:
            text += "# /// script\n# dependencies = []\n# ///\n"
        elif step == 4:
            (repo / ".vpython3").write_text("# above\n")
        else:
            (repo.parent / "env.txt").write_text("b==1\n")
            environ[specs.ENV_VAR] = str(repo.parent / "env.txt")
    script.write_text(text)
    assert specs.find(str(script), explicit, environ).origin == STEPS[first]


# -- find: odd scripts and files ----------------------------------------------------------------

def test_a_script_that_is_not_utf8_has_no_inline_block(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_bytes(b"# \xff\n# /// script\n# dependencies = []\n# ///\n")
    (repo / ".vpython3").write_text("# above\n")
    assert specs.find(str(script), environ={}).origin == ".vpython3 above the script"


def test_only_the_first_mib_of_a_script_is_read(repo: Path) -> None:
    script = repo / "tool.py"
    block = b"# /// script\n# dependencies = []\n# ///\n"
    script.write_bytes(b"#" * (SCRIPT_LIMIT + 1) + b"\n" + block)
    (repo / ".vpython3").write_text("# above\n")
    assert specs.find(str(script), environ={}).origin == ".vpython3 above the script"
    script.write_bytes(block + b"x = '" + "é".encode() * SCRIPT_LIMIT + b"'\n")  # cut inside a character
    assert specs.find(str(script), environ={}).origin == "PEP 723 block"


def test_a_pipe_as_script_is_not_read(repo: Path) -> None:
    fifo = repo / "fifo"
    os.mkfifo(fifo)  # no writer: reading it would block
    Path(f"{fifo}.vpython3").unlink(missing_ok=True)
    (repo / ".vpython3").write_text("# above\n")
    assert specs.find(str(fifo), environ={}).origin == ".vpython3 above the script"


def test_a_directory_script_is_read_through_its_main(repo: Path) -> None:
    (repo / "pkg" / "__main__.py").write_text("# /// script\n# dependencies = ['six==1.0']\n# ///\n")
    found = specs.find(str(repo / "pkg"), environ={})
    assert (found.path, found.origin) == (str(repo / "pkg" / "__main__.py"), "PEP 723 block")


def test_a_missing_script_is_one_line(repo: Path) -> None:
    with pytest.raises(InputError) as e:
        specs.find(str(repo / "nope.py"), environ={})
    assert one_line(e) == (f"{repo}/nope.py: cannot read the script (No such file or directory); "
                           "check its path and permissions")


@pytest.mark.parametrize(("name", "kind"), [("a.vpython", "vpython"), ("a.vpython3", "vpython"), (".vpython3", "vpython"),
                                            ("requirements.txt", "requirements"), ("a.vpython3.txt", "requirements"),
                                            ("spec", "requirements")])
def test_read_file_kind_by_name(tmp_path: Path, name: str, kind: str) -> None:
    (tmp_path / name).write_bytes(b"\xef\xbb\xbfx\r\n")
    assert specs.read_file(str(tmp_path / name), "--spec") == specs.Found(kind, str(tmp_path / name), "--spec", "x\r\n")


def test_read_file_errors_are_one_line(tmp_path: Path) -> None:
    cases: list[tuple[str, str, str]] = [
        (str(tmp_path), "--spec", f"{tmp_path}: cannot read this venv spec (--spec): Is a directory; "
                                  "pass --spec a readable spec file"),
        (str(tmp_path / "gone"), "$CROS_VENV_SPEC_PATH",
         f"{tmp_path}/gone: cannot read this venv spec ($CROS_VENV_SPEC_PATH): No such file or directory; "
         "point CROS_VENV_SPEC_PATH at a readable spec file, or unset it"),
    ]
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9==1\n")
    cases.append((str(tmp_path / "latin1.txt"), "--spec",
                  f"{tmp_path}/latin1.txt: not UTF-8 text (invalid continuation byte at byte 3); save it as UTF-8"))
    for path, origin, message in cases:
        with pytest.raises(InputError) as e:
            specs.read_file(path, origin)
        assert one_line(e) == message


def test_a_spec_beside_the_script_that_is_a_directory(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text("")
    Path(f"{script}.vpython3").mkdir()
    with pytest.raises(InputError) as e:
        specs.find(str(script), environ={})
    assert one_line(e) == (f"{script}.vpython3: cannot read this venv spec (beside the script): Is a directory; "
                           "make it a readable spec file, or remove it")


# -- convert ------------------------------------------------------------------------------------

def vpython(text: str) -> specs.Converted:
    return specs.convert(specs.Found("vpython", "/s/.vpython3", "--spec", text))


def vpython_error(text: str) -> str:
    with pytest.raises(InputError) as e:
        vpython(text)
    return one_line(e)


def test_requirements_are_unchanged() -> None:
    text = "# c\nsix==1.17.0 \\\n  --hash=sha256:abc\n"
    assert specs.convert(specs.Found("requirements", "/r.txt", "--spec", text)) == specs.Converted(text)


def test_a_chromium_vpython3_file() -> None:
    assert vpython(CHROMIUM_FILE) == specs.Converted(
        'protobuf==4.21.9\npywin32==306 ; sys_platform == "win32"\n'
        'coverage==7.3.1 ; (platform_machine != "aarch64" or sys_platform != "linux")\nsix==1.16.0\n', "3.11")


def test_an_empty_vpython_spec_asks_for_nothing() -> None:
    assert vpython("# nothing\n") == specs.Converted("", None)


def test_the_same_wheel_twice_at_one_version_is_one_pin() -> None:
    wheel = 'wheel: <name: "infra/python/wheels/six-py3" version: "version:1.0">\n'
    assert vpython(wheel + wheel.replace("-py3", "-py2_py3")) == specs.Converted("six==1.0\n")


def test_the_same_wheel_at_two_versions_for_the_same_platforms_is_an_error() -> None:
    text = ('wheel: <name: "infra/python/wheels/numpy/${vpython_platform}" version: "version:1.2"\n'
            '  match_tag: <platform: "win_amd64">\n>\n'
            'wheel: <name: "infra/python/wheels/numpy/${vpython_platform}" version: "version:1.3"\n'
            '  match_tag: <platform: "win32">\n>\n')
    assert vpython_error(text) == (
        "/s/.vpython3:4: wheel numpy version:1.3 is also pinned at version:1.2 on line 1 for the same platforms; "
        "keep one, or tell them apart with match_tag")


@pytest.mark.parametrize(("tags", "marker"), [
    ('match_tag: <platform: "win_amd64">', 'sys_platform == "win32"'),
    ('match_tag: <platform: "manylinux1_x86_64"> match_tag: <platform: "macosx_11_0_arm64">',
     '((platform_machine == "arm64" and sys_platform == "darwin") or '
     '(platform_machine == "x86_64" and sys_platform == "linux"))'),
    ('match_tag: <abi: "cp39" platform: "linux_aarch64">',
     'platform_machine == "aarch64" and python_version == "3.9" and sys_platform == "linux"'),
    ('not_match_tag: <platform: "linux_arm64">', '(platform_machine != "aarch64" or sys_platform != "linux")'),
    ('match_tag: <platform: "macosx_11_0_arm64">', 'platform_machine == "arm64" and sys_platform == "darwin"'),
    ('match_tag: <platform: "linux_x86_64"> not_match_tag: <python: "cp38">',
     'platform_machine == "x86_64" and sys_platform == "linux" and python_version != "3.8"'),
    ('match_tag: <abi: "abi3">', ""),
    ('match_tag: <abi: "cp27mu" platform: "linux_x86_64">',
     'platform_machine == "x86_64" and python_version == "2.7" and sys_platform == "linux"'),
    ('not_match_tag: <abi: "cp38d">', 'python_version != "3.8"'),
    ('not_match_tag: <abi: "abi3">', 'python_version < "0"'),
])
def test_match_tags_become_markers(tags: str, marker: str) -> None:
    text = f'wheel: <name: "infra/python/wheels/numpy/${{vpython_platform}}" version: "version:1.2" {tags}>\n'
    assert vpython(text).requirements == "numpy==1.2" + (f" ; {marker}" if marker else "") + "\n"


def test_one_wheel_at_two_versions_for_different_platforms_is_two_pins() -> None:
    text = ('wheel: <name: "infra/python/wheels/numpy/${vpython_platform}" version: "version:1.2"\n'
            '  match_tag: <platform: "win_amd64">\n>\n'
            'wheel: <name: "infra/python/wheels/numpy/${vpython_platform}" version: "version:1.3"\n'
            '  not_match_tag: <platform: "win_amd64">\n>\n')
    assert vpython(text).requirements == 'numpy==1.2 ; sys_platform == "win32"\nnumpy==1.3 ; sys_platform != "win32"\n'


def test_an_unknown_platform_tag_is_an_error() -> None:
    text = 'wheel: <name: "infra/python/wheels/x-py3" version: "version:1.0" match_tag: <platform: "plan9">>\n'
    assert "platform 'plan9' is not one this tool can read" in vpython_error(text)


@pytest.mark.parametrize(("package", "name"), [
    ("infra/python/wheels/psutil/${vpython_platform}", "psutil"),
    ("infra/python/wheels/google-auth-py2_py3", "google-auth"),
    ("infra/python/wheels/protobuf-py3", "protobuf"),
    ("infra/python/wheels/six", "six"),
    ("infra/python/wheels/enum34-py2", "enum34"),
    ("infra/python/wheels/lxml/${platform}-${arch}", "lxml"),
    ("infra/python/wheels/pyyaml/${platform}_${py_python}_${py_abi}", "pyyaml"),
    ("infra/python/wheels/charset_normalizer-py3", "charset_normalizer"),
    ("infra/python/wheels/zope.interface-py3/", "zope.interface"),
    ("${vpython_platform}", None),
    ("infra/python/wheels/-py3", None),
    ("infra/python/wheels/six py3", None),
    ("", None),
])
def test_wheel_names(package: str, name: str | None) -> None:
    assert wheel_name(package) == name


@pytest.mark.parametrize(("tag", "version"), [
    ("version:1.15.0", "1.15.0"),
    ("version:2@1.15.0", "1.15.0"),
    ("version:2021.5.30", "2021.5.30"),
    ("version:5.8.0.chromium.3", "5.8.0.chromium.3"),  # a version, but not PEP 440's: convert refuses it
    ("git_revision:abc123", None),
    ("latest", None),
    ("a@version:1.0", None),
])
def test_release_of_a_cipd_tag(tag: str, version: str | None) -> None:
    assert release(tag) == version


@pytest.mark.parametrize("version", ["1.0", "1.0.0", "v1.0", "1!2.0", "1.0a1", "1.0-alpha.1", "1.0rc2", "1.0c1",
                                     "1.0.post1", "1.0-1", "1.0.dev0", "1.0+local.7", "1.0a1.post2.dev3+x",
                                     "1.0.chromium.3", "5.8.0.chromium.3", "1.0+", "1..0", "abc", "1.0-", "",
                                     "1.0 ", "1.0+a_b-c", "1.0pre", "1.0r", "1.0.0.0.0.0"])
def test_the_version_regex_is_pep_440s(version: str) -> None:
    try:
        Version(version)
        valid = version.strip() == version  # packaging allows surrounding whitespace; a tag has none
    except InvalidVersion:
        valid = False
    assert bool(re.fullmatch(VERSION_RE, version, re.VERBOSE | re.IGNORECASE)) == valid


VPYTHON_ERRORS = [
    ("wheel: <\n  name: \"infra/python/wheels/psutil/${vpython_platform}\"\n  version: \"version:5.8.0.chromium.3\"\n>\n",
     "/s/.vpython3:3: wheel psutil version:5.8.0.chromium.3 is a local build that pip_packages/ cannot supply; "
     "pin a released version"),
    ('wheel: <name: "infra/python/wheels/six-py3" version: "git_revision:abc">\n',
     "/s/.vpython3:1: wheel six git_revision:abc is not a released version (a `version:X` tag); "
     'pin one: version: "version:X.Y.Z"'),
    ('wheel: <version: "version:1.0">\n',
     '/s/.vpython3:1: this wheel has no name; add name: "infra/python/wheels/NAME-py3"'),
    ('\nwheel: <name: "infra/python/wheels/six-py3">\n',
     '/s/.vpython3:2: this wheel has no version; add version: "version:X.Y.Z"'),
    ('wheel: <name: "infra/python/wheels/six+py3" version: "version:1.0">\n',
     "/s/.vpython3:1: wheel 'infra/python/wheels/six+py3' does not name a Python project "
     "(infra/python/wheels/NAME-py3 or .../NAME/${vpython_platform}); fix its name"),
    ('wheel: <name: six version: "version:1.0">\n',
     '/s/.vpython3:1: the wheel\'s name must be a string such as "infra/python/wheels/NAME-py3", not six; '
     "fix the spec (vpython's text protobuf format)"),
    ('wheel: "six"\n',
     '/s/.vpython3:1: wheel must be a message, wheel: < name: "..." version: "version:X.Y.Z" >; '
     "fix the spec (vpython's text protobuf format)"),
    ("python_version: 3.11\n",
     "/s/.vpython3:1: python_version must be a string such as \"3.11\", not 3.11; "
     "fix the spec (vpython's text protobuf format)"),
    ('python_version: "three"\n',
     "/s/.vpython3:1: python_version must be a string such as \"3.11\", not three; "
     "fix the spec (vpython's text protobuf format)"),
    ('wheel: <\n  name: "x"\n',
     "/s/.vpython3:1: the `<` here is never closed by `>`; fix the spec (vpython's text protobuf format)"),
    ('wheel: <\n  name: "x"\n}\n',
     "/s/.vpython3:3: expected a field name or `>` (for the `<` on line 1), found `}`; "
     "fix the spec (vpython's text protobuf format)"),
    ('name: "abc\n',
     "/s/.vpython3:1: a string is not closed on its line; fix the spec (vpython's text protobuf format)"),
    ("wheel: @\n",
     "/s/.vpython3:1: unexpected character '@'; fix the spec (vpython's text protobuf format)"),
    ("python_version \"3\"\n",
     "/s/.vpython3:1: expected `:` after python_version, found `3`; fix the spec (vpython's text protobuf format)"),
    ("x: [1 2]\n",
     "/s/.vpython3:1: expected `,` or `]` in the list x (line 1) starts, found `2`; "
     "fix the spec (vpython's text protobuf format)"),
    ("x:\n",
     "/s/.vpython3:1: x has no value; fix the spec (vpython's text protobuf format)"),
    ("x: }\n",
     "/s/.vpython3:1: expected a value for x, found `}`; fix the spec (vpython's text protobuf format)"),
    ("x: 1 >\n",
     "/s/.vpython3:1: expected a field name, found `>`; fix the spec (vpython's text protobuf format)"),
    ('x: "\\q"\n',
     "/s/.vpython3:1: unknown escape \\q in a string; fix the spec (vpython's text protobuf format)"),
    ('x: "\\xZZ"\n',
     "/s/.vpython3:1: bad escape \\xZZ in a string; fix the spec (vpython's text protobuf format)"),
    ('x: "\\777"\n',
     "/s/.vpython3:1: \\777 is more than a byte (\\377) in a string; fix the spec (vpython's text protobuf format)"),
    ('x: "\\xff"\n',
     "/s/.vpython3:1: a string's escapes make bytes that are not UTF-8; "
     "fix the spec (vpython's text protobuf format)"),
    ('x: "\\ud800"\n',
     "/s/.vpython3:1: \\ud800 is not a Unicode character; fix the spec (vpython's text protobuf format)"),
    ("a <" * 200,
     "/s/.vpython3:1: messages nested more than 100 deep; fix the spec (vpython's text protobuf format)"),
]


@pytest.mark.parametrize(("text", "message"), VPYTHON_ERRORS, ids=[m.split(": ", 1)[1][:40] for _, m in VPYTHON_ERRORS])
def test_vpython_errors_are_one_line(text: str, message: str) -> None:
    assert vpython_error(text) == message


def test_vpython_errors_in_an_inline_block_name_the_script_line(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text(CHROMITE_INLINE.replace("version:0.2.3", "git_revision:0abc"))
    with pytest.raises(InputError) as e:
        specs.convert(specs.find(str(script), environ={}))
    assert one_line(e) == (f"{script}:14: wheel pyasn1 git_revision:0abc is not a released version "
                           '(a `version:X` tag); pin one: version: "version:X.Y.Z"')


def test_the_text_format_parses_escapes_lists_and_unknown_fields() -> None:
    from cros_venv.specs.textproto import parse

    fields = parse('a: "x\\n\\t\\101\\x42\\u00e9" \'y\\\'\'; b: [1, -2.5e3, inf, -inf, {c: true}] d {e <>}\n'
                   "f: []  # comment\n")
    assert [(f.name, f.kind, f.text) for f in fields] == [
        ("a", "string", "x\n\tABéy'"), ("b", "scalar", "1"), ("b", "scalar", "-2.5e3"), ("b", "scalar", "inf"),
        ("b", "scalar", "-inf"), ("b", "message", ""), ("d", "message", "")]
    assert fields[5].fields[0].text == "true" and fields[6].fields[0].name == "e"


def test_pep723_errors_are_one_line(repo: Path) -> None:
    cases = [
        ("# dependencies = [\n#   six\n# ]\n", f"{repo}/tool.py:4: the PEP 723 block is not valid TOML "
         "(Invalid value at column 5); fix it"),
        ("# dependencies = 'six'\n", f"{repo}/tool.py:2: `dependencies` in the PEP 723 block must be a list of "
         "strings (PEP 508 requirements), not 'six'; write dependencies = [\"name==1.2.3\"]"),
        ("# dependencies = [1]\n", f"{repo}/tool.py:2: `dependencies` in the PEP 723 block must be a list of "
         "strings (PEP 508 requirements), not [1]; write dependencies = [\"name==1.2.3\"]"),
        ("# dependencies = ['-r /etc/passwd']\n", f"{repo}/tool.py:2: '-r /etc/passwd' in `dependencies` is not "
         "a PEP 508 requirement; write \"name==1.2.3\""),
        ("# dependencies = [\"six\\n==1\"]\n", f"{repo}/tool.py:2: 'six\\n==1' in `dependencies` is not "
         "a PEP 508 requirement; write \"name==1.2.3\""),
        ("# requires-python = 3.9\n", f"{repo}/tool.py:2: `requires-python` in the PEP 723 block must be a string "
         "such as \">=3.9\", not 3.9"),
        ("# x = " + "[" * 5000 + "\n", None),  # too deep: tomllib's own limit or RecursionError, one line either way
    ]
    for block, message in cases:
        (repo / "tool.py").write_text(f"import os\n# /// script\n{block}# ///\n")
        found = specs.find(str(repo / "tool.py"), environ={})
        with pytest.raises(InputError) as e:
            specs.convert(found)
        if message is None:
            assert one_line(e).startswith(f"{repo}/tool.py:")
        else:
            assert one_line(e) == message


def test_pep723_without_dependencies_asks_for_nothing() -> None:
    found = specs.Found("pep723", "/s.py", "PEP 723 block", "[tool.x]\ny = 1\n", line=2)
    assert specs.convert(found) == specs.Converted("", None, None)


OLD_PYTHONS = [*sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9.*/bin/python3"))),
               *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10.*/bin/python3")))]  # 3.9 first


@pytest.mark.skipif(not OLD_PYTHONS, reason="no CPython 3.9 or 3.10 under ~/.pyenv/versions")
def test_pep723_on_python_before_311_uses_tomli_from_pip_packages(repo: Path, tmp_path: Path) -> None:
    (repo / "tool.py").write_text(PEP723 + "# /// script\n")  # a stray opener after the block is no second block
    bad = repo / "bad.py"
    bad.write_text("# /// script\n# dependencies = [six]\n# ///\n")
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from cros_venv import specs\n"
            "from cros_venv.errors import InputError\n"
            "assert 'tomli' not in sys.modules\n"
            f"print(repr(specs.convert(specs.find({str(repo / 'tool.py')!r}, environ={{}}))))\n"
            "try:\n"
            f"    specs.convert(specs.find({str(bad)!r}, environ={{}}))\n"
            "except InputError as e:\n"
            "    print(e.problems[0])\n"
            "print(sys.modules['tomli'].__file__.startswith(sys.argv[1]))\n")
    env = {"PATH": os.environ.get("PATH", ""), "CROS_VENV_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([OLD_PYTHONS[0], "-I", "-S", "-c", code, str(tmp_path / "cache")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Converted(\"six==1.17.0\\ntomli==2.5.0 ; python_version < '3.11'\\n\", None, '>=3.9')",
        f"{bad}:2: the PEP 723 block is not valid TOML (Invalid value at column 19); fix it",
        "True",
    ]


def test_the_lookup_order_is_documented() -> None:
    doc = specs.__doc__ or ""
    positions = [doc.find(s) for s in ("--spec FILE", "SCRIPT.vpython3", "[VPYTHON:BEGIN]", "PEP 723 block",
                                       "`.vpython3` file", "$CROS_VENV_SPEC_PATH")]
    assert -1 not in positions and positions == sorted(positions)


def test_importing_the_package_stays_light() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import cros_venv.specs\n"
            "print(sorted(m for m in ('re', 'typing', 'tomllib', 'cros_venv.specs.textproto') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(REPO)], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "[]", result.stderr



def _regex_blocks(text: str) -> list[tuple[str, int, int]]:
    import re

    from cros_venv.specs.found import PEP723_RE

    out = []
    for m in re.finditer(PEP723_RE, text):
        opener = text.count("\n", 0, m.start())
        closer = opener + 1 + m.group("content").count("\n")
        out.append((m.group("type"), opener, closer))
    return out


def test_pep723_blocks_are_found_as_the_reference_regex_finds_them() -> None:
    """The line scanner agrees with PEP 723's regex on every arrangement of these lines."""
    import itertools
    import random

    from cros_venv.specs.found import pep723_blocks

    pieces = ["# /// script", "# ///", "#", "# x = 1", "#x", "print()", "", "# /// tool", "# /// a b", "#  ///",
              "# /// script\r", "# /// ünï", "  # ///"]
    rng = random.Random(723)
    cases = ["\n".join(c) for n in range(1, 5) for c in itertools.product(pieces[:8], repeat=n)]
    cases += ["\n".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) + rng.choice(["", "\n"])
              for _ in range(3000)]
    for text in cases:
        assert pep723_blocks(text) == _regex_blocks(text), repr(text)


# -- found by an independent break-it session (round 10) -------------------------------------

def test_the_marker_in_a_string_or_sentence_starts_no_block(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text('"""Reads the [VPYTHON:BEGIN] ... [VPYTHON:END] blocks of other scripts."""\n'
                      'BEGIN = "[VPYTHON:BEGIN]"\n'
                      "MARK = '''\n[VPYTHON:BEGIN]'''\n"  # ends its line, but a quote comes before: still a string
                      + PEP723)
    found = specs.find(str(script), environ={})
    assert (found.kind, found.origin) == ("pep723", "PEP 723 block")
    script.write_text('BEGIN = "[VPYTHON:BEGIN]"\nEND = "[VPYTHON:END]"\n')  # no block at all: the next step
    with pytest.raises(InputError) as e:
        specs.find(str(script), environ={})
    assert "no venv spec" in one_line(e)
    script.write_text('x = 1  # [VPYTHON:BEGIN] is not a comment prefix\n'
                      '  // [VPYTHON:BEGIN]\n  // python_version: "3.12"\n  // [VPYTHON:END]\n')
    found = specs.find(str(script), environ={})
    assert (found.kind, found.text, found.line) == ("vpython", 'python_version: "3.12"\n', 3)


def test_a_converted_spec_knows_the_line_of_each_requirement(repo: Path) -> None:
    script = repo / "tool.py"
    script.write_text('# /// script\n# dependencies = [\n#   "alpha==1.0",\n#   "beta==2.0",\n# ]\n# ///\n')
    assert specs.convert(specs.find(str(script), environ={})).lines == (3, 4)
    text = '# one\nwheel: <\n  name: "infra/python/wheels/six-py3"\n  version: "version:1.0"\n>\n' \
           'wheel: <name: "infra/python/wheels/beta-py3" version: "version:2.0">\n'
    assert vpython(text).lines == (2, 6)
    found = specs.Found("requirements", "/r.txt", "--spec", "a==1\nb==2\n")
    assert specs.convert(found).lines[:2] == (1, 2)


def test_a_spec_path_through_a_link_and_dotdot_is_what_open_reads(tmp_path: Path) -> None:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "r.txt").write_text("beside the link's target\n")
    (tmp_path / "r.txt").write_text("beside the link\n")
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub")
    given = str(tmp_path / "link" / ".." / "r.txt")
    with open(given) as f:
        assert f.read() == "beside the link's target\n"
    found = specs.find(None, given, environ={})
    assert (found.path, found.text) == (str(tmp_path / "real" / "r.txt"), "beside the link's target\n")


def test_a_spec_from_a_pipe_is_read_once_and_says_so(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.write(write, b"six==1.17.0\n")
    os.close(write)
    try:
        found = specs.find(None, f"/dev/fd/{read}", environ={})
    finally:
        os.close(read)
    assert (found.text, found.regular) == ("six==1.17.0\n", False)
    (tmp_path / "r.txt").write_text("six==1.17.0\n")
    assert specs.find(None, str(tmp_path / "r.txt"), environ={}).regular


def test_a_local_build_for_another_platform_is_left_out_not_an_error() -> None:
    """Chromium's shape: pyobjc's local build, for macOS only; on this machine it is never used."""
    text = ('python_version: "3.11"\n'
            'wheel: <name: "infra/python/wheels/pyobjc/${vpython_platform}" version: "version:7.3.chromium.1"\n'
            '  match_tag: <platform: "macosx_10_10_intel"> match_tag: <platform: "win_amd64">\n>\n'
            'wheel: <name: "infra/python/wheels/six-py2_py3" version: "version:1.16.0">\n')
    assert vpython(text).requirements == "six==1.16.0\n"
    here = text.replace("macosx_10_10_intel", f"manylinux2014_{os.uname().machine}")
    assert "is a local build that pip_packages/ cannot supply" in vpython_error(here)


def test_a_spec_from_a_pipe_is_vpython_if_it_reads_as_one(tmp_path: Path) -> None:
    """`--spec <(...)` has no name to go by: the text says which kind it is."""
    import threading

    from cros_venv.specs.found import read_file

    for text, kind in (('# a comment\npython_version: "3.11"\n', "vpython"), ("six==1.16.0\n", "requirements"),
                       ('wheel: <name: "infra/python/wheels/six-py3" version: "version:1.16.0">\n', "vpython")):
        fifo = tmp_path / f"fifo-{kind}-{len(text)}"
        os.mkfifo(fifo)
        writer = threading.Thread(target=fifo.write_text, args=(text,))
        writer.start()
        found = read_file(str(fifo), "--spec")
        writer.join()
        assert (found.kind, found.text) == (kind, text)


def test_a_fifo_named_by_the_environment_is_refused_not_waited_on(tmp_path: Path) -> None:
    from cros_venv.specs.found import ENV_ORIGIN, read_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: opening it would block for ever
    with pytest.raises(InputError) as info:
        read_file(str(fifo), ENV_ORIGIN)
    assert one_line(info) == f"{fifo}: not a regular file ($CROS_VENV_SPEC_PATH); unset CROS_VENV_SPEC_PATH or " \
                             "point it at a spec file"
