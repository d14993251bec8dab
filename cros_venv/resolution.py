"""Requirements -> pins -> wheels -> spec, and a cache of that outcome.

Resolving imports `packaging` (its import compiles ~90 regexes: ~50 ms) and reads each
selected wheel's METADATA. The outcome depends only on what the no-op key covers (the
tool and its checkout's pip_packages/, the interpreter, the requirements files' bytes,
the wheelhouse's listing, the selected wheels' stamps), so it is cached per (checkout,
interpreter, requirements files) and reused for as long as its key matches: a warm
build of a new venv never imports `packaging`. Requirements with `--hash` are never
answered from the cache: their hashes are checked against the wheels' bytes each time.
"""

from __future__ import annotations

import os

from cros_venv import __version__, fastpath, store, toolchain
from cros_venv.cache import Cache, atomic_write
from cros_venv.digest import sha256_hex
from cros_venv.lite import NamedTuple
from cros_venv.sources import Sources
from cros_venv.spec import Spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from email.message import Message
    from typing import Any, Callable

    from cros_venv.unpacker import Unpacker
    from cros_venv.wheels import Wheel

FORMAT = 3  # 3: marshal (store.py)


class Install(NamedTuple):
    """One wheel to install."""

    wheel: str  # absolute path
    sha256: str
    requested: bool  # named in the requirements (gets REQUESTED, as pip does)


class Resolution(NamedTuple):
    """What a venv built from these requirements for this interpreter contains."""

    python: str  # real path of the target interpreter
    python_version: str  # "3.11": the venv's lib/pythonX.Y
    spec: Spec
    key: str  # the no-op key
    installs: tuple[Install, ...]  # in install order
    hash_checked: bool = False  # the requirements carry --hash: never reused from the cache

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "python": self.python, "python_version": self.python_version,
                "spec": self.spec.to_json(), "key": self.key, "hash_checked": self.hash_checked,
                "installs": [[i.wheel, i.sha256, i.requested] for i in self.installs]}

    @classmethod
    def from_json(cls, data: Any) -> Resolution | None:
        """The resolution in `data`, or None unless it has exactly the expected shape."""
        try:
            spec = Spec.from_json(data["spec"])
            if data["format"] != FORMAT or spec is None:
                return None
            installs = tuple(Install(w, h, r) for w, h, r in data["installs"])
            fields = (data["python"], data["python_version"], data["key"], *(i.wheel for i in installs),
                      *(i.sha256 for i in installs))
            if (not all(isinstance(x, str) for x in fields) or not isinstance(data["hash_checked"], bool)
                    or not all(isinstance(i.requested, bool) for i in installs)):
                return None
            return cls(data["python"], data["python_version"], spec, data["key"], installs, data["hash_checked"])
        except (KeyError, TypeError, ValueError):
            return None


def _cache_file(cache: Cache, python: str, arguments: list[str]) -> str:
    ident = sha256_hex(os.fsencode("\0".join([fastpath.WHEEL_DIR, python, *arguments])))[:32]
    return os.path.join(cache.root, "resolutions", ident + store.SUFFIX)


def cached(cache: Cache, python: str, arguments: list[str], sources: Sources) -> Resolution | None:
    """The cached resolution for these requirements files, if nothing it depends on changed."""
    found = Resolution.from_json(store.load(_cache_file(cache, python, arguments)))
    if (found is None or found.hash_checked
            or not fastpath.key_matches(found.key, __version__, python, arguments, sources.get)):
        return None
    return found


def _save(cache: Cache, arguments: list[str], resolution: Resolution) -> None:
    path = _cache_file(cache, resolution.python, arguments)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, store.dumps(resolution.to_json()), durable=False)
    except OSError:
        pass  # only a cache


def resolve(cache: Cache, python: str, arguments: list[str], sources: Sources,
            report: Callable[[str], None], unpacker: Unpacker | None = None) -> Resolution:
    """Parse, select and check everything (raises InputError listing every problem)."""
    roots = toolchain.activate(cache, unpacker)
    # Imported only now: they need the tool's libraries, which `activate` put on sys.path.
    from cros_venv import closure, interpreter, requirements, wheels

    target = interpreter.find(python, os.path.join(cache.root, "interpreters"), roots)
    report(f"target: {target.describe()}")
    reqs = requirements.load(arguments, read=sources.read)
    wanted, constraints = requirements.applicable(reqs, target.environment)
    house = wheels.Wheelhouse.scan(toolchain.PIP_PACKAGES)
    if "pip" not in wanted and "pip" not in constraints:
        pip = requirements.pin_for_wheel(os.path.join(toolchain.PIP_PACKAGES, toolchain.PIP))
        wanted[pip.name] = pip

    # Hash the candidates first (from the stat index), so METADATA can come from cache entries.
    # Wheels being unpacked already (prefetched) come with their hash and METADATA.
    pins = {**constraints, **wanted}
    best = [wheels.best_wheel(house.for_pin(p), target) for p in pins.values()]
    paths = [w.path for w in best if w is not None]
    early = {p: m for p in paths if unpacker is not None and (m := unpacker.metadata(p)) is not None}
    if unpacker is not None and any(p in unpacker.hashed for p in early):
        cache.stat_index.record({p: unpacker.hashed[p] for p in early if p in unpacker.hashed})
    # With --hash, the hashes checked are of the bytes as they are now, not remembered ones.
    hash_checked = reqs.require_hashes or any(p.hashes for p in reqs.pins)
    hashes = cache.stat_index.hashes(paths, trust_index=not hash_checked)

    def metadata(w: Wheel) -> Message:
        text = early[w.path].text if w.path in early and early[w.path].sha256 == hashes.get(w.path) else None
        if text is not None:
            return wheels.parse_headers(text)
        h = hashes.get(w.path)
        return wheels.read_metadata(w, cache.entry(h) if h and cache.has(h) else None)

    chosen = closure.resolve(wanted, constraints, house, target, metadata)
    closure.check_hashes(chosen.values(), hashes, reqs.require_hashes)
    report(f"resolved {len(chosen)} packages from {house.directory}")

    ordered = [chosen[n] for n in sorted(chosen)]
    spec = Spec.build(target.identity(), [str(r) for r in ordered],
                      {r.wheel.filename: hashes[r.wheel.path] for r in ordered})
    key = fastpath.make_key(__version__, python, arguments, reqs.files, [toolchain.PIP_PACKAGES],
                            sorted(r.wheel.path for r in ordered))
    result = Resolution(python, target.python_version, spec, key,
                        tuple(Install(r.wheel.path, hashes[r.wheel.path], r.direct) for r in ordered), hash_checked)
    _save(cache, arguments, result)
    return result
