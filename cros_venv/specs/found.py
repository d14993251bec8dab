"""Finding a script's venv spec and reading its text (the order is in the package docstring)."""

from __future__ import annotations

from cros_venv import fs
from cros_venv.errors import InputError

TYPE_CHECKING = False  # not typing's: importing typing costs ~10 ms, and python_venv runs before every script
if TYPE_CHECKING:
    from typing import Mapping

ENV_VAR = "CROS_VENV_SPEC_PATH"  # set by python_venv for its children (like vpython's VPYTHON_VENV_SPEC_PATH)
ENV_ORIGIN = f"${ENV_VAR}"  # Found.origin of a spec named by it
BEGIN = "[VPYTHON:BEGIN]"
END = "[VPYTHON:END]"
# The PEP's reference regex (https://peps.python.org/pep-0723/#reference-implementation).
PEP723_RE = r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
SCRIPT_LIMIT = 1 << 20  # inline blocks sit at the top of a script; a 1 GiB script is not read whole
SPEC_LIMIT = 16 << 20  # a spec file larger than this is not a spec (`--spec /dev/zero`)


class Found:
    """Where a spec was found, and its text."""

    __slots__ = ("kind", "line", "origin", "path", "regular", "text")

    def __init__(self, kind: str, path: str, origin: str, text: str, line: int = 1, regular: bool = True) -> None:
        self.kind = kind  # "requirements" | "pep723" | "vpython"
        self.path = path  # the file it was read from (the script itself for inline blocks), absolute
        self.origin = origin  # for messages: "--spec", "beside the script", "PEP 723 block", ...
        self.text = text  # the spec (an inline block's content without its comment prefixes)
        self.line = line  # the line of `path` where `text` starts (for messages)
        self.regular = regular  # read from a regular file (not a pipe: `--spec <(...)`, /dev/stdin, read once)

    def where(self, line: int = 1) -> str:
        """`path:N` for line `line` of `text`."""
        return f"{self.path}:{self.line + line - 1}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Found) and all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    def __hash__(self) -> int:
        return hash((self.kind, self.path, self.line))

    def __repr__(self) -> str:
        return f"Found({self.kind!r}, {self.path!r}, {self.origin!r}, {self.text!r}, line={self.line})"


