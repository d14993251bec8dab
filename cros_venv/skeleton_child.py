"""The child process that runs virtualenv for skeleton.py: `python -I -S -B THIS ARGS_JSON`.

Runs on the target interpreter, which may be another Python than the one running
create_venv: standard library only, until virtualenv's wheels are on sys.path.

virtualenv's command line (`cli_run`) costs ~0.2 s here, mostly imports: the package
imports all of itself, its plugins are found by scanning entry points, every seeder is
loaded to build the parser, and filelock pulls in asyncio. What create_venv needs is
one creator (CPython's POSIX builtin, with virtualenv's defaults) and the activation
scripts, so the "direct" driver imports just those modules and calls the same classes
the command line would have chosen. If anything in it fails, the command line runs instead.

Measured (issue "Private virtualenv internals"; 2 cores, page cache warm, wall medians of
15 interleaved runs): direct 99 ms, `cli_run` 201 ms, `python -m virtualenv` 205 ms on
CPython 3.11 (3.9: 99/200/203, 3.13: 115/229/236, /usr/bin/python3: 81/163/166); forked
from create_venv 59 ms against 158 ms. The template is made once per interpreter,
virtualenv and tool version, so warm and no-op builds never run this; a cold build of
venv/requirements.txt takes 456 ms against 534, one with its wheels cached but no
template 202 against 305, and a venv at a path that needs shell quoting (no template)
saves ~0.1 s on every build. Kept for that, on one condition: tests/test_skeleton.py
runs it (as "direct-only": no fallback), `cli_run` and `python -m virtualenv` from the
vendored wheels into the same path on every interpreter present and compares the trees
byte for byte, so a virtualenv upgrade that changes what it writes or moves these
internals fails there, naming the files. If that test cannot be kept green, switch to
`cli_run` and delete `direct`. See DESIGN.md, "The virtualenv driver".
"""

from __future__ import annotations

import json
import os
import sys
import types


def main(argv: list[str]) -> None:
    args = json.loads(argv[0])
    roots = args["roots"]
    if not roots:  # unpack virtualenv here, in parallel with the build (the target is our interpreter)
        sys.path.insert(0, args["repo"])
        from cros_venv import cache, errors, toolchain

        try:
            roots = toolchain.unpack(cache.Cache(args["cache"]), toolchain.VIRTUALENV)
        except errors.CrosVenvError as e:
            sys.exit(str(e))
    sys.path[:0] = roots
    driver = args.get("driver", "direct")
    if driver in ("direct", "direct-only"):
        try:
            direct(args["dest"], args["app_data"])
            return
        except Exception:  # virtualenv's internals moved: its command line still works
            if driver == "direct-only":  # the tests: a fallback would hide that they moved
                raise
            for name in [m for m in sys.modules if m.split(".")[0] in ("virtualenv", "filelock")]:
                del sys.modules[name]
    from virtualenv import cli_run

    cli_run([args["dest"], "--no-seed", "--no-periodic-update", "--no-download",
             "--app-data", args["app_data"], "--quiet"], setup_logging=False)


def direct(dest: str, app_data_dir: str) -> None:
    """What `virtualenv --no-seed DEST` does on CPython/POSIX, without its command line."""
    import importlib.util
    from argparse import Namespace

    spec = importlib.util.find_spec("virtualenv")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("virtualenv")
    package = types.ModuleType("virtualenv")  # its submodules, without running its __init__
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    sys.modules["virtualenv"] = package
    stub = types.ModuleType("filelock.asyncio")  # filelock's async classes: never used here
    for name in ("AsyncAcquireReturnProxy", "AsyncSoftFileLock", "AsyncUnixFileLock", "AsyncWindowsFileLock",
                 "BaseAsyncFileLock"):
        setattr(stub, name, type(name, (), {}))
    sys.modules["filelock.asyncio"] = stub

    from virtualenv.activation import (
        BashActivator,
        CShellActivator,
        FishActivator,
        NushellActivator,
        PowerShellActivator,
        PythonActivator,
    )
    from virtualenv.app_data import make_app_data
    from virtualenv.create.via_global_ref.builtin.cpython.cpython3 import CPython3Posix
    from virtualenv.discovery.py_info import PythonInfo

    class Options(Namespace):
        def get_source(self, key: str) -> str:
            return "default"  # as if no option was given anywhere: virtualenv's defaults decide

    app_data = make_app_data(app_data_dir, read_only=False, env=os.environ)
    try:
        # The interpreter running this, described in-process (the command line asks a child).
        interpreter = PythonInfo._resolve_to_system(app_data, PythonInfo())
        meta = CPython3Posix.can_create(interpreter)
        if not meta or meta.error:
            raise RuntimeError(f"virtualenv cannot create a venv for {sys.executable}")
        options = Options(dest=dest, clear=False, no_vcs_ignore=False, app_data=app_data, env=os.environ,
                          system_site=False, copies=False, symlinks=True, meta=meta, prompt=None)
        creator = CPython3Posix(options, interpreter)
        # The activators virtualenv's entry points list, in their order (batch is Windows only).
        activators = [a(options) for a in (BashActivator, CShellActivator, FishActivator, NushellActivator,
                                            PowerShellActivator, PythonActivator) if a.supports(interpreter)]
        creator.run()
        for activator in activators:
            activator.generate(creator)
        creator.pyenv_cfg.write()
    finally:
        app_data.close()


if __name__ == "__main__":
    main(sys.argv[1:])
