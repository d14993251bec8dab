"""A script's venv spec: where it is (`find`) and what it asks for (`convert`).

For `bin/python_venv`, a `python` that first makes the venv a script declares. `find`
looks where vpython looks, in this order, and takes the first spec it finds:

1. `--spec FILE` (the `explicit` argument);
2. a file beside the script: `SCRIPT.vpython3`, then `SCRIPT.vpython`;
3. an inline vpython block in the script: the lines between one ending with
   `[VPYTHON:BEGIN]` and one ending with `[VPYTHON:END]`, each marker after nothing but a
   comment prefix (`# `, `// `, indentation: a marker in a string starts no block), each
   line without the prefix that precedes `[VPYTHON:BEGIN]` on its line;
4. the script's PEP 723 block (`# /// script` ... `# ///`);
5. a `.vpython3` file in the script's directory or one above it, up to the repository
   root (the first directory with a `.git` entry) or `/`;
6. the file `$CROS_VENV_SPEC_PATH` names (python_venv sets it for its children, as vpython
   sets VPYTHON_VENV_SPEC_PATH).

Without a script (`-c`, `-m`) only 1 and 6 apply. A SCRIPT that is a directory (a
package Python runs by its `__main__.py`) has its inline blocks read from that file. The
script is read once, and only its first MiB; one that is not UTF-8 has no inline block,
and a pipe (`python_venv <(...)`) is never read here: Python reads it.

Kinds: "requirements" (pip's format, create_venv's rules), "pep723" (TOML; its
`dependencies` become requirement lines) and "vpython" (vpython's text protobuf; each
`wheel` becomes a pin). `convert` turns any of them into requirements text and the Python
version asked for. Every problem is an InputError of one line naming the file, the line
where it helps, and the fix.
"""

from __future__ import annotations

from cros_venv.specs.convert import Converted, convert
from cros_venv.specs.found import ENV_ORIGIN, ENV_VAR, Found, find, read_file

__all__ = ["ENV_ORIGIN", "ENV_VAR", "Converted", "Found", "convert", "find", "read_file"]