def find(script: str | None, explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Found:
    """The spec for `script` (None: `-c`/`-m`, no script), `explicit` being `--spec`'s value."""
    if explicit is not None:
        return read_file(explicit, "--spec")
    root = None
    if script is not None:
        found, root = _for_script(script)
        if found is not None:
            return found
    named = fs.getenv(ENV_VAR) if environ is None else environ.get(ENV_VAR)
    if named:
        return read_file(named, ENV_ORIGIN)
    if script is None:
        raise InputError(f"no venv spec: looked for --spec and ${ENV_VAR}; pass --spec FILE or -r REQUIREMENTS")
    unread = " (its text is not UTF-8: its inline blocks were not read)" if _not_utf8(script) else ""
    raise InputError(
        f"no venv spec for {script}{unread}: looked for --spec, {script}.vpython3, {script}.vpython, a {BEGIN} "
        f"block, a PEP 723 `# /// script` block, .vpython3 up to {root}, and ${ENV_VAR}; "
        "add a PEP 723 block or pass -r REQUIREMENTS"
    )


def _not_utf8(script: str) -> bool:
    """Whether `script`, a regular file, is not UTF-8 (an error path: it is read again)."""
    try:
        if fs.isdir(script) or not fs.isfile(script):
            return False
        with open(script, "rb") as f:
            f.read(SCRIPT_LIMIT).decode("utf-8")
    except UnicodeDecodeError as e:
        return e.end < SCRIPT_LIMIT  # not a character cut at the limit
    except OSError:
        return False
    return False


def _looks_like_vpython(text: str) -> bool:
    """A spec with no name to go by (`--spec <(...)`): vpython's text protobuf if its first
    line that is not a comment sets one of its fields (`python_version:`, `wheel:` / `wheel {`).
    """
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.startswith(("python_version:", "wheel:", "wheel {", "wheel<", "wheel <", "verify"))
    return False


def read_file(path: str, origin: str, kind: str | None = None) -> Found:
    """The spec in file `path` (`origin` says who named it), read once; its `kind` is by its
    name unless given: `*.vpython` and `*.vpython3` are vpython specs, anything else a
    requirements file. `path` is made absolute as the kernel finds it (`link/../r.txt` is
    the r.txt beside link's target, not beside link).
    """
    path = fs.file_path(path)
    if origin == ENV_ORIGIN and fs.exists(path) and not fs.is_regular(fs.stat(path)):
        # python_venv always hands its children a regular file: a FIFO here would block for ever
        raise InputError(f"{path}: not a regular file ({origin}); unset {ENV_VAR} or point it at a spec file")
    try:
        with open(path, "rb") as f:  # not O_NONBLOCK: `--spec <(...)` is a pipe, read once
            regular = fs.is_regular(fs.fstat(f.fileno()))
            data = f.read(SPEC_LIMIT + 1)
    except OSError as e:
        raise InputError(f"{path}: cannot read this venv spec ({origin}): {e.strerror or e}; {_fix(origin)}") from None
    if len(data) > SPEC_LIMIT:
        raise InputError(f"{path}: larger than {SPEC_LIMIT >> 20} MiB, not a venv spec ({origin}); {_fix(origin)}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    if kind is None:
        named = fs.basename(path).endswith((".vpython", ".vpython3"))
        kind = "vpython" if named or (not regular and _looks_like_vpython(text)) else "requirements"
    return Found(kind, path, origin, text, regular=regular)


def _fix(origin: str) -> str:
    if origin in ("--spec", "-r"):
        return f"pass {origin} a readable spec file"
    if origin.startswith("$"):
        return f"point {origin[1:]} at a readable spec file, or unset it"
    return "make it a readable spec file, or remove it"


def _for_script(script: str) -> tuple[Found | None, str]:
    """Steps 2-5 for `script`; also the directory where the walk up stopped (for messages)."""
    path = fs.abspath(script)
    for suffix in (".vpython3", ".vpython"):
        if fs.exists(path + suffix):
            return read_file(path + suffix, "beside the script"), ""
    is_dir = fs.isdir(path)
    source = fs.join(path, "__main__.py") if is_dir else path
    text = _read_script(source)
    if text is not None:
        found = inline_vpython(source, text) or inline_pep723(source, text)
        if found is not None:
            return found, ""
    return _walk_up(path if is_dir else fs.dirname(path))


def _read_script(path: str) -> str | None:
    """The first SCRIPT_LIMIT bytes of the script as text with `\\n` line ends; None if it is
    not UTF-8 or not a regular file (a pipe is Python's to read, and can be read only once).
    """
    import codecs

    try:
        fd = fs.open(path, fs.O_RDONLY | fs.O_NONBLOCK | fs.O_CLOEXEC)
        with open(fd, "rb") as f:  # closes fd
            if not _regular(fd):
                return None
            data = f.read(SCRIPT_LIMIT)
    except OSError as e:
        raise InputError(f"{path}: cannot read the script ({e.strerror or e}); check its path and permissions"
                         ) from None
    try:
        # Not final when cut at the limit: a character split by the cut is not an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=len(data) < SCRIPT_LIMIT)
    except UnicodeDecodeError:
        return None
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _regular(fd: int) -> bool:
    return fs.is_regular(fs.fstat(fd))


def inline_vpython(path: str, text: str) -> Found | None:
    """The `[VPYTHON:BEGIN]` block of script `path` (its `text`), or None if it has none.

    As in vpython, a block starts at a line that ends with the marker; here what precedes
    the marker must be a comment prefix too (`# `, `// `, `-- `, indentation, or nothing):
    the marker in a string or in the middle of a sentence starts no block.
    """
    at = text.find(BEGIN)
    while at >= 0 and not _marker_line(text, at, BEGIN):
        at = text.find(BEGIN, at + len(BEGIN))
    if at < 0:
        return None
    start = text.rfind("\n", 0, at) + 1
    prefix = text[start:at]
    begin_line = text.count("\n", 0, at) + 1
    lines = text[start:].split("\n")
    for count, line in enumerate(lines[1:]):
        if line.rstrip().endswith(END) and _comment_prefix(line.rstrip()[:-len(END)]):
            body = [_unprefix(line, prefix) for line in lines[1:count + 1]]
            return Found("vpython", path, f"{BEGIN} block", "".join(f"{line}\n" for line in body), begin_line + 1)
    raise InputError(f"{path}:{begin_line}: the {BEGIN} block has no {END} line; end the block with one")


def _marker_line(text: str, at: int, marker: str) -> bool:
    """Is the `marker` at `at` the end of its line, after nothing but a comment prefix?"""
    end = text.find("\n", at)
    after = text[at + len(marker):] if end < 0 else text[at + len(marker):end]
    return not after.strip() and _comment_prefix(text[text.rfind("\n", 0, at) + 1:at])


def _comment_prefix(prefix: str) -> bool:
    """Whitespace and comment punctuation only (`#`, `//`, `--`, `;`, ` * `): no word, no quote."""
    return not any(c.isalnum() or c in "\"'`_" for c in prefix)


def _unprefix(line: str, prefix: str) -> str:
    if line.startswith(prefix):
        return line[len(prefix):]
    if line.rstrip() == prefix.rstrip():  # `#` alone, where the prefix is `# `
        return ""
    return line


def inline_pep723(path: str, text: str) -> Found | None:
    """The PEP 723 `script` block of script `path` (its `text`), or None if it has none."""
    if "# /// script" not in text:  # the cheap test first: most scripts have none
        return None
    blocks = [b for b in pep723_blocks(text) if b[0] == "script"]
    lines = text.split("\n")
    if len(blocks) > 1:
        raise InputError(f"{path}:{blocks[1][1] + 1}: a second `# /// script` block (the first is on line "
                         f"{blocks[0][1] + 1}); PEP 723 allows one: merge them")
    if not blocks:
        if "# /// script" not in lines:
            return None
        raise InputError(f"{path}:{lines.index('# /// script') + 1}: the `# /// script` block is empty or has no "
                         "closing `# ///` line; close it (PEP 723)")
    _, opener, closer = blocks[0]
    content = "".join((line[2:] if line.startswith("# ") else line[1:]) + "\n" for line in lines[opener + 1:closer])
    return Found("pep723", path, "PEP 723 block", content, opener + 2)


def pep723_blocks(text: str) -> list[tuple[str, int, int]]:
    """(type, opening line, closing line), 0-based, of every block PEP 723's reference
    regex (PEP723_RE) finds in `text`, found line by line without `re` (importing it costs
    ~6 ms, more than the rest of python_venv's way to an up-to-date venv).

    The regex's greedy content runs to the *last* `# ///` line of the run of comment lines
    after the opening line (`#` alone or `# ...`), with at least one line between.
    """
    lines = text.split("\n")
    found = []
    i = 0
    while i < len(lines):
        kind = lines[i][6:] if lines[i].startswith("# /// ") else ""
        if kind and all(c.isascii() and (c.isalnum() or c == "-") for c in kind) and i + 1 < len(lines):
            closer = -1
            j = i + 1
            # each content line needs the newline after it; the closing one may end the text
            while j < len(lines) and (lines[j] == "#" or lines[j].startswith("# ")):
                if lines[j] == "# ///" and j >= i + 2:
                    closer = j
                j += 1
            if closer >= 0:
                found.append((kind, i, closer))
                i = closer + 1
                continue
        i += 1
    return found


def _walk_up(directory: str) -> tuple[Found | None, str]:
    """The first `.vpython3` in `directory` or above, up to the repository root (the first
    directory with a `.git` entry, a file in a worktree) or `/`; and where the walk stopped.
    """
    while True:
        candidate = fs.join(directory, ".vpython3")
        if fs.exists(candidate):
            return read_file(candidate, ".vpython3 above the script"), directory
        parent = fs.dirname(directory)
        if parent == directory or fs.lexists(fs.join(directory, ".git")):
            return None, directory
        directory = parent
