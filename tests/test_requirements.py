"""requirements: pip's file format -> pins, every problem reported with file:line."""

from __future__ import annotations

import contextlib
import inspect
import sys
from pathlib import Path
from typing import Callable

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from cros_venv import reqlines, requirements
from cros_venv.errors import InputError
from tests.conftest import no_hang

ENV_311 = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
           "platform_system": "Linux", "implementation_name": "cpython", "os_name": "posix",
           "platform_machine": "x86_64", "platform_python_implementation": "CPython",
           "platform_release": "", "platform_version": "", "implementation_version": "3.11.7"}
ENV_39 = {**ENV_311, "python_version": "3.9", "python_full_version": "3.9.18"}


def load(tmp_path: Path, text: str | bytes, name: str = "requirements.txt") -> requirements.RequirementFiles:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return requirements.load([str(path)])


def names(reqs: requirements.RequirementFiles, env: dict[str, str] = ENV_311) -> dict[str, str]:
    wanted, _ = requirements.applicable(reqs, env)
    return {n: str(p.version) for n, p in wanted.items()}


def problems(tmp_path: Path, text: str) -> tuple[str, ...]:
    with pytest.raises(InputError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_reads_comments_blank_lines_and_continuations(tmp_path: Path) -> None:
    reqs = load(tmp_path, "# header\n\nalpha==1.0  # inline comment\nbeta\\\n==2.0\n   \ngamma==3\t# tab comment\n")
    assert names(reqs) == {"alpha": "1.0", "beta": "2.0", "gamma": "3"}


def test_reads_crlf_and_utf8_bom(tmp_path: Path) -> None:
    reqs = load(tmp_path, b"\xef\xbb\xbfalpha==1.0\r\nbeta==2.0\r\n")
    assert names(reqs) == {"alpha": "1.0", "beta": "2.0"}


def test_normalises_names_and_extras(tmp_path: Path) -> None:
    reqs = load(tmp_path, "Foo_Bar[Fast,extra_ONE]==1.0\n")
    (pin,) = reqs.pins
    assert pin.name == "foo-bar"
    assert pin.extras == {"fast", "extra-one"}
    assert str(pin) == "foo-bar[extra-one,fast]==1.0"


def test_markers_select_per_interpreter(tmp_path: Path) -> None:
    reqs = load(tmp_path, 'alpha==1.0 ; python_version < "3.10"\nalpha==2.0 ; python_version >= "3.10"\n'
                          'tomli==2.0 ; python_version < "3.11"\n')
    assert names(reqs, ENV_311) == {"alpha": "2.0"}
    assert names(reqs, ENV_39) == {"alpha": "1.0", "tomli": "2.0"}


def test_hashes_are_collected_per_line(tmp_path: Path) -> None:
    digest = "a" * 64
    reqs = load(tmp_path, f"alpha==1.0 \\\n    --hash=sha256:{digest} \\\n    --hash sha256:{'B' * 64}\n")
    assert reqs.pins[0].hashes == {f"sha256:{digest}", f"sha256:{'b' * 64}"}


def test_includes_and_constraints_resolve_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.txt").write_text("beta==2.0\n-c constraints.txt\n")
    (tmp_path / "sub" / "constraints.txt").write_text("delta==4.0\nbeta==2.0\n")
    reqs = load(tmp_path, "alpha==1.0\n-r sub/more.txt\n")
    wanted, constraints = requirements.applicable(reqs, ENV_311)
    assert sorted(wanted) == ["alpha", "beta"]
    assert {n: str(p.version) for n, p in constraints.items()} == {"beta": "2.0", "delta": "4.0"}
    assert [Path(p).name for p, _ in reqs.files] == ["requirements.txt", "more.txt", "constraints.txt"]


def test_same_pin_twice_merges_extras(tmp_path: Path) -> None:
    reqs = load(tmp_path, "alpha==1.0\nALPHA[x]==1.0\n")
    wanted, _ = requirements.applicable(reqs, ENV_311)
    alpha = wanted[canonicalize_name("alpha")]
    assert alpha.extras == {"x"} and alpha.version == Version("1.0")


def test_conflicting_pins_name_both_lines(tmp_path: Path) -> None:
    reqs = load(tmp_path, "alpha==1.0\nbeta==1.0\nalpha==2.0\n")
    with pytest.raises(InputError) as info:
        requirements.applicable(reqs, ENV_311)
    (msg,) = info.value.problems
    assert msg.endswith("requirements.txt:3: alpha==2.0 conflicts with alpha==1.0 pinned at "
                        f"{tmp_path / 'requirements.txt'}:1; keep one")


def test_requirement_conflicting_with_constraint(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("alpha==2.0\n")
    reqs = load(tmp_path, "-c c.txt\nalpha==1.0\n")
    with pytest.raises(InputError, match="conflicts with constraint alpha==2.0"):
        requirements.applicable(reqs, ENV_311)


BAD_LINES = [
    pytest.param("alpha", "alpha is not pinned (no version); pin one exact version", id="unpinned"),
    pytest.param("alpha>=1.0", "alpha is not pinned (>=1.0)", id="range"),
    pytest.param("alpha==1.*", "alpha is not pinned (==1.*)", id="wildcard"),
    pytest.param("alpha==1.0,<2", "alpha is not pinned", id="two-specifiers"),
    pytest.param("alpha~=1.0", "alpha is not pinned (~=1.0)", id="compatible"),
    pytest.param("alpha @ https://example.com/alpha-1.0-py3-none-any.whl", "URLs and paths are not supported", id="name-at-url"),
    pytest.param("https://example.com/alpha.whl", "URLs and paths are not supported", id="bare-url"),
    pytest.param("./alpha-1.0-py3-none-any.whl", "URLs and paths are not supported", id="local-path"),
    pytest.param("git+https://example.com/alpha.git#egg=alpha", "URLs and paths are not supported", id="vcs"),
    pytest.param("-e .", "editable installs are not supported", id="editable"),
    pytest.param("--editable=git+https://x/y", "editable installs are not supported", id="editable-long"),
    pytest.param("--index-url https://example.com/simple", "--index-url would install from outside pip_packages/", id="index-url"),
    pytest.param("-i https://example.com/simple", "-i would install from outside pip_packages/", id="index-url-short"),
    pytest.param("--extra-index-url=https://example.com", "--extra-index-url would install from outside", id="extra-index"),
    pytest.param("-f /tmp/wheels", "-f would install from outside pip_packages/", id="find-links"),
    pytest.param("--find-links=/tmp/wheels", "--find-links would install from outside", id="find-links-long"),
    pytest.param("--trusted-host example.com", "--trusted-host would install from outside", id="trusted-host"),
    pytest.param("--no-binary :all:", "--no-binary is not supported", id="no-binary"),
    pytest.param("--use-feature=truststore", "option --use-feature is not supported", id="unknown-option"),
    pytest.param("alpha==1.0 --global-option=x", "option --global-option is not supported on a requirement line", id="line-option"),
    pytest.param("alpha==1.0 --hash=md5:abc", "bad --hash 'md5:abc'", id="bad-hash-algo"),
    pytest.param("alpha==1.0 --hash=sha256:xyz", "bad --hash 'sha256:xyz'", id="bad-hash-digest"),
    pytest.param("alpha===1.0", "alpha is not pinned (===1.0)", id="arbitrary-equality"),
    pytest.param("alpha[==1.0", "invalid requirement 'alpha[==1.0'", id="syntax"),
    pytest.param('alpha==1.0 ; python_version <', "invalid requirement", id="bad-marker"),
    pytest.param("-r", "-r needs a file name", id="include-without-file"),
    pytest.param("-r missing.txt", "missing.txt:0: cannot read requirements file", id="missing-include"),
    pytest.param('-r "other.txt', "-r \"other.txt has no closing quotation; close the quote", id="unclosed-quote"),
    pytest.param("alpha==1.0 --hash 'sha256:", "--hash 'sha256: has no closing quotation; close the quote",
                 id="unclosed-quote-option"),
    pytest.param("-r a\x00b.txt", "-r 'a\\x00b.txt' names a file with a NUL character; remove it",
                 id="nul-in-include"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_rejects_bad_lines_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    found = problems(tmp_path, f"# ok\nbeta==1.0\n{line}\n")
    assert len(found) == 1, found
    where = f"{tmp_path / 'missing.txt'}:0" if "missing.txt" in message else f"{tmp_path / 'requirements.txt'}:3"
    assert found[0].startswith(where), found
    assert message in found[0]


def test_reports_every_problem_in_every_file(tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("delta>=1\n--index-url=https://x\n")
    found = problems(tmp_path, "alpha\nbeta==1.0\ngamma>2\n-r more.txt\n")
    assert [p.split(": ")[0].rsplit("/", 1)[-1] for p in found] == [
        "requirements.txt:1", "requirements.txt:3", "more.txt:1", "more.txt:2"]


def test_rejects_text_that_is_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"requirements.txt:0: not UTF-8 text"):
        load(tmp_path, b"alpha==1.0\n\xff\xfe\n")


def test_harmless_global_options_are_accepted(tmp_path: Path) -> None:
    reqs = load(tmp_path, "--no-index\n--require-hashes\n--only-binary=:all:\n--pre\nalpha==1.0\n")
    assert reqs.require_hashes and names(reqs) == {"alpha": "1.0"}


def test_pin_for_wheel_names_the_wheel() -> None:
    pin = requirements.pin_for_wheel("/x/pip_packages/pip-26.0.1-py3-none-any.whl")
    assert (pin.name, str(pin.version)) == ("pip", "26.0.1")


def test_every_file_is_read_once_through_the_given_reader(tmp_path: Path) -> None:
    """A diamond of includes: d.txt is included twice but read once (the caller may pass
    bytes it has already read, e.g. from a pipe, which cannot be read again)."""
    texts = {"a": "alpha==1.0\n-r b.txt\n-r c.txt\n", "b": "beta==1.0\n-r d.txt\n", "c": "-c d.txt\n",
             "d": "delta==1.0\n"}
    reads: list[str] = []

    def read(path: str) -> bytes:
        reads.append(path)
        return texts[Path(path).stem].encode()

    reqs = requirements.load([str(tmp_path / "virtual" / "a.txt")], read=read)
    assert sorted(Path(p).name for p in reads) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert [(Path(p).stem, data.decode()) for p, data in reqs.files] == [(n, texts[n]) for n in "abdc"]
    assert names(reqs) == {"alpha": "1.0", "beta": "1.0", "delta": "1.0"}


def test_an_include_is_recorded_by_the_path_open_follows_then(tmp_path: Path) -> None:
    """The paths recorded are what the no-op key and the resolution cache read again: an
    include through a directory link keeps the link (a retargeted link is followed), the
    named file's own directory is resolved (the `arg=` token watches it), and `..` after a
    link means what the kernel finds."""
    tmp_path = tmp_path.resolve()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "base.txt").write_text("beta==1.0\n")
    (tmp_path / "a" / "deep" / "c.txt").write_text("-r ../base.txt\n")
    (tmp_path / "inc").symlink_to(tmp_path / "a")
    (tmp_path / "top").symlink_to(tmp_path)
    (tmp_path / "r.txt").write_text("-r inc/base.txt\n-c inc/deep/c.txt\n")
    reqs = requirements.load([str(tmp_path / "top" / "r.txt")])
    assert [p for p, _ in reqs.files] == [str(tmp_path / "r.txt"), str(tmp_path / "inc" / "base.txt"),
                                           str(tmp_path / "inc" / "deep" / "c.txt"),
                                           str(tmp_path / "inc" / "deep" / ".." / "base.txt")]


def test_the_default_reader_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("alpha==1.0\n")
    assert requirements.load([str(path)]).files == ((str(path), b"alpha==1.0\n"),)


@pytest.mark.parametrize(("make", "reason"), [
    pytest.param(lambda p: p.symlink_to("/dev/zero"), "larger than 16 MiB; is it a requirements file?",
                 id="endless-device"),
    pytest.param(lambda p: p.write_bytes(b"#" * (16 << 20) + b"\n"), "larger than 16 MiB; is it a requirements file?",
                 id="too-large"),
    pytest.param(lambda p: p.mkdir(), "Is a directory", id="directory"),
    pytest.param(lambda p: None, "No such file or directory", id="missing"),
    pytest.param(lambda p: p.symlink_to(p.parent / "nowhere"), "No such file or directory", id="dangling-symlink"),
])
def test_a_requirements_file_that_cannot_be_read(tmp_path: Path, make: Callable[[Path], None], reason: str) -> None:
    path = tmp_path / "r.txt"
    make(path)
    with pytest.raises(InputError) as info:
        requirements.load([str(path)])
    assert info.value.problems == (f"{path}:0: cannot read requirements file: {reason}",)


def test_a_file_the_reader_cannot_read_is_a_file_problem(tmp_path: Path) -> None:
    def read(path: str) -> bytes:
        if path.endswith("secret.txt"):
            raise PermissionError(13, "Permission denied")
        return b"alpha==1.0\n-r secret.txt\n"

    with pytest.raises(InputError) as info:
        requirements.load([str(tmp_path / "r.txt")], read=read)
    assert info.value.problems == (f"{tmp_path / 'secret.txt'}:0: cannot read requirements file: Permission denied",)


def test_an_include_cycle_is_reported_at_the_line_that_closes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("alpha==1.0\n-r b.txt\n")
    (tmp_path / "b.txt").write_text("beta==1.0\n\n-r a.txt\n-r b.txt\n")
    with pytest.raises(InputError) as info:
        requirements.load(["a.txt"])
    assert info.value.problems == (
        "b.txt:3: -r a.txt closes a cycle (a.txt -> b.txt -> a.txt); remove it",
        "b.txt:4: -r b.txt closes a cycle (b.txt -> b.txt); remove it",
    )


def test_includes_nested_too_deeply_are_a_problem_not_a_recursion_error(tmp_path: Path) -> None:
    for i in range(1, 600):
        (tmp_path / f"f{i}.txt").write_text(f"-r f{i + 1}.txt\n")
    (tmp_path / "f600.txt").write_text("alpha==1.0\n")
    found = problems(tmp_path, "-r f1.txt\n")
    assert found == (f"{tmp_path / 'f99.txt'}:1: -r f100.txt nests includes more than 100 files deep; "
                     "include them from fewer levels",)


@pytest.mark.parametrize("line", [
    pytest.param('-r "name with space.txt"', id="double-quotes"),
    pytest.param("-r 'name with space.txt'", id="single-quotes"),
    pytest.param("-r name\\ with\\ space.txt", id="backslash"),
    pytest.param('--requirement="name with space.txt"', id="long-option"),
    pytest.param('-c "name with space.txt"', id="constraint"),
])
def test_include_names_are_split_as_pip_splits_them(tmp_path: Path, line: str) -> None:
    (tmp_path / "name with space.txt").write_text("beta==2.0\n")
    reqs = load(tmp_path, f"alpha==1.0\n{line}\n")
    wanted, constraints = requirements.applicable(reqs, ENV_311)
    assert sorted([*wanted, *constraints]) == ["alpha", "beta"]


def test_a_hash_option_may_be_quoted(tmp_path: Path) -> None:
    reqs = load(tmp_path, f"alpha==1.0 --hash 'sha256:{'a' * 64}'\n")
    assert reqs.pins[0].hashes == {f"sha256:{'a' * 64}"}


DEEP = "(" * 2000 + 'python_version < "3"' + ")" * 2000
UNEVALUABLE = [
    pytest.param('alpha==1.0 ; python_version ~= "3"', "cannot evaluate the marker", id="compatible-release-one-part"),
    pytest.param('alpha==1.0 ; os_name ~= "3"', "cannot evaluate the marker", id="compatible-release-on-a-string"),
    pytest.param('alpha==1.0 ; python_version < "3" and platform_release >= "3.x" or python_version ~= "3"',
                 "cannot evaluate the marker", id="in-a-compound-marker"),
]


@pytest.mark.parametrize(("line", "message"), UNEVALUABLE)
def test_markers_packaging_cannot_evaluate_are_problems_with_file_and_line(
        tmp_path: Path, line: str, message: str) -> None:
    reqs = load(tmp_path, f"beta==1.0\n{line}\n")
    with pytest.raises(InputError) as info:
        requirements.applicable(reqs, ENV_311)
    (problem,) = info.value.problems
    assert problem.startswith(f"{tmp_path / 'requirements.txt'}:2: {message}") and "\n" not in problem
    assert problem.endswith("; write a marker packaging can evaluate (PEP 508), e.g. python_version >= \"3.9\"")


def test_a_marker_nested_too_deeply_is_a_problem(tmp_path: Path) -> None:
    line = f"alpha==1.0 ; {DEEP}"
    found = problems(tmp_path, f"beta==1.0\n{line}\n")
    assert found == (f"{tmp_path / 'requirements.txt'}:2: the marker of {line[:30]}... is nested too deeply to parse; "
                     "simplify it",)


def test_a_marker_too_deep_to_evaluate_is_a_problem(tmp_path: Path) -> None:
    """Parsed near the top of the stack, evaluated deeper down (as in create_venv)."""
    reqs = load(tmp_path, f"alpha==1.0 ; {'(' * 100}python_version < '3'{')' * 100}\n")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 60)
    try:
        with pytest.raises(InputError) as info:
            requirements.applicable(reqs, ENV_311)
    finally:
        sys.setrecursionlimit(limit)
    assert info.value.problems == (f"{tmp_path / 'requirements.txt'}:1: the marker is nested too deeply to evaluate; "
                                   f"{reqlines.MARKER_FIX}",)


@pytest.mark.parametrize("line", [
    pytest.param("alpha==1.0" + " " * 100_000 + "x", id="spaces-inside"),
    pytest.param(" " * 100_000 + "alpha==1.0", id="spaces-before"),
    pytest.param("alpha==1.0 ; " + "\t" * 100_000 + "#", id="tabs-before-comment"),
])
def test_long_runs_of_whitespace_take_linear_time(tmp_path: Path, line: str) -> None:
    """pip's comment pattern `(^|\\s+)#` backtracks quadratically over whitespace runs."""
    with no_hang(), contextlib.suppress(InputError):
        load(tmp_path, f"{line}\n")
